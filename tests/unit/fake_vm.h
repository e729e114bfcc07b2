// A VmController for the API's unit tests: records what the router asks, checks the
// configuration as VmmRunner does (the files too, with real_files), builds nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/vm_controller.h"
#include "base/util/error.h"
#include "vmm/config_files.h"

namespace ember {

class FakeVm : public VmController {
 public:
  InstanceState state() const override { return state_; }
  void start(const VmConfig& config) override {
    validate(config);  // as VmmRunner does
    if (real_files) check_files(config);
    if (fail_start) fail("cannot open kernel '", config.boot.kernel_image_path, "'");
    started_with = config;
    state_ = InstanceState::Running;
  }
  // As VmmRunner does, when the test gives real files; otherwise any path is accepted.
  void check_boot_source(const BootSource& boot) override {
    if (real_files) check_boot_source_files(boot);
  }
  void check_drive(const DriveConfig& drive) override {
    if (real_files) check_drive_file(drive);
  }
  void check_serial_output(const SerialConfig& serial) override {
    if (real_files) ember::check_serial_output(serial);
  }
  void update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) override {
    drive_limiter_updates.push_back({drive_id, update});
  }
  // As VmmRunner does with real_files: opened as the started VM's drive was.
  void replace_drive_file(const std::string& drive_id, const std::string& path) override {
    if (real_files && started_with) {
      for (DriveConfig d : started_with->drives) {
        if (d.drive_id != drive_id) continue;
        d.path_on_host = path;
        check_drive_file(d);
      }
    }
    drive_files.push_back({drive_id, path});
  }
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                const RateLimiterConfig& tx) override {
    net_limiter_updates.push_back({iface_id, rx, tx});
  }
  void pause() override { state_ = InstanceState::Paused; ++pauses; }
  void resume() override { state_ = InstanceState::Running; ++resumes; }
  void send_ctrl_alt_del() override { ++ctrl_alt_dels; }
  void create_snapshot(const SnapshotCreateParams& p) override {
    if (state_ != InstanceState::Paused) fail("not paused");  // the router must check first
    snapshots.push_back(p);
  }
  VmConfig load_snapshot(const SnapshotLoadParams& p, const SerialConfig& serial) override {
    if (state_ != InstanceState::NotStarted) fail("already started");  // the router must check first
    loaded = p;
    VmConfig restored = snapshot_config;
    restored.serial = serial;
    state_ = p.resume_vm ? InstanceState::Running : InstanceState::Paused;
    return restored;
  }
  void configure_logger(const log::LoggerConfig& c) override { logger = c; }
  void configure_metrics(const MetricsConfig& c) override {
    if (metrics) fail("metrics are already set up");
    metrics = c;
  }
  void flush_metrics() override {
    if (!metrics) fail("metrics are not set up");
    ++flushes;
  }

  InstanceState state_ = InstanceState::NotStarted;
  bool fail_start = false;
  bool real_files = false;  // open the files the configuration names, as VmmRunner does
  std::optional<VmConfig> started_with;
  std::vector<SnapshotCreateParams> snapshots;
  std::optional<SnapshotLoadParams> loaded;
  VmConfig snapshot_config;  // what load_snapshot "restores"
  std::optional<log::LoggerConfig> logger;
  std::optional<MetricsConfig> metrics;
  struct DriveLimiterUpdate {
    std::string id;
    RateLimiterConfig update;
  };
  struct NetLimiterUpdate {
    std::string id;
    RateLimiterConfig rx, tx;
  };
  std::vector<DriveLimiterUpdate> drive_limiter_updates;
  struct DriveFile {
    std::string id, path;
  };
  std::vector<DriveFile> drive_files;  // replace_drive_file() calls
  std::vector<NetLimiterUpdate> net_limiter_updates;
  int pauses = 0, resumes = 0, ctrl_alt_dels = 0, flushes = 0;
};

}  // namespace ember
