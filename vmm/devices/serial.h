// 16550A-compatible UART (COM1): guest output to a ConsoleOutput (written by its own
// thread, bounded), host input into a bounded receive FIFO, interrupts through a
// callback (an irqfd in the VMM).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "base/bus.h"
#include "base/state_stream.h"
#include "vmm/devices/console_output.h"

namespace ember {

class Serial : public BusDevice {
 public:
  static constexpr size_t kRxCapacity = 64 * 1024;

  // `out` null discards output; it must outlive the Serial. `on_line` sees each complete
  // output line (for panic detection); both callbacks run on the calling vCPU thread.
  Serial(ConsoleOutput* out, std::function<void()> raise_irq, std::function<void(const std::string&)> on_line);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host input. Returns how many bytes were accepted (the rest overran the FIFO).
  size_t enqueue_input(std::span<const uint8_t> bytes);

  // Snapshots, while no vCPU runs: every register (divisor latch, IER, LCR, MCR, SCR),
  // the pending THR-empty, overrun and interrupt state, and the receive FIFO's contents
  // (host input the guest has not read yet). The partial output line kept for panic
  // detection is host-side and dropped. Restore throws Error naming the field.
  void save_state(snapshot::StateWriter& out) const;
  void restore_state(snapshot::StateReader& in);
  // After a restore, once the interrupt controllers are restored: pulses the IRQ if the
  // registers want one (virtio::Interrupt::resend_if_pending says why).
  void resend_interrupt_if_pending();
  // Its interrupt-related registers, for diagnosing a guest that hangs.
  std::string describe_state();

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  void emit(uint8_t byte);
  void update_interrupt();

  bool wants_interrupt() const;

  mutable std::mutex mu_;
  ConsoleOutput* out_;
  std::function<void()> raise_irq_;
  std::function<void(const std::string&)> on_line_;
  std::string line_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
  bool thre_pending_ = false;
  bool overrun_ = false;
  bool irq_asserted_ = false;
};

}  // namespace ember
