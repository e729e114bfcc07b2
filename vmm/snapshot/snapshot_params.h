// What a snapshot request asks for (PUT /snapshot/create and /snapshot/load, the TOML
// launcher's [restore]), as plain values; shaped after Firecracker's SnapshotCreateParams
// and SnapshotLoadParams.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ember {

struct SnapshotCreateParams {
  enum class Type { Full, Diff };
  Type type = Type::Full;
  std::string snapshot_path;  // the VM's state (CPU, devices, configuration)
  std::string mem_file_path;  // guest memory; for Diff, the pages written since the last snapshot
};

struct SnapshotLoadParams {
  enum class Backend { File, Uffd };
  std::string snapshot_path;
  Backend backend = Backend::File;
  std::string backend_path;  // File: the memory file; Uffd: the page-fault handler's socket
  bool track_dirty_pages = false;
  bool resume_vm = false;
  struct NetOverride {
    std::string iface_id;
    std::string host_dev_name;
  };
  std::vector<NetOverride> network_overrides;
  std::optional<std::string> vsock_uds_path;  // vsock_override.uds_path
};

}  // namespace ember
