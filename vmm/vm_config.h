// The VM's configuration as plain data, shaped after Firecracker's machine-config
// and boot-source objects. The TOML launcher, the JSON config file and the HTTP
// API all produce this.
#pragma once

#include "base/util/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/memory/guest_memory.h"
#include "virtio/rate_limiter.h"

namespace ember {

using virtio::RateLimiterConfig;
using virtio::TokenBucketConfig;

constexpr uint32_t kMaxVcpuCount = 32;
constexpr uint64_t kMinMemMib = 2;
constexpr uint64_t kMaxMemMib = 1024 * 1024;  // 1 TiB
constexpr uint32_t kMaxDrives = 16;
// Firecracker's defaults without i8042.nopnp: with ACPI the i8042 is found through its DSDT
// entry, and probed without it the driver gets no IRQ (hardware-reduced ACPI has no legacy IRQs).
constexpr const char* kDefaultBootArgs =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd";

struct MachineConfig {
  uint32_t vcpu_count = 1;
  uint64_t mem_size_mib = 128;
  bool smt = false;
  HugePages huge_pages = HugePages::None;
  // ember extension: when guest RAM is populated. Background by default: as populated as
  // "sync" once booted, without holding up the boot (perf/boot-latency measurements).
  Prefault prefault = Prefault::Background;
  // KVM's dirty log on guest memory and a record of the pages devices write, so that a
  // snapshot can hold only what changed since the previous one (Diff). Not saved in a
  // snapshot: a restored VM tracks when its load request says so.
  bool track_dirty_pages = false;
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
  // Firecracker's serial rate_limiter (PUT /serial, TOML [serial] rate_limiter): console bytes
  // beyond the bucket are dropped and counted (uart.rate_limiter_dropped_bytes). Size 0: none.
  virtio::TokenBucketConfig rate_limiter;
};

// A virtio-blk drive, shaped after Firecracker's Drive object.
struct DriveConfig {
  enum class IoEngine { IoUring, Sync };
  // ember extension (TOML `cache`, JSON "cache", --drive cache=): Writeback goes through the
  // host page cache; None opens the file O_DIRECT as well (README "Block devices").
  enum class Cache { Writeback, None };
  std::string drive_id;
  std::string path_on_host;
  bool is_read_only = false;  // opened O_RDONLY; the guest sees VIRTIO_BLK_F_RO
  bool is_root_device = false;  // becomes /dev/vda; "root=/dev/vda rw" (ro if read-only) is appended
  IoEngine io_engine = IoEngine::IoUring;
  Cache cache = Cache::Writeback;  // not saved in snapshots: a restored VM's drives use Writeback
  RateLimiterConfig rate_limiter;  // see README "Rate limiters"
};

// A virtio-net interface backed by a host tap device, shaped after Firecracker's
// NetworkInterface object.
struct NetConfig {
  std::string iface_id;
  std::string host_dev_name;  // the tap device, opened through /dev/net/tun
  std::string guest_mac;      // "aa:bb:cc:dd:ee:ff"; empty: generated
  RateLimiterConfig rx_rate_limiter;  // frames to the guest
  RateLimiterConfig tx_rate_limiter;  // frames from the guest
};

// The virtio-vsock device, shaped after Firecracker's Vsock object ("hybrid vsock":
// host processes reach the guest through the Unix socket at uds_path).
struct VsockConfig {
  std::string vsock_id;  // optional, as in Firecracker
  uint32_t guest_cid = 3;
  std::string uds_path;
};

struct VmConfig {
  MachineConfig machine;
  BootSource boot;
  SerialConfig serial;
  std::vector<DriveConfig> drives;
  std::vector<NetConfig> nets;
  std::optional<VsockConfig> vsock;
  // ember extension, outside Firecracker's objects (TOML [boot-source] acpi, --no-acpi):
  // describe the machine with ACPI tables (devices in the DSDT, poweroff through the FADT)
  // instead of virtio_mmio.device= words on the command line. Off for kernels built
  // without CONFIG_ACPI; `acpi=off` in boot_args turns it off as well.
  bool acpi = true;
};

// Whether the VM gets ACPI tables: the switch is on and the guest is not told acpi=off.
bool acpi_enabled(const VmConfig& config);
// The space-separated words of a kernel command line, in order (views into `cmdline`).
std::vector<std::string_view> cmdline_words(std::string_view cmdline);

constexpr uint32_t kMaxNets = 8;
constexpr uint32_t kMinGuestCid = 3;           // 0-2 are reserved (hypervisor, local, host)
constexpr uint32_t kMaxGuestCid = 0xfffffffe;  // U32_MAX is VMADDR_CID_ANY

// A configuration ember cannot run: exit status 2 from the command line, 400 from the API.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Throws ConfigError naming the first invalid field. Called in one place, when a VM is
// about to be built (VmmRunner's StartInstance): every front end (TOML, JSON, flags, API)
// reaches it, and nothing is built from an unchecked configuration. The parsers check
// only what they need to map their format (types, unknown keys), with file and line.
void validate(const VmConfig& config);
// The parts validate() checks, for the API to check one object as it arrives.
void check_machine(const MachineConfig& machine);
void validate_drives(const std::vector<DriveConfig>& drives);
void validate_net(const NetConfig& net);  // one interface on its own
void validate_nets(const std::vector<NetConfig>& nets);
void validate_vsock(const VsockConfig& vsock);

// "aa:bb:cc:dd:ee:ff" (hex digits, either case) into 6 bytes; false if malformed.
bool parse_mac(const std::string& text, uint8_t mac[6]);

}  // namespace ember
