// Firecracker's JSON VM description mapped onto VmConfig: the --config-file document,
// GET /vm/config, and the body of each configuration endpoint. Unknown fields, wrong
// types and fields ember does not implement are errors naming the field.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/util/log.h"
#include "vmm/metrics_writer.h"
#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vm_config.h"

namespace ember {

using Json = nlohmann::json;

// The whole document: the VM plus where logs and metrics go.
struct FullVmConfig {
  VmConfig vm;
  std::optional<log::LoggerConfig> logger;
  std::optional<MetricsConfig> metrics;
};

// Throws Error "<what>: invalid JSON: ..." .
Json parse_json(const std::string& text, const std::string& what);

// `base` supplies the fields a PATCH leaves out; a PUT passes MachineConfig{} and
// `partial` false (then vcpu_count and mem_size_mib are required).
MachineConfig machine_config_from_json(const Json& j, const MachineConfig& base, bool partial);
BootSource boot_source_from_json(const Json& j);
DriveConfig drive_from_json(const Json& j);
// PATCH /drives and /network-interfaces: the object after the PATCH, and the rate
// limiter updates it carries for the running device (virtio/rate_limiter.h says how a
// partial one applies). The id in the body must be `base`'s.
struct DriveUpdate {
  DriveConfig drive;  // path_on_host and rate_limiter may have changed
  bool path_given = false;  // path_on_host was in the body (even unchanged: the file is reopened)
  std::optional<RateLimiterConfig> rate_limiter;
};
DriveUpdate drive_update_from_json(const Json& j, const DriveConfig& base);
NetConfig net_from_json(const Json& j);
struct NetUpdate {
  NetConfig net;
  std::optional<RateLimiterConfig> rx, tx;
};
NetUpdate net_update_from_json(const Json& j, const NetConfig& base);
VsockConfig vsock_from_json(const Json& j);
// Firecracker's SerialDevice (PUT /serial, "serial" in --config-file): serial_out_path makes
// the output that file; rate_limiter is a TokenBucket. Fields left out keep `base`'s.
SerialConfig serial_from_json(const Json& j, SerialConfig base);
log::LoggerConfig logger_from_json(const Json& j);
MetricsConfig metrics_from_json(const Json& j);
FullVmConfig full_config_from_json(const Json& j);  // also validates the VM
// PUT /snapshot/create and /snapshot/load bodies (Firecracker's shapes, including its
// older mem_file_path form of the memory backend).
SnapshotCreateParams snapshot_create_from_json(const Json& j);
SnapshotLoadParams snapshot_load_from_json(const Json& j);

Json to_json(const MachineConfig& m);
Json to_json(const BootSource& b);
Json to_json(const DriveConfig& d);
Json to_json(const NetConfig& n);
Json to_json(const VsockConfig& v);
Json to_json(const log::LoggerConfig& l);
Json to_json(const MetricsConfig& m);
Json to_json(const FullVmConfig& c);

// Reads, parses and validates a --config-file; errors start with the file name.
FullVmConfig load_json_config(const std::string& path);

}  // namespace ember
