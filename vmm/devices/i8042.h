// The part of an i8042 keyboard controller Linux needs to reset the machine
// (reboot=k writes command 0xFE to port 0x64): a reset ends the VM.
#pragma once

#include <functional>

#include "vmm/devices/bus.h"

namespace ember {

class I8042 : public BusDevice {
 public:
  // Ports 0x60..0x64 map to offsets 0..4.
  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::function<void()> on_reset_;
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
