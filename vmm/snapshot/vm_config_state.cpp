#include "vmm/snapshot/vm_config_state.h"

#include <algorithm>

namespace ember::snapshot {

namespace {
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxText = 4096;  // ids, MACs, the command line (Linux's limit is 2 KiB)

template <typename Enum>
Enum read_enum(StateReader& in, const char* field, Enum last) {
  uint8_t v = in.u8(field);
  if (v > static_cast<uint8_t>(last)) in.invalid(field, cat("unknown value ", v));
  return static_cast<Enum>(v);
}
void write_limiter(StateWriter& out, const RateLimiterConfig& l) {
  for (const auto* bucket : {&l.bandwidth, &l.ops}) {
    out.boolean(bucket->has_value());
    if (!*bucket) continue;
    out.u64((*bucket)->size);
    out.u64((*bucket)->one_time_burst);
    out.u64((*bucket)->refill_time_ms);
  }
}

// Bounds and consistency are validate()'s, as for any configuration.
RateLimiterConfig read_limiter(StateReader& in) {
  RateLimiterConfig l;
  for (auto* bucket : {&l.bandwidth, &l.ops}) {
    if (!in.boolean("rate limiter bucket present")) continue;
    virtio::TokenBucketConfig b;
    b.size = in.u64("bucket size");
    b.one_time_burst = in.u64("bucket one_time_burst");
    b.refill_time_ms = in.u64("bucket refill_time");
    *bucket = b;
  }
  return l;
}
}  // namespace

void write_state(StateWriter& out, const VmConfig& c) {
  out.u32(c.machine.vcpu_count);
  out.u64(c.machine.mem_size_mib);
  out.boolean(c.machine.smt);
  out.u8(static_cast<uint8_t>(c.machine.huge_pages));
  out.u8(static_cast<uint8_t>(c.machine.prefault));
  out.text(c.boot.kernel_image_path);
  out.text(c.boot.initrd_path);
  out.text(c.boot.boot_args);
  out.boolean(c.acpi);
  out.u32(static_cast<uint32_t>(c.drives.size()));
  for (const auto& d : c.drives) {
    out.text(d.drive_id);
    out.text(d.path_on_host);
    out.boolean(d.is_read_only);
    out.boolean(d.is_root_device);
    out.u8(static_cast<uint8_t>(d.io_engine));
    write_limiter(out, d.rate_limiter);
  }
  out.u32(static_cast<uint32_t>(c.nets.size()));
  for (const auto& n : c.nets) {
    out.text(n.iface_id);
    out.text(n.host_dev_name);
    out.text(n.guest_mac);
    write_limiter(out, n.rx_rate_limiter);
    write_limiter(out, n.tx_rate_limiter);
  }
  out.boolean(c.vsock.has_value());
  if (c.vsock) {
    out.text(c.vsock->vsock_id);
    out.u32(c.vsock->guest_cid);
    out.text(c.vsock->uds_path);
  }
}

VmConfig read_vm_config(StateReader& in) {
  VmConfig c;
  c.machine.vcpu_count = in.u32("vcpu_count");
  c.machine.mem_size_mib = in.u64("mem_size_mib");
  c.machine.smt = in.boolean("smt");
  c.machine.huge_pages = read_enum(in, "huge_pages", HugePages::Huge2M);
  c.machine.prefault = read_enum(in, "prefault", Prefault::Background);
  c.boot.kernel_image_path = in.text("kernel_image_path", kMaxPath);
  c.boot.initrd_path = in.text("initrd_path", kMaxPath);
  c.boot.boot_args = in.text("boot_args", kMaxText);
  c.acpi = in.boolean("acpi");
  uint32_t drives = in.u32("drive count");
  if (drives > kMaxDrives) in.invalid("drive count", cat(drives, " is more than ", kMaxDrives));
  for (uint32_t i = 0; i < drives; ++i) {
    DriveConfig d;
    d.drive_id = in.text("drive_id", kMaxText);
    d.path_on_host = in.text("path_on_host", kMaxPath);
    d.is_read_only = in.boolean("is_read_only");
    d.is_root_device = in.boolean("is_root_device");
    d.io_engine = read_enum(in, "io_engine", DriveConfig::IoEngine::Sync);
    d.rate_limiter = read_limiter(in);
    c.drives.push_back(std::move(d));
  }
  uint32_t nets = in.u32("network interface count");
  if (nets > kMaxNets) in.invalid("network interface count", cat(nets, " is more than ", kMaxNets));
  for (uint32_t i = 0; i < nets; ++i) {
    NetConfig n;
    n.iface_id = in.text("iface_id", kMaxText);
    n.host_dev_name = in.text("host_dev_name", kMaxText);
    n.guest_mac = in.text("guest_mac", kMaxText);
    n.rx_rate_limiter = read_limiter(in);
    n.tx_rate_limiter = read_limiter(in);
    c.nets.push_back(std::move(n));
  }
  if (in.boolean("has vsock")) {
    VsockConfig v;
    v.vsock_id = in.text("vsock_id", kMaxText);
    v.guest_cid = in.u32("guest_cid");
    v.uds_path = in.text("uds_path", kMaxPath);
    c.vsock = std::move(v);
  }
  in.expect_end();
  return c;
}

void apply_overrides(VmConfig& config, const SnapshotLoadParams& params) {
  config.machine.track_dirty_pages = params.track_dirty_pages;  // the load request's choice, never the snapshot's
  for (const auto& o : params.network_overrides) {
    auto it = std::find_if(config.nets.begin(), config.nets.end(),
                           [&](const NetConfig& n) { return n.iface_id == o.iface_id; });
    if (it == config.nets.end()) fail("network_overrides: the snapshot has no network interface '", o.iface_id, "'");
    it->host_dev_name = o.host_dev_name;
  }
  if (params.vsock_uds_path) {
    if (!config.vsock) fail("vsock_override: the snapshot has no vsock device");
    config.vsock->uds_path = *params.vsock_uds_path;
  }
}

}  // namespace ember::snapshot
