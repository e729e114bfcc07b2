// Builders for small synthetic kernel images used by the loader tests.
#pragma once

#include <asm/bootparam.h>
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace ember::test {

struct ElfSpec {
  uint64_t paddr = 0x1000000;
  uint64_t filesz = 0x2000;
  uint64_t memsz = 0x3000;
  uint64_t entry = 0x1000000;
  std::optional<uint32_t> pvh_entry;
};

inline std::vector<uint8_t> make_elf(const ElfSpec& spec) {
  std::vector<uint8_t> out(0x1000 + spec.filesz, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = spec.entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = spec.pvh_entry ? 2 : 1;
  std::memcpy(out.data(), &eh, sizeof(eh));

  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_offset = 0x1000;
  load.p_paddr = load.p_vaddr = spec.paddr;
  load.p_filesz = spec.filesz;
  load.p_memsz = spec.memsz;
  std::memcpy(out.data() + eh.e_phoff, &load, sizeof(load));
  for (uint64_t i = 0; i < spec.filesz; ++i) out[0x1000 + i] = static_cast<uint8_t>(i * 7 + 1);

  if (spec.pvh_entry) {
    // One note "Xen" type 18 with a 4-byte entry, at 0x800.
    Elf64_Nhdr nh{4, 4, 18};
    std::memcpy(out.data() + 0x800, &nh, sizeof(nh));
    std::memcpy(out.data() + 0x800 + sizeof(nh), "Xen", 4);
    std::memcpy(out.data() + 0x800 + sizeof(nh) + 4, &*spec.pvh_entry, 4);
    Elf64_Phdr note{};
    note.p_type = PT_NOTE;
    note.p_offset = 0x800;
    note.p_filesz = sizeof(nh) + 8;
    std::memcpy(out.data() + eh.e_phoff + sizeof(Elf64_Phdr), &note, sizeof(note));
  }
  return out;
}

struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint64_t kernel_bytes = 0x4000;
  uint32_t init_size = 0x100000;
  uint64_t pref_address = 0x1000000;
  uint8_t loadflags = 0x01;
  uint16_t xloadflags = 0x01;
  uint32_t initrd_addr_max = 0x7fffffff;
  uint32_t cmdline_size = 2047;
};

inline std::vector<uint8_t> make_bzimage(const BzImageSpec& spec) {
  uint64_t kernel_offset = (uint64_t{spec.setup_sects} + 1) * 512;
  std::vector<uint8_t> out(kernel_offset + spec.kernel_bytes, 0);
  setup_header hdr{};
  hdr.setup_sects = spec.setup_sects;
  hdr.boot_flag = 0xaa55;
  hdr.header = 0x53726448;
  hdr.version = spec.version;
  hdr.loadflags = spec.loadflags;
  hdr.xloadflags = spec.xloadflags;
  hdr.init_size = spec.init_size;
  hdr.pref_address = spec.pref_address;
  hdr.initrd_addr_max = spec.initrd_addr_max;
  hdr.cmdline_size = spec.cmdline_size;
  hdr.syssize = static_cast<uint32_t>(spec.kernel_bytes / 16);
  std::memcpy(out.data() + 0x1f1, &hdr, sizeof(hdr));
  for (uint64_t i = 0; i < spec.kernel_bytes; ++i) out[kernel_offset + i] = static_cast<uint8_t>(i * 3 + 5);
  return out;
}

}  // namespace ember::test
