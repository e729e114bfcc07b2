// The one-shot launcher's TOML format, mapped onto VmConfig.
#pragma once

#include <string>

#include "vmm/vm_config.h"

namespace ember {

// Reads and checks a TOML file. Relative paths in it resolve against its folder.
// Throws Error as "<file>:<line>: <what is wrong>".
VmConfig load_toml_config(const std::string& path);
// Same, from text; `source_name` is used in messages, `base_dir` for relative paths.
VmConfig parse_toml_config(const std::string& text, const std::string& source_name, const std::string& base_dir);

}  // namespace ember
