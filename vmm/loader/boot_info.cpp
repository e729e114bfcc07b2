#include "vmm/loader/boot_info.h"

#include <cstring>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/arch/x86_64/e820.h"

namespace ember {

namespace {

constexpr uint8_t kLoaderTypeUndefined = 0xff;
constexpr uint8_t kCanUseHeap = 0x80;

uint64_t write_zero_page(GuestMemory& memory, const LoadedKernel& kernel, const std::string& cmdline,
                         const std::optional<InitrdLocation>& initrd, uint64_t rsdp_address) {
  boot_params params{};
  if (kernel.setup) {
    params.hdr = *kernel.setup;
  } else {
    // ELF vmlinux: no setup header in the image, so provide the fields the kernel reads.
    params.hdr.boot_flag = 0xaa55;
    params.hdr.header = 0x53726448;
    params.hdr.version = 0x020c;
    params.hdr.kernel_alignment = 0x1000000;
  }
  params.hdr.type_of_loader = kLoaderTypeUndefined;
  params.hdr.loadflags |= kCanUseHeap;
  params.hdr.heap_end_ptr = 0xfe00;
  params.hdr.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdlineStart);
  params.hdr.cmdline_size = static_cast<uint32_t>(cmdline.size());
  if (initrd) {
    params.hdr.ramdisk_image = static_cast<uint32_t>(initrd->addr);
    params.hdr.ramdisk_size = static_cast<uint32_t>(initrd->size);
  }
  params.acpi_rsdp_addr = rsdp_address;  // boot protocol 2.14; older kernels scan for the RSDP
  auto map = x86::e820_map(memory.regions());
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE) fail("e820 map has too many entries");
  for (size_t i = 0; i < map.size(); ++i) {
    params.e820_table[i] = {map[i].addr, map[i].size, map[i].type};
  }
  params.e820_entries = static_cast<uint8_t>(map.size());
  memory.write_obj(layout::kZeroPageStart, params, "zero page");
  return layout::kZeroPageStart;
}

uint64_t write_pvh_start_info(GuestMemory& memory, const std::optional<InitrdLocation>& initrd,
                              uint64_t rsdp_address) {
  auto map = x86::e820_map(memory.regions());
  if (map.size() * sizeof(HvmMemmapEntry) > layout::kPvhMemmapSize) fail("PVH memory map has too many entries");
  for (size_t i = 0; i < map.size(); ++i) {
    memory.write_obj(layout::kPvhMemmapStart + i * sizeof(HvmMemmapEntry),
                     HvmMemmapEntry{map[i].addr, map[i].size, map[i].type, 0}, "PVH memory map");
  }
  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;
  info.cmdline_paddr = layout::kCmdlineStart;
  info.memmap_paddr = layout::kPvhMemmapStart;
  info.memmap_entries = static_cast<uint32_t>(map.size());
  info.rsdp_paddr = rsdp_address;
  if (initrd) {
    memory.write_obj(layout::kPvhModlistStart, HvmModlistEntry{initrd->addr, initrd->size, 0, 0}, "PVH modlist");
    info.nr_modules = 1;
    info.modlist_paddr = layout::kPvhModlistStart;
  }
  memory.write_obj(layout::kPvhInfoStart, info, "PVH start info");
  return layout::kPvhInfoStart;
}

}  // namespace

uint64_t place_initrd(const LoadedKernel& kernel, const GuestMemory& memory, uint64_t size) {
  uint64_t limit = std::min(kernel.initrd_addr_max + 1, memory.low_end());
  uint64_t lowest = (kernel.end + layout::kPageSize - 1) & ~(layout::kPageSize - 1);
  if (size == 0) fail("initrd is empty");
  if (size > limit || ((limit - size) & ~(layout::kPageSize - 1)) < lowest) {
    fail("initrd of ", size, " bytes does not fit in guest memory: the space between the kernel (ends ",
         hex(kernel.end), ") and ", hex(limit), " is ", limit > lowest ? limit - lowest : 0,
         " bytes; give the VM more memory");
  }
  return (limit - size) & ~(layout::kPageSize - 1);
}

InitrdLocation load_initrd(const ImageSource& image, const LoadedKernel& kernel, GuestMemory& memory) {
  uint64_t addr = place_initrd(kernel, memory, image.size());
  image.read(0, memory.span(addr, image.size(), "initrd"));
  return {addr, image.size()};
}

void write_cmdline(GuestMemory& memory, const LoadedKernel& kernel, const std::string& cmdline) {
  uint64_t limit = std::min(kernel.cmdline_limit, layout::kCmdlineMaxSize);
  if (cmdline.size() + 1 > limit) {
    fail("kernel command line is ", cmdline.size(), " bytes; this kernel accepts at most ", limit - 1);
  }
  if (cmdline.find('\0') != std::string::npos) fail("kernel command line contains a NUL byte");
  auto dst = memory.span(layout::kCmdlineStart, cmdline.size() + 1, "command line");
  std::memcpy(dst.data(), cmdline.c_str(), cmdline.size() + 1);
}

uint64_t write_boot_info(GuestMemory& memory, const LoadedKernel& kernel, const std::string& cmdline,
                         const std::optional<InitrdLocation>& initrd, uint64_t rsdp_address) {
  if (kernel.mode == x86::EntryMode::Pvh32) return write_pvh_start_info(memory, initrd, rsdp_address);
  return write_zero_page(memory, kernel, cmdline, initrd, rsdp_address);
}

}  // namespace ember
