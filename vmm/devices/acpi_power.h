// The hardware-reduced ACPI registers the FADT points at: sleep control, sleep status
// and reset (ACPI 6.5 4.8.3.7, 4.8.3.6). Writing SLP_EN with S5's SLP_TYP to the sleep
// control register is the guest's poweroff; writing the reset value to the reset
// register is its reboot. Both end the VM. Any other value is ignored: a guest writing
// garbage neither ends nor crashes the VM, and no other sleep state is offered.
// Nothing is latched, so a snapshot has nothing of it to save.
#pragma once

#include <cstdint>
#include <functional>

#include "base/bus.h"

namespace ember {

class AcpiPowerControl : public BusDevice {
 public:
  // Offsets from the first port: 0 sleep control, 1 sleep status, 2 reset.
  static constexpr uint64_t kSleepControl = 0;
  static constexpr uint64_t kSleepStatus = 1;
  static constexpr uint64_t kReset = 2;
  static constexpr uint64_t kPortCount = 3;

  AcpiPowerControl(std::function<void()> on_poweroff, std::function<void()> on_reset)
      : on_poweroff_(std::move(on_poweroff)), on_reset_(std::move(on_reset)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::function<void()> on_poweroff_;
  std::function<void()> on_reset_;
};

}  // namespace ember
