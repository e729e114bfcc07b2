// The VM's virtio devices: one virtio-mmio slot and IRQ each, KVM ioeventfds
// and irqfds wired to the event thread, the shared io_uring ring, and the
// kernel command-line words that announce them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "virtio/io_uring_ring.h"
#include "virtio/mmio_transport.h"
#include "vmm/devices/bus.h"
#include "vmm/event_loop.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/metrics.h"
#include "vmm/vm_config.h"

namespace ember {

class VirtioDevices {
 public:
  // Opens every device's backend (drives, taps, the vsock socket) and registers
  // the devices on `mmio` and with KVM. Throws Error.
  VirtioDevices(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VmConfig& config);
  ~VirtioDevices();

  // Words to append to the kernel command line (virtio_mmio.device=..., root=...).
  const std::string& cmdline() const { return cmdline_; }
  // The event thread runs between start() (before the vCPUs) and stop() (after).
  void start() { loop_.start(); }
  void stop() { loop_.stop(); }
  // One group per device, named after it ("drive_rootfs", ...); any thread.
  void collect_metrics(MetricGroups& out) const;
  // Every device's status, interrupt and queue indexes, one line each; only after
  // stop() and with the vCPUs stopped (their threads and the event thread own that state).
  std::string describe_state() const;

 private:
  // The shared io_uring, when a drive uses io_uring or there are nets.
  void create_ring(const VmConfig& config);
  void add_drives(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<DriveConfig>& drives);
  void add_nets(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<NetConfig>& nets);
  void add_vsock(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VsockConfig& vsock);
  void add(std::shared_ptr<virtio::MmioTransport> transport, VmFd& vm, Bus& mmio);

  EventLoop loop_;
  std::unique_ptr<virtio::IoUringRing> ring_;  // when a drive uses io_uring or there are nets
  std::vector<std::shared_ptr<virtio::MmioTransport>> transports_;
  std::string cmdline_;
};

}  // namespace ember
