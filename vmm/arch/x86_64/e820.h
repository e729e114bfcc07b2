// The guest's physical memory map, shared by the zero page and the PVH start info.
#pragma once

#include <cstdint>
#include <vector>

#include "base/memory/guest_memory.h"

namespace ember::x86 {

constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

// RAM below the EBDA, the MP table area as reserved, RAM from 1 MiB to the MMIO
// gap, and RAM above 4 GiB when the guest has more than 3 GiB.
std::vector<E820Entry> e820_map(const std::vector<MemoryRegion>& regions);

}  // namespace ember::x86
