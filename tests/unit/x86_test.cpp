// GDT, page tables, MP table and CPUID topology.
#include <gtest/gtest.h>

#include <cstring>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/arch/x86_64/cpuid.h"
#include "vmm/arch/x86_64/mptable.h"
#include "vmm/arch/x86_64/regs.h"

namespace ember {
namespace {

TEST(Gdt, SegmentsDecodeAsBootProtocolExpects) {
  auto gdt = x86::boot_gdt();
  kvm_segment code = x86::segment_from_gdt(gdt[x86::kCode64Selector / 8], x86::kCode64Selector);
  EXPECT_EQ(code.l, 1);
  EXPECT_EQ(code.db, 0);
  EXPECT_EQ(code.present, 1);
  EXPECT_EQ(code.type, 0xb);
  EXPECT_EQ(code.limit, 0xffffffffu);
  kvm_segment data = x86::segment_from_gdt(gdt[x86::kDataSelector / 8], x86::kDataSelector);
  EXPECT_EQ(data.type, 0x3);
  EXPECT_EQ(data.db, 1);
  EXPECT_EQ(data.base, 0u);
  kvm_segment code32 = x86::segment_from_gdt(gdt[x86::kCode32Selector / 8], x86::kCode32Selector);
  EXPECT_EQ(code32.l, 0);
  EXPECT_EQ(code32.db, 1);
  EXPECT_EQ(x86::kCode64Selector, 0x10);  // __BOOT_CS
  EXPECT_EQ(x86::kDataSelector, 0x18);    // __BOOT_DS
  EXPECT_LE(gdt.size() * 8, layout::kGdtSize);
}

TEST(Gdt, EntryRoundTrip) {
  uint64_t e = x86::gdt_entry(0xc093, 0x12345678, 0xabcde);
  kvm_segment s = x86::segment_from_gdt(e, 0x18);
  EXPECT_EQ(s.base, 0x12345678u);
  EXPECT_EQ(s.limit, (0xabcdeu << 12) | 0xfff);
  EXPECT_EQ(s.g, 1);
}

TEST(PageTables, IdentityMapFirst4GiB) {
  GuestMemory mem = GuestMemory::create({16 * layout::kMiB, HugePages::None, Prefault::Off});
  x86::write_boot_tables(mem);
  // Walk the tables for a few addresses as the MMU would.
  for (uint64_t addr : {0ull, 0x1000000ull, 0x3fffffffull, 0x40000000ull, 0xfee00000ull, 0xffffffffull}) {
    uint64_t pml4e = mem.read_obj<uint64_t>(layout::kPml4Start + ((addr >> 39) & 511) * 8, "t");
    ASSERT_TRUE(pml4e & 1);
    uint64_t pdpte = mem.read_obj<uint64_t>((pml4e & ~0xfffull) + ((addr >> 30) & 511) * 8, "t");
    ASSERT_TRUE(pdpte & 1) << std::hex << addr;
    uint64_t pde = mem.read_obj<uint64_t>((pdpte & ~0xfffull) + ((addr >> 21) & 511) * 8, "t");
    ASSERT_TRUE(pde & 1);
    ASSERT_TRUE(pde & 0x80);  // 2 MiB page
    EXPECT_EQ((pde & ~0x1fffffull & 0xffffffffffull) | (addr & 0x1fffff), addr);
  }
  EXPECT_EQ(mem.read_obj<uint64_t>(layout::kGdtStart + x86::kCode64Selector, "t"), x86::boot_gdt()[2]);
}

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

TEST(MpTable, ChecksumsAndProcessorEntries) {
  for (uint32_t cpus : {1u, 2u, 4u, 32u}) {
    auto t = x86::build_mptable(cpus, layout::kMptableStart);
    ASSERT_LE(t.size(), layout::kMptableSize) << cpus;
    EXPECT_EQ(std::memcmp(t.data(), "_MP_", 4), 0);
    EXPECT_EQ(sum(t.data(), 16), 0);
    uint32_t config;
    std::memcpy(&config, t.data() + 4, 4);
    EXPECT_EQ(config, layout::kMptableStart + 16);
    const uint8_t* hdr = t.data() + 16;
    EXPECT_EQ(std::memcmp(hdr, "PCMP", 4), 0);
    uint16_t len, count;
    std::memcpy(&len, hdr + 4, 2);
    std::memcpy(&count, hdr + 34, 2);
    EXPECT_EQ(len + 16u, t.size());
    EXPECT_EQ(sum(hdr, len), 0);
    EXPECT_EQ(count, cpus + 2 + 24 + 2);
    // Processor entries come first: type 0, APIC ids 0..n-1, only the first is the BSP.
    for (uint32_t c = 0; c < cpus; ++c) {
      const uint8_t* e = hdr + 44 + c * 20;
      EXPECT_EQ(e[0], 0);
      EXPECT_EQ(e[1], c);
      EXPECT_EQ(e[3], c == 0 ? 3 : 1);
    }
  }
}

TEST(MpTable, RejectsBadCounts) {
  EXPECT_THROW(x86::build_mptable(0, layout::kMptableStart), Error);
  EXPECT_THROW(x86::build_mptable(33, layout::kMptableStart), Error);
}

TEST(Cpuid, ApicIdAndTopologyPerVcpu) {
  CpuidEntries supported;
  kvm_cpuid_entry2 leaf1{};
  leaf1.function = 1;
  leaf1.ebx = 0xff00ffff;
  supported.entries.push_back(leaf1);
  for (uint32_t idx = 0; idx < 2; ++idx) {
    kvm_cpuid_entry2 e{};
    e.function = 0xb;
    e.index = idx;
    supported.entries.push_back(e);
  }
  kvm_cpuid_entry2 amd{};
  amd.function = 0x80000008;
  supported.entries.push_back(amd);

  CpuidEntries c = x86::vcpu_cpuid(supported, 3, 4);
  EXPECT_EQ(c.find(1)->ebx >> 24, 3u);
  EXPECT_EQ((c.find(1)->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(c.find(1)->ebx & 0xffff, 0xffffu);
  EXPECT_TRUE(c.find(1)->ecx & (1u << 31));  // hypervisor
  EXPECT_TRUE(c.find(1)->ecx & (1u << 24));  // TSC-deadline timer: no APIC timer calibration at boot
  EXPECT_TRUE(c.find(1)->edx & (1u << 28));  // HTT when several logical CPUs
  EXPECT_EQ(c.find(0xb, 0)->edx, 3u);
  EXPECT_EQ(c.find(0xb, 1)->ebx, 4u);
  EXPECT_EQ(c.find(0xb, 1)->eax, 2u);
  EXPECT_EQ(c.find(0x80000008)->ecx & 0xff, 3u);
  CpuidEntries single = x86::vcpu_cpuid(supported, 0, 1);
  EXPECT_FALSE(single.find(1)->edx & (1u << 28));
}

}  // namespace
}  // namespace ember
