// ELF64 vmlinux loading. Uses the PVH entry (Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY)
// when the kernel has one, otherwise the 64-bit entry point.
#include <elf.h>

#include <algorithm>
#include <cstring>

#include <vector>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "vmm/loader/kernel_loader.h"

namespace ember {

namespace {

constexpr uint32_t kXenElfNotePhys32Entry = 18;
constexpr uint64_t kMaxNoteSegment = 64 * 1024;
constexpr uint16_t kMaxProgramHeaders = 128;
// x86 COMMAND_LINE_SIZE.
constexpr uint64_t kElfCmdlineLimit = 2048;
constexpr uint64_t kDefaultInitrdAddrMax = 0x37ffffff;

Elf64_Ehdr read_elf_header(const ImageSource& image) {
  if (image.size() < sizeof(Elf64_Ehdr)) fail(image.name(), " is too small to be an ELF file");
  auto eh = image.read_obj<Elf64_Ehdr>(0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) fail(image.name(), " is not an ELF file");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) fail(image.name(), " is not a 64-bit ELF file");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) fail(image.name(), " is not a little-endian ELF file");
  if (eh.e_machine != EM_X86_64) fail(image.name(), " is an ELF file for machine ", eh.e_machine, ", not x86-64");
  if (eh.e_type != ET_EXEC) fail(image.name(), " is not an executable ELF file (e_type ", eh.e_type, ")");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) fail(image.name(), " has program headers of size ", eh.e_phentsize);
  if (eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders) {
    fail(image.name(), " has ", eh.e_phnum, " program headers (expected 1..", kMaxProgramHeaders, ")");
  }
  return eh;
}

// Returns the PVH entry address from a PT_NOTE segment, if the segment has one.
std::optional<uint64_t> find_pvh_entry(const ImageSource& image, const Elf64_Phdr& ph) {
  if (ph.p_filesz > kMaxNoteSegment) fail(image.name(), ": note segment of ", ph.p_filesz, " bytes is too large");
  std::vector<uint8_t> notes(ph.p_filesz);
  image.read(ph.p_offset, notes);
  uint64_t off = 0;
  auto align4 = [](uint64_t v) { return (v + 3) & ~uint64_t{3}; };
  while (notes.size() - off >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh;
    std::memcpy(&nh, notes.data() + off, sizeof(nh));
    off += sizeof(nh);
    uint64_t name_len = align4(nh.n_namesz);
    uint64_t desc_len = align4(nh.n_descsz);
    if (name_len > notes.size() - off || desc_len > notes.size() - off - name_len) {
      fail(image.name(), ": ELF note overruns its segment");
    }
    const uint8_t* name = notes.data() + off;
    const uint8_t* desc = name + name_len;
    bool is_xen = nh.n_namesz == 4 && std::memcmp(name, "Xen", 4) == 0;
    if (is_xen && nh.n_type == kXenElfNotePhys32Entry) {
      if (nh.n_descsz == 4) {
        uint32_t entry;
        std::memcpy(&entry, desc, 4);
        return entry;
      }
      if (nh.n_descsz == 8) {
        uint64_t entry;
        std::memcpy(&entry, desc, 8);
        return entry;
      }
      fail(image.name(), ": PVH entry note has a ", nh.n_descsz, "-byte address");
    }
    off += name_len + desc_len;
  }
  return std::nullopt;
}

}  // namespace

LoadedKernel load_elf(const ImageSource& image, GuestMemory& memory) {
  Elf64_Ehdr eh = read_elf_header(image);
  uint64_t table_size = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > image.size() || table_size > image.size() - eh.e_phoff) {
    fail(image.name(), " is truncated: program headers end past the file");
  }
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  image.read(eh.e_phoff, std::span<uint8_t>(reinterpret_cast<uint8_t*>(phdrs.data()), table_size));

  uint64_t start = UINT64_MAX, end = 0;
  std::optional<uint64_t> pvh_entry;
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type == PT_NOTE && !pvh_entry) pvh_entry = find_pvh_entry(image, ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz) fail(image.name(), ": segment at ", hex(ph.p_paddr), " has filesz > memsz");
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset) {
      fail(image.name(), " is truncated: segment at ", hex(ph.p_paddr), " extends past the end of the file");
    }
    if (ph.p_paddr < layout::kHighMemStart) {
      fail(image.name(), ": segment at ", hex(ph.p_paddr), " is below 1 MiB, where ember keeps boot structures");
    }
    if (ph.p_memsz > memory.low_end() || ph.p_paddr > memory.low_end() - ph.p_memsz) {
      fail(image.name(), ": segment ", hex(ph.p_paddr), "+", hex(ph.p_memsz), " does not fit in ",
           memory.size() >> 20, " MiB of guest memory below the MMIO gap");
    }
    auto dst = memory.span(ph.p_paddr, ph.p_memsz, "kernel segment");
    image.read(ph.p_offset, dst.first(ph.p_filesz));
    // Fresh guest RAM is zero already: checking reads the shared zero page, while
    // writing would populate the pages (a whole 2 MiB page for the last few KiB of bss).
    auto bss = dst.subspan(ph.p_filesz);
    if (std::any_of(bss.begin(), bss.end(), [](uint8_t b) { return b != 0; })) {
      std::memset(bss.data(), 0, bss.size());
    }
    start = std::min(start, ph.p_paddr);
    end = std::max(end, ph.p_paddr + ph.p_memsz);
  }
  if (end == 0) fail(image.name(), " has no loadable segments");

  LoadedKernel k{};
  k.format = KernelFormat::Elf;
  k.end = end;
  k.cmdline_limit = kElfCmdlineLimit;
  k.initrd_addr_max = kDefaultInitrdAddrMax;
  if (pvh_entry) {
    k.mode = x86::EntryMode::Pvh32;
    k.entry = *pvh_entry;
  } else {
    k.mode = x86::EntryMode::Long64;
    k.entry = eh.e_entry;
  }
  if (k.entry < start || k.entry >= end) {
    fail(image.name(), ": entry point ", hex(k.entry), " is outside the loaded segments ", hex(start), "..", hex(end));
  }
  return k;
}

}  // namespace ember
