// Direct kernel boot: load an ELF vmlinux or a bzImage into guest memory and say
// how to enter it.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>

#include "base/memory/guest_memory.h"
#include "vmm/arch/x86_64/regs.h"
#include "vmm/loader/image_source.h"

namespace ember {

enum class KernelFormat { Elf, BzImage };

struct LoadedKernel {
  KernelFormat format;
  x86::EntryMode mode;
  uint64_t entry;
  uint64_t end;  // first byte above everything the kernel occupies (incl. decompression space)
  std::optional<setup_header> setup;  // bzImage only: copied into the zero page
  uint64_t cmdline_limit;             // longest command line accepted, NUL included
  uint64_t initrd_addr_max;           // highest address the initrd may occupy
};

// Throws Error unless the image starts like an ELF file or a bzImage.
KernelFormat detect_kernel_format(const ImageSource& image);
// Detects the format from the image's magic numbers and loads it.
LoadedKernel load_kernel(const ImageSource& image, GuestMemory& memory);
LoadedKernel load_elf(const ImageSource& image, GuestMemory& memory);
LoadedKernel load_bzimage(const ImageSource& image, GuestMemory& memory);

}  // namespace ember
