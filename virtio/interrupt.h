// A virtio-mmio device's interrupt: the InterruptStatus bits (4.2.2) plus the
// irqfd that injects the IRQ without a vCPU exit. Shared by the event thread
// (raises) and vCPU threads (read/ack), hence the atomic.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/util/eventfd.h"
#include "virtio/spec.h"

namespace ember::virtio {

class Interrupt {
 public:
  explicit Interrupt(int irqfd) : irqfd_(irqfd) {}
  void signal_used() { raise(mmio::kInterruptUsedBuffer); }
  void signal_config() { raise(mmio::kInterruptConfigChange); }
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  void ack(uint32_t bits) { status_.fetch_and(~bits, std::memory_order_acq_rel); }
  void clear() { status_.store(0, std::memory_order_release); }
  // A restored InterruptStatus (snapshots): the bits only, no interrupt.
  void restore_status(uint32_t bits) { status_.store(bits, std::memory_order_release); }
  // Once the restored VM's interrupt controllers are in place: pulses the IRQ again if a
  // status bit is set. KVM injects an irqfd's pulse on an IOAPIC pin from a worker, so the
  // last pulse before a snapshot may not have reached the saved controller state; the
  // driver finds the status bits and handles them (a spurious pulse it reads as none).
  void resend_if_pending() const {
    if (status() != 0) signal_eventfd(irqfd_);
  }
  uint64_t raised() const { return raised_.load(std::memory_order_relaxed); }

 private:
  void raise(uint32_t bit) {
    status_.fetch_or(bit, std::memory_order_acq_rel);
    raised_.fetch_add(1, std::memory_order_relaxed);
    signal_eventfd(irqfd_);
  }
  int irqfd_;
  std::atomic<uint32_t> status_{0};
  std::atomic<uint64_t> raised_{0};
};

}  // namespace ember::virtio
