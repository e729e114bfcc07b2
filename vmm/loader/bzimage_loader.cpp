// bzImage loading per the Linux x86 boot protocol (Documentation/x86/boot.rst):
// the protected-mode kernel goes to its preferred address and is entered at its
// 64-bit entry point (start + 0x200).
#include <cstring>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/loader/kernel_loader.h"

namespace ember {

namespace {

constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint16_t kMinVersion = 0x020c;     // 2.12: xloadflags and the 64-bit entry
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;
constexpr uint64_t kEntry64Offset = 0x200;

}  // namespace

LoadedKernel load_bzimage(const ImageSource& image, GuestMemory& memory) {
  if (image.size() < kSetupHeaderOffset + sizeof(setup_header)) {
    fail(image.name(), " is too small to be a bzImage");
  }
  auto hdr = image.read_obj<setup_header>(kSetupHeaderOffset);
  if (hdr.header != kHdrSMagic) fail(image.name(), " has no 'HdrS' boot protocol signature");
  if (hdr.boot_flag != kBootFlag) fail(image.name(), " has a bad boot flag ", hex(hdr.boot_flag));
  if (hdr.version < kMinVersion) {
    fail(image.name(), " uses boot protocol ", hdr.version >> 8, ".", hdr.version & 0xff,
         "; ember needs 2.12 or newer (Linux 3.8+)");
  }
  if (!(hdr.loadflags & kLoadedHigh)) fail(image.name(), " is a zImage (not loaded high); use a bzImage");
  if (!(hdr.xloadflags & kXlfKernel64)) fail(image.name(), " has no 64-bit entry point (XLF_KERNEL_64)");

  uint64_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;
  uint64_t kernel_offset = (setup_sects + 1) * 512;
  if (kernel_offset >= image.size()) fail(image.name(), " is truncated: no kernel after ", setup_sects, " setup sectors");
  uint64_t kernel_size = image.size() - kernel_offset;
  if (hdr.syssize != 0 && uint64_t{hdr.syssize} * 16 > kernel_size) {
    fail(image.name(), " is truncated: header says ", uint64_t{hdr.syssize} * 16, " bytes of kernel, file has ",
         kernel_size);
  }

  uint64_t load_addr = hdr.pref_address;
  if (load_addr < layout::kHighMemStart || load_addr % layout::kPageSize != 0) load_addr = layout::kHighMemStart;
  uint64_t footprint = std::max<uint64_t>(kernel_size, hdr.init_size);
  if (footprint > memory.low_end() || load_addr > memory.low_end() - footprint) {
    fail(image.name(), " needs ", (load_addr + footprint + layout::kMiB - 1) >> 20,
         " MiB of guest memory to decompress; the VM has ", memory.size() >> 20, " MiB");
  }
  image.read(kernel_offset, memory.span(load_addr, kernel_size, "kernel"));

  LoadedKernel k{};
  k.format = KernelFormat::BzImage;
  k.mode = x86::EntryMode::Long64;
  k.entry = load_addr + kEntry64Offset;
  k.end = load_addr + footprint;
  k.setup = hdr;
  k.cmdline_limit = (hdr.cmdline_size ? uint64_t{hdr.cmdline_size} : 255) + 1;
  k.initrd_addr_max = hdr.initrd_addr_max ? hdr.initrd_addr_max : 0x37ffffff;
  return k;
}

KernelFormat detect_kernel_format(const ImageSource& image) {
  uint8_t magic[4] = {};
  if (image.size() >= 4) image.read(0, magic);
  if (std::memcmp(magic, "\x7f" "ELF", 4) == 0) return KernelFormat::Elf;
  if (image.size() >= 0x206 && image.read_obj<uint32_t>(0x202) == kHdrSMagic) return KernelFormat::BzImage;
  if (image.size() == 0) fail(image.name(), " is empty");
  fail(image.name(), " is neither an ELF vmlinux nor a bzImage");
}

LoadedKernel load_kernel(const ImageSource& image, GuestMemory& memory) {
  return detect_kernel_format(image) == KernelFormat::Elf ? load_elf(image, memory) : load_bzimage(image, memory);
}

}  // namespace ember
