// The virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2): the register
// file a driver programs, with checked status transitions, and the hand-off of
// validated queues to the device on the event thread. Knows nothing of blk.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/bus.h"
#include "base/event_loop.h"
#include "base/memory/guest_memory.h"
#include "base/state_stream.h"
#include "base/util/unique_fd.h"
#include "virtio/interrupt.h"
#include "virtio/queue.h"
#include "virtio/virtio_device.h"

namespace ember::virtio {

class MmioTransport : public BusDevice {
 public:
  // Creates one notification eventfd per queue and the irqfd, and registers the
  // notification handlers with `loop`. Throws Error at setup.
  MmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& memory, EventLoop& loop, std::string name);
  // Quiesces the device and forgets the notification handlers: only once `loop` no
  // longer runs (or from its thread), and before `loop` and any io_uring ring the
  // device uses are destroyed.
  ~MmioTransport() override;
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;

  // Stops the device using guest memory: requests in flight are finished or cancelled
  // and their chains dropped, queues handed back; the register file is kept. Event
  // thread, or when the loop does not run. The VM's stop order calls it for every device.
  void quiesce();
  // For a pause: the device completes what is in flight as usual (the driver sees it in
  // the used ring) and keeps its queues. Event thread, or when the loop does not run.
  void drain();

  // Snapshots: the register file, the queues of an active device and the device's own
  // state (VirtioDevice::save_state). Only while no vCPU runs and the event loop does not
  // (suspended for a pause, or not started yet): save_state() after drain(), on a paused
  // VM; restore_state() on a transport fresh from its constructor, whose guest memory
  // already holds the snapshot's, before the vCPUs first run. Afterwards an active device
  // is active on the restored queues without a new DRIVER_OK, and every queue is
  // processed once when the loop next runs (a notification the saved VM had not handled
  // yet is not lost). A state this transport and device could not have reached is refused
  // with an Error naming the device and the field; the transport is then unchanged, the
  // device maybe not: discard both.
  void save_state(snapshot::StateWriter& out) const;
  void restore_state(snapshot::StateReader& in);

  // The device's config space changes (4.2.2 ConfigGeneration): `change` runs under the
  // lock the driver's config reads take, the generation moves on before the lock is
  // released (a read that saw the new values then sees a new generation after them), and
  // an active device raises the configuration change interrupt. Event thread, or when the
  // loop does not run.
  void update_config(const std::function<void()>& change);

  // For KVM_IOEVENTFD (written with the queue index at QueueNotify) and KVM_IRQFD.
  int queue_notify_fd(uint16_t queue) const { return notify_fds_[queue].get(); }
  uint16_t queue_count() const { return static_cast<uint16_t>(max_sizes_.size()); }
  int irq_fd() const { return irq_fd_.get(); }
  const std::string& name() const { return name_; }
  const Interrupt& interrupt() const { return interrupt_; }
  VirtioDevice& device() { return *device_; }
  // Status, interrupt and every queue's indexes: for diagnosing a stalled device.
  // Only once the vCPU threads (register file) and the event thread (queues) stopped.
  std::string describe_state() const;

  // BusDevice, on vCPU threads.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  struct QueueRegs {
    QueueConfig config;
    bool ready = false;
  };
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  bool features_acceptable() const;
  // restore_state()'s checks, and the queues of an active device.
  std::vector<SplitQueue> restore_queues(snapshot::StateReader& in, const std::vector<QueueRegs>& regs,
                                         uint64_t driver_features);
  void activate();
  void reset();
  // Event thread.
  void on_notify(uint16_t queue);
  void after_processing();

  std::unique_ptr<VirtioDevice> device_;
  const GuestMemory& memory_;
  EventLoop& loop_;
  std::string name_;
  std::vector<uint16_t> max_sizes_;
  uint64_t offered_features_ = 0;
  std::vector<UniqueFd> notify_fds_;
  UniqueFd irq_fd_;
  Interrupt interrupt_;

  // Register file: vCPU threads, under mu_.
  mutable std::mutex mu_;
  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  // Config space and its generation: read by vCPU threads, changed by update_config().
  // Never held while waiting on another thread (mu_ is, for a reset).
  mutable std::mutex config_mu_;
  std::atomic<uint32_t> config_generation_{0};
  std::vector<QueueRegs> queue_regs_;
  // Set by the event thread when the driver broke a ring (2.1.2).
  std::atomic<bool> needs_reset_{false};

  // Event thread only, after activation.
  std::vector<SplitQueue> queues_;
  bool active_ = false;
};

}  // namespace ember::virtio
