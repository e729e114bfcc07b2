// What the kernel reads at entry besides its own image: the command line, the
// initrd, and either the zero page (64-bit entry) or the PVH start info.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/memory/guest_memory.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"

namespace ember {

struct InitrdLocation {
  uint64_t addr;
  uint64_t size;
};

// Highest page-aligned address below both the kernel's limit and the end of low RAM,
// above the kernel. Throws Error if the initrd does not fit.
uint64_t place_initrd(const LoadedKernel& kernel, const GuestMemory& memory, uint64_t size);
InitrdLocation load_initrd(const ImageSource& image, const LoadedKernel& kernel, GuestMemory& memory);

void write_cmdline(GuestMemory& memory, const LoadedKernel& kernel, const std::string& cmdline);

// Writes the zero page or PVH start info; returns its guest address for RSI/EBX.
// `rsdp_address`: where the ACPI RSDP is, or 0 for a VM without ACPI.
uint64_t write_boot_info(GuestMemory& memory, const LoadedKernel& kernel, const std::string& cmdline,
                         const std::optional<InitrdLocation>& initrd, uint64_t rsdp_address = 0);

// PVH start info, version 1 (Xen public/arch-x86/hvm/start_info.h).
struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
constexpr uint32_t kHvmStartMagic = 0x336ec578;

}  // namespace ember
