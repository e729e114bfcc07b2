#include "vmm/vm_config.h"

#include <algorithm>

#include "base/memory/layout.h"
#include "base/util/error.h"

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
    virtio::check_rate_limiter(d.rate_limiter, "drive '" + d.drive_id + "': rate_limiter");
    roots += d.is_root_device ? 1 : 0;
  }
  if (roots > 1) fail("only one drive can be the root device (", roots, " are)");
}

bool parse_mac(const std::string& text, uint8_t mac[6]) {
  if (text.size() != 17) return false;
  for (int i = 0; i < 6; ++i) {
    int value = 0;
    for (int j = 0; j < 2; ++j) {
      char c = text[i * 3 + j];
      int digit = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (digit < 0) return false;
      value = value * 16 + digit;
    }
    if (i < 5 && text[i * 3 + 2] != ':') return false;
    mac[i] = static_cast<uint8_t>(value);
  }
  return true;
}

void validate_net(const NetConfig& net) {
  if (net.iface_id.empty()) fail("a network interface has no iface_id");
  const std::string& dev = net.host_dev_name;
  // IFNAMSIZ is 16 with the terminating NUL.
  if (dev.empty() || dev.size() > 15 || dev.find_first_of("/: \t\n") != std::string::npos) {
    fail("network interface '", net.iface_id, "': host_dev_name '", dev,
         "' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
  }
  uint8_t mac[6];
  if (!net.guest_mac.empty()) {
    if (!parse_mac(net.guest_mac, mac)) {
      fail("network interface '", net.iface_id, "': guest_mac '", net.guest_mac, "' is not like aa:bb:cc:dd:ee:ff");
    }
    if (mac[0] & 1) fail("network interface '", net.iface_id, "': guest_mac ", net.guest_mac, " is a multicast address");
  }
  virtio::check_rate_limiter(net.rx_rate_limiter, "network interface '" + net.iface_id + "': rx_rate_limiter");
  virtio::check_rate_limiter(net.tx_rate_limiter, "network interface '" + net.iface_id + "': tx_rate_limiter");
}

void validate_nets(const std::vector<NetConfig>& nets) {
  if (nets.size() > kMaxNets) fail("at most ", kMaxNets, " network interfaces are supported (got ", nets.size(), ")");
  for (size_t i = 0; i < nets.size(); ++i) {
    validate_net(nets[i]);
    for (size_t j = 0; j < i; ++j) {
      if (nets[j].iface_id == nets[i].iface_id) fail("two network interfaces are called '", nets[i].iface_id, "'");
      if (nets[j].host_dev_name == nets[i].host_dev_name) {
        fail("network interfaces '", nets[j].iface_id, "' and '", nets[i].iface_id, "' both use tap '",
             nets[i].host_dev_name, "'");
      }
      if (!nets[i].guest_mac.empty() && nets[j].guest_mac == nets[i].guest_mac) {
        fail("network interfaces '", nets[j].iface_id, "' and '", nets[i].iface_id, "' have the same guest_mac");
      }
    }
  }
}

void validate_vsock(const VsockConfig& vsock) {
  if (vsock.guest_cid < kMinGuestCid || vsock.guest_cid > kMaxGuestCid) {
    fail("vsock.guest_cid is ", vsock.guest_cid, "; it must be between ", kMinGuestCid, " and ", kMaxGuestCid);
  }
  if (vsock.uds_path.empty()) fail("vsock.uds_path is not set");
  // sun_path holds 108 bytes with the NUL; guest-initiated connections use "<uds_path>_<port>".
  constexpr size_t kMaxUdsPath = 107 - 11;
  if (vsock.uds_path.size() > kMaxUdsPath) {
    fail("vsock.uds_path '", vsock.uds_path, "' is too long (at most ", kMaxUdsPath, " bytes)");
  }
}

void check_machine(const MachineConfig& m) {
  if (m.vcpu_count < 1 || m.vcpu_count > kMaxVcpuCount) {
    fail("machine-config.vcpu_count is ", m.vcpu_count, "; it must be between 1 and ", kMaxVcpuCount);
  }
  if (m.mem_size_mib < kMinMemMib || m.mem_size_mib > kMaxMemMib) {
    fail("machine-config.mem_size_mib is ", m.mem_size_mib, "; it must be between ", kMinMemMib, " and ", kMaxMemMib);
  }
  // Guest RAM in whole 2 MiB pages whenever huge pages are asked for (as Firecracker).
  if (m.huge_pages != HugePages::None && m.mem_size_mib % 2 != 0) {
    fail("machine-config.mem_size_mib is ", m.mem_size_mib, "; with huge_pages it must be a multiple of 2 (MiB)");
  }
  if (m.smt) fail("machine-config.smt = true is not supported: ember presents one thread per core");
}

namespace {
void check(const VmConfig& config) {
  check_machine(config.machine);
  if (config.boot.kernel_image_path.empty()) fail("boot-source.kernel_image_path is not set");
  if (config.serial.output == SerialConfig::Output::File && config.serial.path.empty()) {
    fail("serial output is a file but serial.path is empty");
  }
  virtio::check_token_bucket(config.serial.rate_limiter, "serial: rate_limiter");
  validate_drives(config.drives);
  validate_nets(config.nets);
  if (config.vsock) validate_vsock(*config.vsock);
  // Each virtio device takes one IOAPIC pin; the limits above fit one kind at a time, not all.
  size_t devices = config.drives.size() + config.nets.size() + (config.vsock ? 1 : 0);
  size_t pins = layout::kLastIrq - layout::kFirstVirtioIrq + 1;
  if (devices > pins) {
    fail(config.drives.size(), " drives, ", config.nets.size(), " network interfaces", config.vsock ? " and vsock" : "",
         " need ", devices, " interrupts; ember has ", pins, " for virtio devices (IRQs ", layout::kFirstVirtioIrq, "-",
         layout::kLastIrq, ")");
  }
}
}  // namespace

bool acpi_enabled(const VmConfig& config) {
  if (!config.acpi) return false;
  // The kernel reads the last acpi= word; any later word may turn it back on.
  std::string_view last;
  for (std::string_view word : cmdline_words(config.boot.boot_args)) {
    if (word.starts_with("acpi=")) last = word;
  }
  return last != "acpi=off";
}

std::vector<std::string_view> cmdline_words(std::string_view cmdline) {
  std::vector<std::string_view> words;
  size_t at = 0;
  while (at < cmdline.size()) {
    size_t end = std::min(cmdline.find(' ', at), cmdline.size());
    if (end > at) words.push_back(cmdline.substr(at, end - at));
    at = end + 1;
  }
  return words;
}

void validate(const VmConfig& config) {
  try {
    check(config);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
}

}  // namespace ember
