// The metrics file (PUT /metrics, --metrics-path): one JSON object per line per flush,
// {"utc_timestamp_ms": N, "<group>": {"<counter>": N, ...}, ...}. Flushed every
// period (60 s, as Firecracker), on demand (FlushMetrics) and at exit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "vmm/metrics.h"
#include "vmm/util/joining_thread.h"
#include "vmm/util/unique_fd.h"

namespace ember {

// Firecracker's Metrics object.
struct MetricsConfig {
  std::string metrics_path;
};

// One line of the file, without the trailing newline.
std::string metrics_line(int64_t utc_timestamp_ms, const MetricGroups& groups);

class MetricsWriter {
 public:
  // `source` gathers the counters; it is called from the flushing thread.
  explicit MetricsWriter(std::function<void(MetricGroups&)> source,
                         std::chrono::milliseconds period = std::chrono::seconds(60));
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
  JoiningThread thread_;
};

}  // namespace ember
