#include "vmm/devices/acpi_power.h"

#include <algorithm>

#include "vmm/arch/x86_64/acpi_tables.h"

namespace ember {

namespace {

constexpr uint8_t kSleepEnable = 1u << 5;  // SLP_EN
constexpr unsigned kSleepTypeShift = 2;    // SLP_TYPx, bits 2-4
constexpr uint8_t kSleepTypeMask = 0x7;

}  // namespace

void AcpiPowerControl::read(uint64_t, std::span<uint8_t> data) {
  // No wake events and nothing latched: every register reads as zero.
  std::fill(data.begin(), data.end(), uint8_t{0});
}

void AcpiPowerControl::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;  // the FADT declares byte registers
  uint8_t value = data[0];
  if (offset == kSleepControl && (value & kSleepEnable) &&
      ((value >> kSleepTypeShift) & kSleepTypeMask) == x86::kAcpiS5SleepType) {
    if (on_poweroff_) on_poweroff_();
  } else if (offset == kReset && value == x86::kAcpiResetValue) {
    if (on_reset_) on_reset_();
  }
}

}  // namespace ember
