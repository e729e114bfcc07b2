#include "vmm/vm_config.h"

#include "vmm/util/error.h"

namespace ember {

void validate_drives(const std::vector<DriveConfig>& drives) {
  if (drives.size() > kMaxDrives) fail("at most ", kMaxDrives, " drives are supported (got ", drives.size(), ")");
  int roots = 0;
  for (size_t i = 0; i < drives.size(); ++i) {
    const DriveConfig& d = drives[i];
    if (d.drive_id.empty()) fail("drive ", i + 1, " has no drive_id");
    if (d.path_on_host.empty()) fail("drive '", d.drive_id, "' has no path_on_host");
    for (size_t j = 0; j < i; ++j) {
      if (drives[j].drive_id == d.drive_id) fail("two drives are called '", d.drive_id, "'");
    }
    roots += d.is_root_device ? 1 : 0;
  }
  if (roots > 1) fail("only one drive can be the root device (", roots, " are)");
}

void validate(const VmConfig& config) {
  const MachineConfig& m = config.machine;
  if (m.vcpu_count < 1 || m.vcpu_count > kMaxVcpuCount) {
    fail("machine-config.vcpu_count is ", m.vcpu_count, "; it must be between 1 and ", kMaxVcpuCount);
  }
  if (m.mem_size_mib < kMinMemMib || m.mem_size_mib > kMaxMemMib) {
    fail("machine-config.mem_size_mib is ", m.mem_size_mib, "; it must be between ", kMinMemMib, " and ", kMaxMemMib);
  }
  if (m.huge_pages == HugePages::Huge2M && m.mem_size_mib % 2 != 0) {
    fail("machine-config.mem_size_mib must be even with huge_pages = \"2M\"");
  }
  if (m.smt) fail("machine-config.smt = true is not supported: ember presents one thread per core");
  if (config.boot.kernel_image_path.empty()) fail("boot-source.kernel_image_path is not set");
  if (config.serial.output == SerialConfig::Output::File && config.serial.path.empty()) {
    fail("serial output is a file but serial.path is empty");
  }
  validate_drives(config.drives);
}

}  // namespace ember
