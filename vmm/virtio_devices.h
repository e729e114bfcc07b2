// The VM's virtio devices: one virtio-mmio slot and IRQ each, KVM ioeventfds
// and irqfds wired to the event thread, the shared io_uring ring, and the
// kernel command-line words that announce them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/bus.h"
#include "base/event_loop.h"
#include "base/memory/guest_memory.h"
#include "virtio/io_uring_ring.h"
#include "virtio/mmio_transport.h"
#include "vmm/devices/mmio_slot.h"
#include "vmm/kvm/kvm.h"
#include "vmm/metrics.h"
#include "vmm/snapshot/snapshot_file.h"
#include "vmm/vm_config.h"

namespace ember {
namespace virtio::blk {
class BlockDevice;
}
namespace virtio::net {
class NetDevice;
}

class VirtioDevices {
 public:
  // Opens every device's backend (drives, taps, the vsock socket) and registers
  // the devices on `mmio` and with KVM. Throws Error.
  VirtioDevices(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VmConfig& config);
  // stop(), then the transports and devices, then the ring, then the loop (member order).
  ~VirtioDevices();
  VirtioDevices(const VirtioDevices&) = delete;
  VirtioDevices& operator=(const VirtioDevices&) = delete;

  // Words to append to the kernel command line (root=..., and virtio_mmio.device=...
  // unless the VM has ACPI, whose DSDT describes the slots instead).
  const std::string& cmdline() const { return cmdline_; }
  // Each device's MMIO window and IRQ, in slot order.
  const std::vector<MmioSlot>& slots() const { return slots_; }
  // The event thread runs between start() (before the vCPUs) and stop() (after they
  // are joined). stop() first quiesces every device on the event thread (in-flight
  // io_uring requests completed or cancelled, chains dropped), then ends the thread.
  // Idempotent; also right when start() never ran.
  void start() { loop_.start(); }
  void stop();
  // With the vCPUs paused: in-flight I/O completed (into the used rings), then the event
  // thread parked, so the paused VM's memory changes no more. resume() wakes it;
  // notifications that came meanwhile are handled then.
  void pause();
  void resume() { loop_.resume(); }
  // Snapshots: one section per device ("virtio0", ...: the transport's registers and
  // queues, the device's own state). save_state() on a paused VM (event thread parked);
  // restore_state() on devices just built from the snapshot's configuration, before
  // start(). Throws Error naming the device and what does not fit.
  void save_state(snapshot::SnapshotContents& out) const;
  void restore_state(const snapshot::SnapshotContents& in);
  // After restore_state() and the VM's interrupt controllers: each device with interrupt
  // status bits set pulses its IRQ again (virtio::Interrupt::resend_if_pending).
  void resend_pending_interrupts();
  // A drive's or interface's rate limiters updated on the event thread (inline while it
  // is parked); the device re-decides what waits there. Throws Error for an unknown id.
  void update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update);
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx, const RateLimiterConfig& tx);
  // PATCH /drives with path_on_host, on a running VM: `path` opens on the calling thread
  // (read-only or not, as the drive was), then on the event thread the requests in flight
  // on the old file complete, the drive switches (its io_uring slot too), the capacity in
  // its config space follows the new file and the guest gets a config change interrupt.
  // Throws Error naming the drive, the path and why (unknown drive, file refused): the
  // old file then stays in use.
  void replace_drive_file(const std::string& drive_id, const std::string& path);
  // One group per device, named after it ("drive_rootfs", ...); any thread.
  void collect_metrics(MetricGroups& out) const;
  // Every device's status, interrupt and queue indexes, one line each; with the vCPUs
  // stopped (their threads own the register files) and before stop() (which hands the
  // queues back). Read on the event thread.
  std::string describe_state();

 private:
  // The shared io_uring, when a drive uses io_uring or there are nets.
  void create_ring(const VmConfig& config);
  void add_drives(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<DriveConfig>& drives);
  void add_nets(VmFd& vm, const GuestMemory& memory, Bus& mmio, const std::vector<NetConfig>& nets);
  void add_vsock(VmFd& vm, const GuestMemory& memory, Bus& mmio, const VsockConfig& vsock);
  void add(std::unique_ptr<virtio::MmioTransport> transport, VmFd& vm, Bus& mmio);

  // Declared in the order they are needed, so destroyed devices first, loop last.
  EventLoop loop_;
  std::unique_ptr<virtio::IoUringRing> ring_;  // when a drive uses io_uring or there are nets
  std::vector<std::unique_ptr<virtio::MmioTransport>> transports_;  // the MMIO bus points at them
  // By id, for rate limiter updates and file swaps; transports_ own them.
  struct Drive {
    virtio::blk::BlockDevice* device;
    virtio::MmioTransport* transport;
  };
  std::map<std::string, Drive> drives_;
  std::map<std::string, virtio::net::NetDevice*> nets_;
  bool devices_on_cmdline_;
  std::vector<MmioSlot> slots_;
  std::string cmdline_;
};

}  // namespace ember
