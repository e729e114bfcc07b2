#include "vmm/arch/x86_64/regs.h"

#include <cstring>

#include "base/memory/layout.h"

namespace ember::x86 {

namespace {

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteHuge = 1ull << 7;

constexpr uint32_t kApicLvt0 = 0x350;
constexpr uint32_t kApicLvt1 = 0x360;
constexpr uint32_t kApicModeNmi = 0x4;
constexpr uint32_t kApicModeExtInt = 0x7;

uint32_t with_delivery_mode(uint32_t reg, uint32_t mode) { return (reg & ~0x700u) | (mode << 8); }

}  // namespace

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t(base) & 0xff000000ull) << 32) | ((uint64_t(flags) & 0xf0ffull) << 40) |
         ((uint64_t(limit) & 0xf0000ull) << 32) | ((uint64_t(base) & 0x00ffffffull) << 16) |
         (uint64_t(limit) & 0xffffull);
}

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  kvm_segment s{};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = (entry >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (entry >> 40) & 0xf;
  s.s = (entry >> 44) & 1;
  s.dpl = (entry >> 45) & 3;
  s.present = (entry >> 47) & 1;
  s.avl = (entry >> 52) & 1;
  s.l = (entry >> 53) & 1;
  s.db = (entry >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

std::vector<uint64_t> boot_gdt() {
  return {
      0,                                  // null
      0,                                  // 0x08 unused
      gdt_entry(0xa09b, 0, 0xfffff),      // 0x10 64-bit code
      gdt_entry(0xc093, 0, 0xfffff),      // 0x18 flat data
      gdt_entry(0xc09b, 0, 0xfffff),      // 0x20 32-bit flat code (PVH entry)
      gdt_entry(0x008b, 0, 0xfffff),      // 0x28 TSS (busy); KVM wants a usable TR
  };
}

void write_boot_tables(GuestMemory& memory) {
  auto gdt = boot_gdt();
  for (size_t i = 0; i < gdt.size(); ++i) memory.write_obj(layout::kGdtStart + i * 8, gdt[i], "boot GDT");

  memory.write_obj<uint64_t>(layout::kPml4Start, layout::kPdptStart | kPtePresent | kPteWritable, "PML4");
  for (uint64_t pd = 0; pd < layout::kPdCount; ++pd) {
    uint64_t pd_addr = layout::kPdStart + pd * layout::kPageSize;
    memory.write_obj<uint64_t>(layout::kPdptStart + pd * 8, pd_addr | kPtePresent | kPteWritable, "PDPT");
    for (uint64_t i = 0; i < 512; ++i) {
      uint64_t phys = ((pd << 9) + i) << 21;
      memory.write_obj<uint64_t>(pd_addr + i * 8, phys | kPtePresent | kPteWritable | kPteHuge, "page directory");
    }
  }
}

void setup_msrs(VcpuFd& vcpu) {
  auto msr = [](uint32_t index, uint64_t value) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = value;
    return e;
  };
  vcpu.set_msrs({
      msr(0x174, 0),                // IA32_SYSENTER_CS
      msr(0x175, 0),                // IA32_SYSENTER_ESP
      msr(0x176, 0),                // IA32_SYSENTER_EIP
      msr(0xc0000081, 0),           // STAR
      msr(0xc0000082, 0),           // LSTAR
      msr(0xc0000083, 0),           // CSTAR
      msr(0xc0000084, 0),           // SYSCALL_MASK
      msr(0xc0000102, 0),           // KERNEL_GS_BASE
      msr(0x10, 0),                 // IA32_TSC
      msr(0x1a0, 1),                // IA32_MISC_ENABLE: fast strings
      msr(0x2ff, (1u << 11) | 6),   // MTRRdefType: MTRRs on, default write-back
  });
}

void setup_fpu(VcpuFd& vcpu) {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word
  fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
  vcpu.set(fpu);
}

void setup_lapic(VcpuFd& vcpu) {
  kvm_lapic_state lapic = vcpu.get<kvm_lapic_state>();
  set_lapic_register(lapic, kApicLvt0, with_delivery_mode(lapic_register(lapic, kApicLvt0), kApicModeExtInt));
  set_lapic_register(lapic, kApicLvt1, with_delivery_mode(lapic_register(lapic, kApicLvt1), kApicModeNmi));
  vcpu.set(lapic);
}

void setup_boot_registers(VcpuFd& vcpu, EntryMode mode, uint64_t entry, uint64_t boot_info) {
  auto gdt = boot_gdt();
  kvm_sregs sregs = vcpu.get<kvm_sregs>();
  sregs.gdt.base = layout::kGdtStart;
  sregs.gdt.limit = static_cast<uint16_t>(gdt.size() * 8 - 1);
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  kvm_segment data = segment_from_gdt(gdt[kDataSelector / 8], kDataSelector);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = segment_from_gdt(gdt[kTssSelector / 8], kTssSelector);

  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved and must be set
  regs.rip = entry;
  if (mode == EntryMode::Long64) {
    sregs.cs = segment_from_gdt(gdt[kCode64Selector / 8], kCode64Selector);
    sregs.cr3 = layout::kPml4Start;
    sregs.cr4 = kCr4Pae;
    sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    sregs.efer = kEferLme | kEferLma;
    regs.rsp = regs.rbp = layout::kBootStackPointer;
    regs.rsi = boot_info;  // boot_params
  } else {
    sregs.cs = segment_from_gdt(gdt[kCode32Selector / 8], kCode32Selector);
    sregs.cr0 = kCr0Pe | kCr0Et;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    regs.rbx = boot_info;  // hvm_start_info
  }
  vcpu.set(sregs);
  vcpu.set(regs);
}

}  // namespace ember::x86
