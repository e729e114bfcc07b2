#include "vmm/metrics_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/util/error.h"
#include "base/util/log.h"
#include "base/util/output_file.h"
#include "base/util/thread.h"

namespace ember {

std::string metrics_line(int64_t utc_timestamp_ms, const MetricGroups& groups, const std::string& id,
                         const std::map<std::string, std::string>& properties) {
  nlohmann::ordered_json line;
  line["utc_timestamp_ms"] = utc_timestamp_ms;
  if (!id.empty()) line["id"] = id;
  if (!properties.empty()) line["properties"] = properties;
  for (const auto& [group, counters] : groups) {
    nlohmann::ordered_json& g = line[group];
    g = nlohmann::ordered_json::object();
    for (const auto& [name, value] : counters) g[name] = value;
  }
  // Device ids come from the user: invalid UTF-8 is replaced rather than failing the flush.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

MetricsWriter::MetricsWriter(std::function<void(MetricGroups&)> source, std::chrono::milliseconds period,
                             std::string instance_id)
    : source_(std::move(source)), period_(period), instance_id_(std::move(instance_id)) {}

MetricsWriter::~MetricsWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void MetricsWriter::open(const MetricsConfig& config) {
  if (config.metrics_path.empty()) fail("metrics_path must not be empty");
  std::lock_guard lock(mu_);
  if (file_.valid()) fail("metrics are already written to '", path_, "' (they can be set up only once)");
  file_ = open_output_file(config.metrics_path, "metrics_path");
  path_ = config.metrics_path;
  config_ = config;
  thread_ = JoiningThread(start_thread(ThreadRole::Metrics, "ember-metrics", [this] { periodic(); }));
}

bool MetricsWriter::is_open() const {
  std::lock_guard lock(mu_);
  return file_.valid();
}

void MetricsWriter::flush() {
  MetricGroups groups;
  source_(groups);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::lock_guard lock(mu_);
  std::string line = metrics_line(now_ms, groups, config_.emit_id ? instance_id_ : "", config_.properties) + "\n";
  if (!file_.valid()) fail("metrics are not set up (PUT /metrics or --metrics-path first)");
  ssize_t n = ::write(file_.get(), line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    fail("cannot write metrics to '", path_, "': ", n < 0 ? errno_text() : "short write");
  }
}

void MetricsWriter::periodic() {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
    lock.unlock();
    try {
      flush();
    } catch (const Error& e) {
      log::warn(e.what());
    }
    lock.lock();
  }
}

}  // namespace ember
