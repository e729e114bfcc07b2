// Where one MMIO device sits in guest-physical space and which IRQ it raises: the one
// description both the kernel command line and the ACPI DSDT are generated from.
#pragma once

#include <cstdint>

namespace ember {

struct MmioSlot {
  uint64_t base;
  uint64_t size;
  uint32_t irq;
};

}  // namespace ember
