// Every fixed guest-physical address ember uses on x86-64, in one place.
// tests/unit/layout_test.cpp checks that the regions do not overlap.
#pragma once

#include <array>
#include <cstdint>

namespace ember::layout {

constexpr uint64_t kPageSize = 0x1000;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// Boot structures in the first MiB (real-mode area, never used by the kernel image).
constexpr uint64_t kGdtStart = 0x500;
constexpr uint64_t kGdtSize = 0x40;  // 8 entries
constexpr uint64_t kPvhInfoStart = 0x6000;       // struct hvm_start_info
constexpr uint64_t kPvhInfoSize = 0x40;
constexpr uint64_t kPvhModlistStart = 0x6040;    // one hvm_modlist_entry (initrd)
constexpr uint64_t kPvhModlistSize = 0x20;
constexpr uint64_t kPvhMemmapStart = 0x6100;     // hvm_memmap_table_entry[]
constexpr uint64_t kPvhMemmapSize = 0xf00;
constexpr uint64_t kZeroPageStart = 0x7000;      // struct boot_params
constexpr uint64_t kZeroPageSize = 0x1000;
constexpr uint64_t kBootStackStart = 0x8000;     // stack grows down from kBootStackPointer
constexpr uint64_t kBootStackPointer = 0x8ff0;
constexpr uint64_t kPml4Start = 0x9000;
constexpr uint64_t kPdptStart = 0xa000;
constexpr uint64_t kPdStart = 0xb000;            // 4 page directories: identity map of 4 GiB
constexpr uint64_t kPdCount = 4;
constexpr uint64_t kCmdlineStart = 0x20000;
constexpr uint64_t kCmdlineMaxSize = 0x10000;
// Linux scans 639 KiB..640 KiB for the MP floating pointer (arch/x86/kernel/mpparse.c).
constexpr uint64_t kEbdaStart = 0x9fc00;
constexpr uint64_t kMptableStart = kEbdaStart;
constexpr uint64_t kMptableSize = 0xa0000 - kEbdaStart;

// ACPI tables in the BIOS area (0xE0000-0xFFFFF), which is not RAM in the e820 map: the
// RSDP first, 16-byte aligned, where a kernel that scans for it also finds it.
constexpr uint64_t kAcpiStart = 0xe0000;
constexpr uint64_t kAcpiSize = 0x20000;

// RAM the kernel may use: [0, kEbdaStart) and [kHighMemStart, end of RAM).
constexpr uint64_t kHighMemStart = 0x100000;

// The 32-bit hole: RAM stops at kMmioGapStart and resumes at 4 GiB.
constexpr uint64_t kMmioGapStart = 0xc0000000;
constexpr uint64_t kMmioGapEnd = 0x100000000;
// Device MMIO window at the start of the gap. The first page is the boot-complete
// marker (the guest writes 123 to its first byte, as with Firecracker's boot timer).
constexpr uint64_t kBootMarkerStart = kMmioGapStart;
constexpr uint64_t kBootMarkerSize = kPageSize;
constexpr uint64_t kVirtioMmioStart = kMmioGapStart + kPageSize;
constexpr uint64_t kVirtioMmioSlotSize = kPageSize;
constexpr uint64_t kVirtioMmioSlots = 64;
// KVM needs three pages for the TSS and one for the identity map on Intel.
constexpr uint64_t kIdentityMapStart = 0xfffbc000;
constexpr uint64_t kTssStart = 0xfffbd000;
constexpr uint64_t kIoapicStart = 0xfec00000;
constexpr uint64_t kLapicStart = 0xfee00000;

// Legacy I/O ports and IRQs.
constexpr uint16_t kCom1Port = 0x3f8;
constexpr uint16_t kCom1Irq = 4;
constexpr uint16_t kI8042DataPort = 0x60;
constexpr uint16_t kI8042CommandPort = 0x64;
constexpr uint32_t kI8042Irq = 1;
// ACPI sleep control, sleep status and reset registers (the FADT points at them).
constexpr uint16_t kAcpiSleepControlPort = 0x600;
constexpr uint16_t kAcpiSleepStatusPort = 0x601;
constexpr uint16_t kAcpiResetPort = 0x602;
constexpr uint32_t kFirstVirtioIrq = 5;
constexpr uint32_t kLastIrq = 23;  // IOAPIC pins

struct NamedRange {
  const char* name;
  uint64_t start;
  uint64_t size;
};

// The fixed regions in guest-physical space, for overlap checks and documentation.
constexpr std::array<NamedRange, 14> kFixedRegions{{
    {"gdt", kGdtStart, kGdtSize},
    {"pvh start_info", kPvhInfoStart, kPvhInfoSize},
    {"pvh modlist", kPvhModlistStart, kPvhModlistSize},
    {"pvh memmap", kPvhMemmapStart, kPvhMemmapSize},
    {"zero page", kZeroPageStart, kZeroPageSize},
    {"boot stack", kBootStackStart, kPageSize},
    {"pml4", kPml4Start, kPageSize},
    {"pdpt", kPdptStart, kPageSize},
    {"page directories", kPdStart, kPdCount * kPageSize},
    {"command line", kCmdlineStart, kCmdlineMaxSize},
    {"mp table", kMptableStart, kMptableSize},
    {"acpi tables", kAcpiStart, kAcpiSize},
    {"boot marker", kBootMarkerStart, kBootMarkerSize},
    {"virtio-mmio window", kVirtioMmioStart, kVirtioMmioSlots * kVirtioMmioSlotSize},
}};

}  // namespace ember::layout
