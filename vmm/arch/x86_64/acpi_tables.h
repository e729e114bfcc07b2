// ACPI tables for a hardware-reduced x86 machine (ACPI 6.5): RSDP, XSDT, FADT, MADT and a
// DSDT that names each virtio-mmio slot, COM1 and the i8042, so kernels that find devices
// through ACPI (distro kernels with virtio_mmio as a module) see them, and a guest's S5
// (poweroff) reaches ember through the FADT's sleep control register.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/memory/guest_memory.h"
#include "vmm/devices/mmio_slot.h"

namespace ember::x86 {

struct AcpiMachine {
  uint32_t vcpu_count = 1;
  std::vector<MmioSlot> virtio_slots;  // base, size, IRQ of each virtio-mmio device
};

// The value of SLP_TYPx the DSDT's \_S5 object gives for S5 (soft off).
constexpr uint8_t kAcpiS5SleepType = 5;
// What the guest writes to the FADT's reset register to reset the machine.
constexpr uint8_t kAcpiResetValue = 0x1;

// Each table as it would sit at `address` (headers and checksums complete).
std::vector<uint8_t> build_dsdt(const AcpiMachine& machine);
std::vector<uint8_t> build_fadt(uint64_t dsdt_address);
std::vector<uint8_t> build_madt(const AcpiMachine& machine);
std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& table_addresses);
std::vector<uint8_t> build_rsdp(uint64_t xsdt_address);

struct AcpiImage {
  std::vector<uint8_t> bytes;  // every table, laid out from `base`
  uint64_t rsdp_address;
};
// All tables laid out from `base`, RSDP first. Throws Error when they do not fit in `size`.
AcpiImage build_acpi_tables(const AcpiMachine& machine, uint64_t base, uint64_t size);

// What [start, start + size) would overlap that ACPI tables must not: guest RAM the kernel
// may use (the e820 RAM ranges of `regions`), the MMIO gap, or another fixed region of
// the layout. nullopt when the range is free for them.
std::optional<std::string> acpi_region_conflict(uint64_t start, uint64_t size,
                                                const std::vector<MemoryRegion>& regions);

// Writes the tables at layout::kAcpiStart; returns the RSDP's guest-physical address.
// Throws Error when the region is not free or the tables do not fit.
uint64_t write_acpi_tables(GuestMemory& memory, const AcpiMachine& machine);

}  // namespace ember::x86
