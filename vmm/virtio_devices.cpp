#include "vmm/virtio_devices.h"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "base/util/log.h"
#include "virtio/blk/block_device.h"
#include "virtio/net/mac_address.h"
#include "virtio/net/net_device.h"
#include "virtio/net/tap.h"
#include "virtio/spec.h"
#include "virtio/vsock/vsock_device.h"

namespace ember {

namespace {

// Enough submission entries for every queue of every io_uring drive to be full,
// and for every net's RX read, its TX packets in flight and a cancel.
unsigned ring_entries(size_t drives, unsigned queue_size, size_t nets, unsigned tx_in_flight) {
  size_t net_entries = nets * (tx_in_flight + 2);
  unsigned want = static_cast<unsigned>(std::min<size_t>(drives * queue_size + net_entries, 4096));
  unsigned entries = 1;
  while (entries < want) entries <<= 1;
  return entries;
}

constexpr unsigned kBlockQueueSize = 256;
constexpr uint16_t kNetQueueSize = 256;
constexpr uint32_t kNetTxInFlight = 64;

}  // namespace

VirtioDevices::VirtioDevices(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VmConfig& config)
    : devices_on_cmdline_(!acpi_enabled(config)) {
  create_ring(config);
  add_drives(vm, memory, mmio, config.drives);
  add_nets(vm, memory, mmio, config.nets);
  if (config.vsock) add_vsock(vm, memory, mmio, *config.vsock);
  if (ring_) ring_->seal();  // every device has added its files
}

void VirtioDevices::create_ring(const VmConfig& config) {
  size_t uring_drives = std::count_if(config.drives.begin(), config.drives.end(), [](const DriveConfig& d) {
    return d.io_engine == DriveConfig::IoEngine::IoUring;
  });
  if (uring_drives == 0 && config.nets.empty()) return;
  // Once per VM, before the vCPUs start: ring setup is too slow for the request path.
  auto start = std::chrono::steady_clock::now();
  ring_ = std::make_unique<virtio::IoUringRing>(
      ring_entries(uring_drives, kBlockQueueSize, config.nets.size(), kNetTxInFlight));
  loop_.add(ring_->event_fd(), [ring = ring_.get()] { ring->reap(); });
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  log::debug(cat("io_uring ring for ", uring_drives, " drive(s) and ", config.nets.size(), " net(s) set up in ",
                 us.count(), " us"));
}

void VirtioDevices::add_nets(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<NetConfig>& nets) {
  for (size_t i = 0; i < nets.size(); ++i) {
    const NetConfig& n = nets[i];
    virtio::net::NetDeviceOptions options;
    options.id = n.iface_id;
    options.queue_size = kNetQueueSize;
    options.max_tx_in_flight = kNetTxInFlight;
    options.mac = virtio::net::generate_mac(static_cast<uint8_t>(i));
    if (!n.guest_mac.empty() && !parse_mac(n.guest_mac, options.mac.data())) {
      fail("network interface '", n.iface_id, "': guest_mac '", n.guest_mac, "' is not aa:bb:cc:dd:ee:ff");
    }
    options.rx_rate_limiter = n.rx_rate_limiter;
    options.tx_rate_limiter = n.tx_rate_limiter;
    options.loop = &loop_;
    options.tap_writes_never_block = true;  // open_tap() makes its send buffer unlimited
    auto device = std::make_unique<virtio::net::NetDevice>(options, virtio::net::open_tap(n.host_dev_name), *ring_);
    nets_[n.iface_id] = device.get();
    log::info(cat("network interface '", n.iface_id, "': tap ", n.host_dev_name, ", guest MAC ",
                  virtio::net::format_mac(options.mac)));
    add(std::make_unique<virtio::MmioTransport>(std::move(device), memory, loop_, "net '" + n.iface_id + "'"), vm,
        mmio);
  }
}

void VirtioDevices::add_vsock(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VsockConfig& vsock) {
  virtio::vsock::VsockDeviceOptions options;
  options.guest_cid = vsock.guest_cid;
  options.uds_path = vsock.uds_path;
  auto device = std::make_unique<virtio::vsock::VsockDevice>(options, loop_);
  log::info(cat("vsock: guest CID ", vsock.guest_cid, ", host socket ", vsock.uds_path));
  add(std::make_unique<virtio::MmioTransport>(std::move(device), memory, loop_, "vsock"), vm, mmio);
}

void VirtioDevices::add_drives(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<DriveConfig>& drives) {
  // The root drive goes first so that Linux names it /dev/vda (devices probe in
  // command-line order).
  std::vector<DriveConfig> ordered = drives;
  std::stable_partition(ordered.begin(), ordered.end(), [](const DriveConfig& d) { return d.is_root_device; });

  for (const DriveConfig& d : ordered) {
    virtio::blk::BlockDeviceOptions options;
    options.id = d.drive_id;
    options.path = d.path_on_host;
    options.read_only = d.is_read_only;
    options.direct_io = d.cache == DriveConfig::Cache::None;
    options.queue_size = kBlockQueueSize;
    options.rate_limiter = d.rate_limiter;
    options.loop = &loop_;
    bool uring = d.io_engine == DriveConfig::IoEngine::IoUring;
    auto device = std::make_unique<virtio::blk::BlockDevice>(options, uring ? ring_.get() : nullptr);
    log::info(cat("drive '", d.drive_id, "': ", d.path_on_host, ", ", device->capacity_sectors(), " sectors, ",
                  d.is_read_only ? "read-only, " : "", device->engine(),
                  d.cache == DriveConfig::Cache::None ? ", cache none (O_DIRECT)" : ""));
    virtio::blk::BlockDevice* raw = device.get();
    auto transport =
        std::make_unique<virtio::MmioTransport>(std::move(device), memory, loop_, "drive '" + d.drive_id + "'");
    drives_[d.drive_id] = {raw, transport.get()};
    add(std::move(transport), vm, mmio);
    if (d.is_root_device) cmdline_ += d.is_read_only ? " root=/dev/vda ro" : " root=/dev/vda rw";
  }
}

VirtioDevices::~VirtioDevices() {
  stop();
  transports_.clear();  // before the ring and the loop they use
  ring_.reset();
}

void VirtioDevices::pause() {
  loop_.run_sync([this] {
    for (auto& transport : transports_) transport->drain();
  });
  loop_.suspend();
}

void VirtioDevices::stop() {
  loop_.run_sync([this] {
    for (auto& transport : transports_) transport->quiesce();
  });
  loop_.stop();
}

void VirtioDevices::save_state(snapshot::SnapshotContents& out) const {
  for (size_t i = 0; i < transports_.size(); ++i) {
    snapshot::StateWriter w;
    w.text(transports_[i]->name());
    transports_[i]->save_state(w);
    out.add(cat("virtio", i), w.take());
  }
}

void VirtioDevices::restore_state(const snapshot::SnapshotContents& in) {
  for (size_t i = 0; i < transports_.size(); ++i) {
    snapshot::StateReader r = in.section(cat("virtio", i));
    std::string name = r.text("device name", 256);
    if (name != transports_[i]->name()) {
      r.invalid("device name", cat("the snapshot has ", name, " in slot ", i, " where this VM has ", transports_[i]->name()));
    }
    transports_[i]->restore_state(r);
    r.expect_end();
  }
  if (in.contains(cat("virtio", transports_.size()))) {
    fail("snapshot ", in.source(), ": it has more virtio devices than its configuration names");
  }
}

void VirtioDevices::resend_pending_interrupts() {
  for (auto& t : transports_) t->interrupt().resend_if_pending();
}

void VirtioDevices::update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) {
  auto it = drives_.find(drive_id);
  if (it == drives_.end()) fail("no drive is called '", drive_id, "'");
  loop_.run_sync([&] { it->second.device->update_rate_limiter(update); });
  log::info(cat("drive '", drive_id, "': rate limiter updated"));
}

void VirtioDevices::replace_drive_file(const std::string& drive_id, const std::string& path) {
  auto it = drives_.find(drive_id);
  if (it == drives_.end()) fail("no drive is called '", drive_id, "'");
  Drive drive = it->second;
  // Opened here, on the main thread, whose filter allows opening an existing file.
  virtio::blk::BackingFile file =
      virtio::blk::open_backing(drive_id, path, drive.device->read_only(), drive.device->direct_io());
  std::string old_path;
  uint64_t old_sectors = 0;
  std::string error;  // thrown on this thread: an exception must not end the event thread
  // On the event thread even while the VM is paused: its filter allows the io_uring slot update.
  loop_.run_on_thread([&] {
    try {
      old_path = drive.device->path();
      old_sectors = drive.device->capacity_sectors();
      drive.device->replace_backing_file(std::move(file), path);
      drive.transport->update_config([&] { drive.device->publish_capacity(); });
    } catch (const Error& e) {
      error = e.what();
    }
  });
  if (!error.empty()) fail("drive '", drive_id, "': cannot switch to '", path, "': ", error);
  log::info(cat("drive '", drive_id, "': backing file replaced: ", old_path, " (", old_sectors, " sectors) -> ", path,
                " (", drive.device->capacity_sectors(), " sectors)"));
}

void VirtioDevices::update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                             const RateLimiterConfig& tx) {
  auto it = nets_.find(iface_id);
  if (it == nets_.end()) fail("no network interface is called '", iface_id, "'");
  loop_.run_sync([&] { it->second->update_rate_limiters(rx, tx); });
  log::info(cat("network interface '", iface_id, "': rate limiters updated"));
}

std::string VirtioDevices::describe_state() {
  std::string text;
  loop_.run_sync([&] {
    for (const auto& transport : transports_) text += "\n  " + transport->describe_state();
  });
  return text;
}

void VirtioDevices::collect_metrics(MetricGroups& out) const {
  for (const auto& t : transports_) {
    // "drive 'rootfs'" -> "block_rootfs", "net 'eth0'" -> "net_eth0": Firecracker's group
    // names, as JSON-friendly keys.
    std::string group;
    for (char c : t->name()) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') group += c;
      else if (c == ' ' && !group.empty() && group.back() != '_') group += '_';
    }
    if (group.starts_with("drive_")) group.replace(0, 5, "block");
    auto& counters = out[group];
    counters["interrupts"] = t->interrupt().raised();
    t->device().report_metrics([&](std::string_view name, uint64_t value) { counters[std::string(name)] = value; });
  }
  add_device_totals(out);
}

void VirtioDevices::add(std::unique_ptr<virtio::MmioTransport> transport, VmFd& vm, Bus& mmio) {
  size_t index = transports_.size();
  uint32_t irq = layout::kFirstVirtioIrq + static_cast<uint32_t>(index);
  if (index >= layout::kVirtioMmioSlots || irq > layout::kLastIrq) fail("too many virtio devices");
  uint64_t base = layout::kVirtioMmioStart + index * layout::kVirtioMmioSlotSize;
  mmio.insert(*transport, base, layout::kVirtioMmioSlotSize, transport->name());
  // Notifications and interrupts bypass userspace: the vCPU never exits for them.
  for (uint16_t q = 0; q < transport->queue_count(); ++q) {
    vm.register_ioeventfd(transport->queue_notify_fd(q), base + virtio::mmio::kQueueNotify, 4, uint64_t{q});
  }
  vm.register_irqfd(transport->irq_fd(), irq);
  slots_.push_back({base, layout::kVirtioMmioSlotSize, irq});
  // 4.2.3: Linux's virtio_mmio.device=<size>@<base>:<irq>; with ACPI the DSDT says it.
  if (devices_on_cmdline_) cmdline_ += cat(" virtio_mmio.device=4K@", hex(base), ":", irq);
  transports_.push_back(std::move(transport));
}

}  // namespace ember
