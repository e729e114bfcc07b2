// The daemon's counters and latency histograms, and their Prometheus text rendering
// (GET /metrics). Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace ember::faas {

// Cumulative buckets in milliseconds (Prometheus "le"), plus +Inf.
inline constexpr std::array<double, 14> kLatencyBucketsMs = {1,    5,    10,   25,    50,    100,   250,
                                                             500,  1000, 2500, 5000,  10000, 30000, 60000};

class Histogram {
 public:
  void observe(double ms);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` ("" or `k="v"`).
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kLatencyBucketsMs.size() + 1> counts_{};  // last: over every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

enum class VmKind { Cold, Restored, Warm };
const char* vm_kind_name(VmKind k);

struct Gauges {
  size_t starting = 0, busy = 0, idle = 0, waiting = 0, functions = 0;
};

class Metrics {
 public:
  std::atomic<uint64_t> cold_boots{0}, restores{0}, snapshots{0}, start_failures{0};
  std::atomic<uint64_t> code_updates{0}, code_swaps{0};
  std::atomic<uint64_t> invocations{0}, handler_timeouts{0}, agent_failures{0}, rejected_queue_full{0};
  std::atomic<uint64_t> vms_stopped{0};
  Histogram invoke_ms[3];  // by VmKind: from the request read to the answer ready
  Histogram cold_boot_ms, restore_ms, queued_ms;

  std::string render(const Gauges& g) const;
};

}  // namespace ember::faas
