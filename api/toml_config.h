// The one-shot launcher's TOML format, mapped onto VmConfig.
#pragma once

#include <string>

#include <optional>

#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vm_config.h"

namespace ember {

// What a launcher's TOML file asks for: a VM to boot, or with a [restore] table one to
// restore from a snapshot (then only [serial] may accompany it, since the rest of the VM
// comes from the snapshot; `vm` holds that [serial] choice).
struct TomlLaunch {
  VmConfig vm;
  std::optional<SnapshotLoadParams> restore;
};
TomlLaunch load_toml_launch(const std::string& path);
TomlLaunch parse_toml_launch(const std::string& text, const std::string& source_name, const std::string& base_dir);

// A VM to boot only ([restore] refused). Reads and checks a TOML file. Relative paths in it resolve against its folder.
// Throws Error as "<file>:<line>: <what is wrong>".
VmConfig load_toml_config(const std::string& path);
// Same, from text; `source_name` is used in messages, `base_dir` for relative paths.
VmConfig parse_toml_config(const std::string& text, const std::string& source_name, const std::string& base_dir);

}  // namespace ember
