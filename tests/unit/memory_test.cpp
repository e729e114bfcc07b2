// Fixed layout, guest memory bounds and the e820 map.
#include <gtest/gtest.h>

#include "base/memory/guest_memory.h"
#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/arch/x86_64/e820.h"

namespace ember {
namespace {

TEST(Layout, FixedRegionsDoNotOverlap) {
  const auto& r = layout::kFixedRegions;
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_GT(r[i].size, 0u) << r[i].name;
    for (size_t j = i + 1; j < r.size(); ++j) {
      bool overlap = r[i].start < r[j].start + r[j].size && r[j].start < r[i].start + r[i].size;
      EXPECT_FALSE(overlap) << r[i].name << " overlaps " << r[j].name;
    }
  }
}

TEST(Layout, BootStructuresBelowEbdaAndDevicesInGap) {
  for (const auto& r : layout::kFixedRegions) {
    bool low = r.start + r.size <= layout::kEbdaStart;
    bool mptable = r.start == layout::kMptableStart;
    bool bios_area = r.start >= 0xa0000 && r.start + r.size <= layout::kHighMemStart;  // not RAM in e820
    bool gap = r.start >= layout::kMmioGapStart && r.start + r.size <= layout::kMmioGapEnd;
    EXPECT_TRUE(low || mptable || bios_area || gap) << r.name;
  }
  EXPECT_EQ(layout::kMptableStart + layout::kMptableSize, 0xa0000u);
  EXPECT_LT(layout::kVirtioMmioStart + layout::kVirtioMmioSlots * layout::kVirtioMmioSlotSize, layout::kIoapicStart);
  EXPECT_LT(layout::kIoapicStart, layout::kIdentityMapStart);
}

TEST(GuestMemory, SmallMemoryIsOneRegion) {
  auto regions = GuestMemory::plan_regions(512 * layout::kMiB);
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].gpa, 0u);
  EXPECT_EQ(regions[0].size, 512 * layout::kMiB);
}

TEST(GuestMemory, LargeMemorySplitsAroundMmioGap) {
  auto regions = GuestMemory::plan_regions(4 * layout::kGiB);
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].size, layout::kMmioGapStart);
  EXPECT_EQ(regions[1].gpa, layout::kMmioGapEnd);
  EXPECT_EQ(regions[1].size, 4 * layout::kGiB - layout::kMmioGapStart);
  EXPECT_EQ(regions[1].host_offset, layout::kMmioGapStart);
}

TEST(GuestMemory, BoundsChecked) {
  GuestMemory mem = GuestMemory::create({16 * layout::kMiB, HugePages::None, Prefault::Sync});
  EXPECT_TRUE(mem.try_span(0, 16 * layout::kMiB).has_value());
  EXPECT_TRUE(mem.try_span(16 * layout::kMiB - 1, 1).has_value());
  EXPECT_FALSE(mem.try_span(16 * layout::kMiB - 1, 2).has_value());
  EXPECT_FALSE(mem.try_span(16 * layout::kMiB, 1).has_value());
  EXPECT_FALSE(mem.try_span(UINT64_MAX, 2).has_value());
  EXPECT_FALSE(mem.try_span(8, UINT64_MAX).has_value());
  EXPECT_THROW(mem.span(16 * layout::kMiB, 4, "thing"), Error);
  mem.write_obj<uint32_t>(0x1000, 0xdeadbeef, "t");
  EXPECT_EQ(mem.read_obj<uint32_t>(0x1000, "t"), 0xdeadbeefu);
}

TEST(GuestMemory, RangesDoNotCrossTheGap) {
  GuestMemory mem = GuestMemory::create({3 * layout::kGiB + 4 * layout::kMiB, HugePages::None, Prefault::Off});
  ASSERT_EQ(mem.regions().size(), 2u);
  EXPECT_FALSE(mem.try_span(layout::kMmioGapStart - 4, 8).has_value());
  EXPECT_FALSE(mem.try_span(layout::kMmioGapStart, 4).has_value());
  EXPECT_TRUE(mem.try_span(layout::kMmioGapEnd, 4 * layout::kMiB).has_value());
  EXPECT_FALSE(mem.try_span(layout::kMmioGapEnd, 4 * layout::kMiB + 1).has_value());
}

TEST(GuestMemory, HostMappingIsTwoMiBAligned) {
  // Else KVM cannot back guest 2 MiB pages with host huge pages (see map_aligned_anonymous).
  for (uint64_t mib : {1, 3, 64, 129}) {
    GuestMemory mem = GuestMemory::create({mib * layout::kMiB, HugePages::None, Prefault::Off});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(mem.host_base()) % (2 * layout::kMiB), 0u) << mib << " MiB";
    auto last = mem.span((mib * layout::kMiB) - 1, 1, "last byte");
    last[0] = 0x5a;  // the whole range is mapped read-write
    EXPECT_EQ(last[0], 0x5a);
  }
}

TEST(GuestMemory, RejectsBadSizes) {
  EXPECT_THROW(GuestMemory::create({0, HugePages::None, Prefault::Off}), Error);
  EXPECT_THROW(GuestMemory::create({layout::kMiB + 1, HugePages::None, Prefault::Off}), Error);
}

TEST(E820, SmallGuest) {
  auto map = x86::e820_map(GuestMemory::plan_regions(128 * layout::kMiB));
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0].addr, 0u);
  EXPECT_EQ(map[0].size, layout::kEbdaStart);
  EXPECT_EQ(map[0].type, x86::kE820Ram);
  EXPECT_EQ(map[1].type, x86::kE820Reserved);
  EXPECT_EQ(map[2].addr, layout::kHighMemStart);
  EXPECT_EQ(map[2].addr + map[2].size, 128 * layout::kMiB);
}

TEST(E820, LargeGuestHasRamAbove4G) {
  auto map = x86::e820_map(GuestMemory::plan_regions(6 * layout::kGiB));
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[2].addr + map[2].size, layout::kMmioGapStart);
  EXPECT_EQ(map[3].addr, layout::kMmioGapEnd);
  EXPECT_EQ(map[3].size, 6 * layout::kGiB - layout::kMmioGapStart);
  uint64_t ram = 0;
  for (auto& e : map) {
    if (e.type == x86::kE820Ram) ram += e.size;
  }
  EXPECT_EQ(ram, 6 * layout::kGiB - (layout::kHighMemStart - layout::kEbdaStart));
}

}  // namespace
}  // namespace ember
