// Boot-time CPU state: GDT and identity page tables in guest memory, and the
// registers, MSRs, FPU and LAPIC state of each vCPU.
#pragma once

#include <cstdint>
#include <vector>

#include "base/memory/guest_memory.h"
#include "vmm/kvm/kvm.h"

namespace ember::x86 {

// How the kernel is entered.
enum class EntryMode {
  Long64,  // Linux 64-bit boot protocol: long mode, paging on, RSI = zero page
  Pvh32,   // PVH: 32-bit protected mode, paging off, EBX = hvm_start_info
};

// GDT selectors (Linux boot protocol wants __BOOT_CS 0x10 and __BOOT_DS 0x18).
constexpr uint16_t kCode64Selector = 0x10;
constexpr uint16_t kDataSelector = 0x18;
constexpr uint16_t kCode32Selector = 0x20;
constexpr uint16_t kTssSelector = 0x28;

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector);
std::vector<uint64_t> boot_gdt();

// Writes the GDT and 4 GiB identity-mapped page tables (2 MiB pages).
void write_boot_tables(GuestMemory& memory);

void setup_msrs(VcpuFd& vcpu);
void setup_fpu(VcpuFd& vcpu);
// LINT0 as ExtINT and LINT1 as NMI, as a BIOS leaves them for the PIC and NMI.
void setup_lapic(VcpuFd& vcpu);
void setup_boot_registers(VcpuFd& vcpu, EntryMode mode, uint64_t entry, uint64_t boot_info);

}  // namespace ember::x86
