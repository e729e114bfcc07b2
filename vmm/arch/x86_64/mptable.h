// Intel MultiProcessor Specification 1.4 tables, so a guest without ACPI finds
// every vCPU, the IOAPIC and the ISA interrupt routing.
#pragma once

#include <cstdint>
#include <vector>

#include "base/memory/guest_memory.h"

namespace ember::x86 {

constexpr uint32_t kMaxVcpus = 32;
// The IOAPIC's id, after the local APIC ids 0..vcpu_count-1 (MP table and MADT agree).
constexpr uint8_t ioapic_id(uint32_t vcpu_count) { return static_cast<uint8_t>(vcpu_count + 1); }

// Builds the floating pointer and configuration table as they would sit at `base`.
std::vector<uint8_t> build_mptable(uint32_t vcpu_count, uint64_t base);
// Writes them at layout::kMptableStart. Throws Error if they do not fit.
void write_mptable(GuestMemory& memory, uint32_t vcpu_count);

}  // namespace ember::x86
