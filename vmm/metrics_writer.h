// The metrics file (PUT /metrics, --metrics-path): one JSON object per line per flush,
// {"utc_timestamp_ms": N, "<group>": {"<counter>": N, ...}, ...}. Flushed every
// period (60 s, as Firecracker), on demand (FlushMetrics) and at exit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "base/util/joining_thread.h"
#include "base/util/unique_fd.h"
#include "vmm/metrics.h"

namespace ember {

// Firecracker's Metrics object.
struct MetricsConfig {
  std::string metrics_path;
  bool emit_id = false;  // each line carries the instance id (--id) as "id"
  std::map<std::string, std::string> properties;  // each line carries these as "properties"
};

// One line of the file, without the trailing newline; `id` and `properties` only if not empty.
std::string metrics_line(int64_t utc_timestamp_ms, const MetricGroups& groups, const std::string& id = "",
                         const std::map<std::string, std::string>& properties = {});

class MetricsWriter {
 public:
  // `source` gathers the counters; it is called from the flushing thread.
  // `instance_id` is written on each line when the configuration asks (emit_id).
  explicit MetricsWriter(std::function<void(MetricGroups&)> source,
                         std::chrono::milliseconds period = std::chrono::seconds(60), std::string instance_id = "");
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Opens the file (O_APPEND, O_NONBLOCK for FIFOs) and starts the periodic flush.
  // Throws Error naming the path. Only once, as in Firecracker.
  void open(const MetricsConfig& config);
  bool is_open() const;
  // Writes one line now. Throws Error if not open or the write fails.
  void flush();

 private:
  void periodic();

  std::function<void(MetricGroups&)> source_;
  std::chrono::milliseconds period_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  UniqueFd file_;
  std::string path_;
  std::string instance_id_;
  MetricsConfig config_;
  JoiningThread thread_;
};

}  // namespace ember
