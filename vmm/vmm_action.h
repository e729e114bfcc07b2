// What a front end (the HTTP API today; a supervisor later) asks of the VMM, as values.
// The main thread applies them one at a time, in the order they came (api/vmm_runner.h):
// it is the only thread that changes the VM's lifecycle, and every front end gets the
// same checks.
#pragma once

#include <string>
#include <variant>

#include "base/util/log.h"
#include "vmm/metrics_writer.h"
#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vm_config.h"

namespace ember {

namespace action {
struct StartInstance {
  VmConfig config;
};
// PUT /boot-source and PUT /drives: the files are opened on the main thread, which may
// open files until the VM runs (the API thread's seccomp filter allows no open).
struct CheckBootSource {
  BootSource boot;
};
struct CheckDrive {
  DriveConfig drive;
};
struct CheckSerialOutput {  // PUT /serial's file, likewise
  SerialConfig serial;
};
// PATCH /drives and /network-interfaces with rate limiters, on a running (or paused) VM.
struct UpdateDriveRateLimiter {
  std::string drive_id;
  RateLimiterConfig update;
};
// PATCH /drives with path_on_host, on a running (or paused) VM: the main thread opens it.
struct ReplaceDriveFile {
  std::string drive_id;
  std::string path;
};
struct UpdateNetRateLimiters {
  std::string iface_id;
  RateLimiterConfig rx;
  RateLimiterConfig tx;
};
struct ConfigureLogger {
  log::LoggerConfig config;
};
struct ConfigureMetrics {
  MetricsConfig config;
};
struct Pause {};
struct CreateSnapshot {
  SnapshotCreateParams params;
};
// Builds the VM from a snapshot; `restored` receives its configuration.
struct LoadSnapshot {
  SnapshotLoadParams params;
  SerialConfig serial;
  VmConfig* restored;
};
struct Resume {};
struct SendCtrlAltDel {};
struct FlushMetrics {};
}  // namespace action

using VmmAction = std::variant<action::StartInstance, action::CheckBootSource, action::CheckDrive, action::CheckSerialOutput,
                               action::UpdateDriveRateLimiter, action::ReplaceDriveFile,
                               action::UpdateNetRateLimiters,
                               action::ConfigureLogger, action::ConfigureMetrics, action::Pause, action::Resume,
                               action::SendCtrlAltDel, action::FlushMetrics, action::CreateSnapshot,
                               action::LoadSnapshot>;

}  // namespace ember
