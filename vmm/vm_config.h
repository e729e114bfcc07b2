// The VM's configuration as plain data, shaped after Firecracker's machine-config
// and boot-source objects. The TOML launcher, the JSON config file and the HTTP
// API all produce this.
#pragma once

#include <cstdint>
#include <string>

#include "vmm/memory/guest_memory.h"

namespace ember {

constexpr uint32_t kMaxVcpuCount = 32;
constexpr uint64_t kMinMemMib = 2;
constexpr uint64_t kMaxMemMib = 1024 * 1024;  // 1 TiB
constexpr const char* kDefaultBootArgs =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

struct MachineConfig {
  uint32_t vcpu_count = 1;
  uint64_t mem_size_mib = 128;
  bool smt = false;
  HugePages huge_pages = HugePages::None;
  bool prefault = true;  // ember extension: populate guest RAM before boot
};

struct BootSource {
  std::string kernel_image_path;
  std::string initrd_path;  // empty: no initrd
  std::string boot_args = kDefaultBootArgs;
};

struct SerialConfig {
  enum class Output { Stdout, File, None };
  Output output = Output::Stdout;
  std::string path;   // for Output::File
  bool input = true;  // forward host stdin when it is a terminal or pipe
};

struct VmConfig {
  MachineConfig machine;
  BootSource boot;
  SerialConfig serial;
};

// Throws Error naming the first invalid field.
void validate(const VmConfig& config);

}  // namespace ember
