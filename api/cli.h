// Command-line options of the ember binary.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vm_config.h"

namespace ember {

struct CliOptions {
  bool help = false;
  bool version = false;
  std::optional<std::string> config_path;
  std::optional<std::string> kernel, initrd, cmdline, serial_out, log_level, boot_timings;
  std::optional<uint32_t> vcpus;
  std::optional<uint64_t> mem_mib;
  std::vector<DriveConfig> drives;  // --drive, added after the config file's
  std::vector<NetConfig> nets;      // --net, likewise
  std::optional<VsockConfig> vsock;  // --vsock, replaces the config file's
  std::optional<Prefault> prefault;
  // The HTTP API and Firecracker-style options.
  std::optional<std::string> api_sock, config_file, log_path, metrics_path;
  std::string instance_id = "anonymous-instance";
  uint64_t http_api_max_payload_size = 51200;  // Firecracker's default
  bool show_level = false, show_log_origin = false;
  bool boot_timer = false;  // accepted: ember's boot-complete marker is always on
  bool no_api = false;
  bool no_seccomp = false;
  bool no_acpi = false;
  // Start from a snapshot instead of booting: the memory from --mem-file (mapped) or a
  // page-fault handler at --uffd-socket; running unless --restore-paused.
  std::optional<std::string> restore, mem_file, uffd_socket;
  bool restore_paused = false;
};

// The Firecracker release whose API ember answers as, named first by `ember --version` for the
// tools that check it (Kata Containers wants at least 0.21.1): the one Kata Containers'
// Firecracker driver targets (its versions.yaml), whose calls ember answers.
inline constexpr const char* kFirecrackerApiVersion = "1.12.1";

// `ember --version`: "Firecracker v<kFirecrackerApiVersion> API, served by ember <version>\n".
// One line, whose second word is the version, as Firecracker's "Firecracker v1.12.1" is
// parsed; the rest says which VMM it is.
std::string version_text(std::string_view ember_version);

// Firecracker's API socket when no --api-sock is given.
inline constexpr const char* kDefaultApiSock = "/run/firecracker.socket";

// Throws Error for unknown flags, missing values and malformed numbers.
CliOptions parse_cli(const std::vector<std::string>& args);
// Where the HTTP API is served: --api-sock; else, where Firecracker would serve its default
// socket (no TOML launcher file, no flag that describes or restores a VM, no --no-api),
// kDefaultApiSock; else nowhere.
std::optional<std::string> api_socket_path(const CliOptions& options);
// Whether any flag describes the VM (--kernel, --drive, --mem-mib, ...): none may go with a
// restore, whose VM comes from the snapshot.
bool describes_vm(const CliOptions& options);

// --restore's request, or nullopt without --restore. Throws Error for a missing memory
// source or flags that describe a VM (the snapshot brings its own).
std::optional<SnapshotLoadParams> restore_request(const CliOptions& options);
// Command-line flags override the file.
void apply_overrides(const CliOptions& options, VmConfig& config);
const char* usage_text();

}  // namespace ember
