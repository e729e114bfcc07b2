// An i8042 keyboard controller, as much as Linux uses: the controller commands its
// driver sends at probe time (read/write the command byte, self tests), keyboard
// replies (ACK, reset, identify), IRQ 1 for output, and the CPU reset line
// (reboot=k writes command 0xFE to port 0x64), which ends the VM. Without answers
// the driver polls the status port thousands of times before giving up.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>

#include "base/bus.h"
#include "base/state_stream.h"

namespace ember {

class I8042 : public BusDevice {
 public:
  // Ports 0x60..0x64 map to offsets 0..4. `raise_irq` pulses IRQ 1.
  I8042(std::function<void()> on_reset, std::function<void()> raise_irq = {})
      : on_reset_(std::move(on_reset)), raise_irq_(std::move(raise_irq)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues the scancodes of Ctrl+Alt+Del pressed and released (set 1 when the
  // controller translates, as Linux sets it up, else set 2) and raises IRQ 1.
  // Any thread; false when the guest is not reading the keyboard (queue full).
  bool press_ctrl_alt_del();

  // Snapshots, while no vCPU runs: the command byte, a controller command waiting for its
  // data byte, a keyboard command waiting for its argument, and the bytes queued for the
  // guest. Restore throws Error naming the field.
  void save_state(snapshot::StateWriter& out) const;
  void restore_state(snapshot::StateReader& in);
  // After a restore, once the interrupt controllers are restored: IRQ 1 again if a byte
  // waits with the keyboard interrupt on (virtio::Interrupt::resend_if_pending says why).
  void resend_interrupt_if_pending();

 private:
  void command(uint8_t cmd);
  void data_write(uint8_t value);
  void push_output(uint8_t byte);

  mutable std::mutex mu_;
  std::function<void()> on_reset_;
  std::function<void()> raise_irq_;
  // A byte waits for the guest and the keyboard interrupt is on (under mu_).
  bool byte_waits_with_irq() const;
  std::deque<uint8_t> output_;  // bytes for the guest to read from port 0x60
  uint8_t command_byte_ = 0x45;  // keyboard interrupt on, system flag, translation
  uint8_t pending_command_ = 0;  // a controller command waiting for its data byte
  bool led_argument_ = false;    // keyboard 0xED/0xF3 wait for an argument byte
};

// Boot-complete marker (like Firecracker's boot timer): the guest writes the byte
// 123 to offset 0 once it reaches userspace.
class BootMarker : public BusDevice {
 public:
  static constexpr uint8_t kMagic = 123;
  explicit BootMarker(std::function<void()> on_marker) : on_marker_(std::move(on_marker)) {}
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 0 && data.size() == 1 && data[0] == kMagic && on_marker_) on_marker_();
  }

 private:
  std::function<void()> on_marker_;
};

}  // namespace ember
