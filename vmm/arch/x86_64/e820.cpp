#include "vmm/arch/x86_64/e820.h"

#include "base/memory/layout.h"
#include "base/util/error.h"

namespace ember::x86 {

std::vector<E820Entry> e820_map(const std::vector<MemoryRegion>& regions) {
  if (regions.empty() || regions.front().gpa != 0 || regions.front().size <= layout::kHighMemStart) {
    fail("guest memory must start at 0 and extend past 1 MiB");
  }
  std::vector<E820Entry> map;
  map.push_back({0, layout::kEbdaStart, kE820Ram});
  map.push_back({layout::kEbdaStart, layout::kMptableSize, kE820Reserved});
  const MemoryRegion& low = regions.front();
  map.push_back({layout::kHighMemStart, low.size - layout::kHighMemStart, kE820Ram});
  for (size_t i = 1; i < regions.size(); ++i) map.push_back({regions[i].gpa, regions[i].size, kE820Ram});
  return map;
}

}  // namespace ember::x86
