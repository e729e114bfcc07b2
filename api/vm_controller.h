// What the API acts on: the VMM as seen from the API thread. Implemented by
// api/vmm_runner.h for the real VMM and by a fake in the unit tests.
#pragma once

#include "api/json_config.h"

namespace ember {

enum class InstanceState { NotStarted, Running, Paused };
const char* instance_state_name(InstanceState s);  // "Not started", "Running", "Paused"

class VmController {
 public:
  virtual ~VmController() = default;
  virtual InstanceState state() const = 0;
  // Each throws Error with the reason it cannot be done; the API answers 400 with it.
  virtual void start(const VmConfig& config) = 0;  // validates, builds and starts the VM
  // Before InstanceStart: the files one object names open (vmm/config_files.h).
  virtual void check_boot_source(const BootSource& boot) = 0;
  virtual void check_drive(const DriveConfig& drive) = 0;
  virtual void check_serial_output(const SerialConfig& serial) = 0;  // PUT /serial's file
  // After InstanceStart: PATCH of a device's rate limiters (RateLimiterConfig says how).
  virtual void update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) = 0;
  // After InstanceStart: PATCH of a drive's path_on_host; the new file opens as the old one
  // did (read-only or not) and the guest sees its size.
  virtual void replace_drive_file(const std::string& drive_id, const std::string& path) = 0;
  virtual void update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                        const RateLimiterConfig& tx) = 0;
  virtual void pause() = 0;
  // A paused VM's state to the snapshot file and its memory to the memory file.
  virtual void create_snapshot(const SnapshotCreateParams& params) = 0;
  // Builds the VM from a snapshot instead of booting one (paused unless resume_vm) and
  // returns its configuration, as GET /vm/config shows it from then on. `serial` is this
  // ember's console (a snapshot does not carry one).
  virtual VmConfig load_snapshot(const SnapshotLoadParams& params, const SerialConfig& serial) = 0;
  virtual void resume() = 0;
  virtual void send_ctrl_alt_del() = 0;
  virtual void configure_logger(const log::LoggerConfig& config) = 0;
  virtual void configure_metrics(const MetricsConfig& config) = 0;
  virtual void flush_metrics() = 0;
};

}  // namespace ember
