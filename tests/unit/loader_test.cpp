// ELF and bzImage loading, including truncated and hostile headers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "base/util/file_io.h"
#include "tests/unit/child_process.h"
#include "tests/unit/test_images.h"
#include "vmm/loader/boot_info.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"

namespace ember {
namespace {

using test::BzImageSpec;
using test::ElfSpec;

GuestMemory small_memory(uint64_t mib = 64) {
  return GuestMemory::create({mib * layout::kMiB, HugePages::None, Prefault::Off});
}

std::string load_error(const std::vector<uint8_t>& bytes, uint64_t mib = 64) {
  GuestMemory mem = small_memory(mib);
  try {
    load_kernel(BufferImage(bytes, "kernel 'k'"), mem);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ElfLoader, LoadsSegmentAndZeroesBss) {
  GuestMemory mem = small_memory();
  auto span = mem.span(0x1000000, 0x3000, "test");
  std::fill(span.begin(), span.end(), 0xee);
  auto bytes = test::make_elf({});
  LoadedKernel k = load_kernel(BufferImage(bytes, "k"), mem);
  EXPECT_EQ(k.format, KernelFormat::Elf);
  EXPECT_EQ(k.mode, x86::EntryMode::Long64);
  EXPECT_EQ(k.entry, 0x1000000u);
  EXPECT_EQ(k.end, 0x1003000u);
  EXPECT_EQ(span[0], 1);
  EXPECT_EQ(span[0x1fff], static_cast<uint8_t>(0x1fff * 7 + 1));
  EXPECT_EQ(span[0x2000], 0);  // bss zeroed
  EXPECT_EQ(span[0x2fff], 0);
}

TEST(ElfLoader, UsesPvhEntryNote) {
  GuestMemory mem = small_memory();
  ElfSpec spec;
  spec.pvh_entry = 0x1000400;
  LoadedKernel k = load_kernel(BufferImage(test::make_elf(spec), "k"), mem);
  EXPECT_EQ(k.mode, x86::EntryMode::Pvh32);
  EXPECT_EQ(k.entry, 0x1000400u);
}

TEST(ElfLoader, RejectsHostileHeaders) {
  auto good = test::make_elf({});
  {
    auto b = good;
    b[EI_CLASS] = ELFCLASS32;
    EXPECT_NE(load_error(b).find("not a 64-bit ELF"), std::string::npos);
  }
  {
    auto b = good;
    b[offsetof(Elf64_Ehdr, e_machine)] = EM_AARCH64;
    EXPECT_NE(load_error(b).find("not x86-64"), std::string::npos);
  }
  {
    auto b = good;
    uint16_t many = 0xffff;
    std::memcpy(b.data() + offsetof(Elf64_Ehdr, e_phnum), &many, 2);
    EXPECT_NE(load_error(b).find("program headers"), std::string::npos);
  }
  {
    auto b = good;
    uint64_t far = 0xfffffffffffff000ull;
    std::memcpy(b.data() + offsetof(Elf64_Ehdr, e_phoff), &far, 8);
    EXPECT_NE(load_error(b).find("truncated"), std::string::npos);
  }
  {
    // Truncated file: the segment's bytes are cut off.
    auto b = good;
    b.resize(0x1100);
    EXPECT_NE(load_error(b).find("truncated"), std::string::npos);
  }
  {
    // Header only.
    std::vector<uint8_t> b(good.begin(), good.begin() + 20);
    EXPECT_NE(load_error(b).find("too small"), std::string::npos);
  }
}

TEST(ElfLoader, RejectsSegmentsOutsideMemory) {
  ElfSpec spec;
  spec.paddr = 0x3fff0000;  // 1 GiB - 64 KiB, VM has 64 MiB
  spec.entry = spec.paddr;
  EXPECT_NE(load_error(test::make_elf(spec)).find("does not fit"), std::string::npos);
  spec.paddr = 0xffffffffffff0000ull;  // wraps around
  spec.entry = spec.paddr;
  EXPECT_NE(load_error(test::make_elf(spec)).find("does not fit"), std::string::npos);
  spec.paddr = 0x7000;  // over ember's boot structures
  spec.entry = spec.paddr;
  EXPECT_NE(load_error(test::make_elf(spec)).find("below 1 MiB"), std::string::npos);
}

TEST(ElfLoader, RejectsEntryOutsideSegments) {
  ElfSpec spec;
  spec.entry = 0x2000000;
  EXPECT_NE(load_error(test::make_elf(spec)).find("entry point"), std::string::npos);
}

TEST(ElfLoader, RejectsMalformedNote) {
  ElfSpec spec;
  spec.pvh_entry = 0x1000000;
  auto b = test::make_elf(spec);
  uint32_t huge = 0x7fffffff;
  std::memcpy(b.data() + 0x800, &huge, 4);  // n_namesz overruns the segment
  EXPECT_NE(load_error(b).find("overruns"), std::string::npos);
}

TEST(BzImageLoader, LoadsProtectedModeKernelAtPreferredAddress) {
  GuestMemory mem = small_memory();
  auto bytes = test::make_bzimage({});
  LoadedKernel k = load_kernel(BufferImage(bytes, "k"), mem);
  EXPECT_EQ(k.format, KernelFormat::BzImage);
  EXPECT_EQ(k.mode, x86::EntryMode::Long64);
  EXPECT_EQ(k.entry, 0x1000000u + 0x200);
  EXPECT_EQ(k.end, 0x1000000u + 0x100000);
  ASSERT_TRUE(k.setup.has_value());
  EXPECT_EQ(k.cmdline_limit, 2048u);
  auto span = mem.span(0x1000000, 4, "test");
  EXPECT_EQ(span[0], 5);
  EXPECT_EQ(span[1], 8);
}

TEST(BzImageLoader, ZeroSetupSectsMeansFour) {
  GuestMemory mem = small_memory();
  // Built with 4 setup sectors, then the field set to 0: the loader must still read from 5*512.
  auto bytes = test::make_bzimage({});
  bytes[0x1f1] = 0;
  load_kernel(BufferImage(bytes, "k"), mem);
  EXPECT_EQ(mem.span(0x1000000, 1, "t")[0], 5);
}

TEST(BzImageLoader, RejectsHostileHeaders) {
  auto with = [](auto mutate) {
    BzImageSpec spec;
    mutate(spec);
    return test::make_bzimage(spec);
  };
  EXPECT_NE(load_error(with([](BzImageSpec& s) { s.version = 0x0206; })).find("boot protocol 2.6"), std::string::npos);
  EXPECT_NE(load_error(with([](BzImageSpec& s) { s.loadflags = 0; })).find("zImage"), std::string::npos);
  EXPECT_NE(load_error(with([](BzImageSpec& s) { s.xloadflags = 0; })).find("64-bit entry"), std::string::npos);
  EXPECT_NE(load_error(with([](BzImageSpec& s) { s.init_size = 0x40000000; })).find("needs"), std::string::npos);
  EXPECT_NE(load_error(with([](BzImageSpec& s) { s.setup_sects = 255; s.kernel_bytes = 0; })).find("truncated"),
            std::string::npos);
  auto b = test::make_bzimage({});
  b[0x1fe] = 0;  // boot flag
  EXPECT_NE(load_error(b).find("boot flag"), std::string::npos);
  auto t = test::make_bzimage({});
  t.resize(t.size() - 0x1000);  // shorter than syssize says
  EXPECT_NE(load_error(t).find("truncated"), std::string::npos);
}

TEST(KernelFormat, RejectsGarbageAndEmpty) {
  EXPECT_NE(load_error(std::vector<uint8_t>(4096, 0x41)).find("neither an ELF vmlinux nor a bzImage"),
            std::string::npos);
  EXPECT_NE(load_error({}).find("empty"), std::string::npos);
}

TEST(Initrd, PlacedAtTopOfMemoryBelowLimit) {
  GuestMemory mem = small_memory(64);
  LoadedKernel k = load_kernel(BufferImage(test::make_bzimage({}), "k"), mem);
  uint64_t addr = place_initrd(k, mem, 0x12345);
  EXPECT_EQ(addr % layout::kPageSize, 0u);
  EXPECT_LE(addr + 0x12345, 64 * layout::kMiB);
  EXPECT_GT(addr + 0x12345, 64 * layout::kMiB - layout::kPageSize);
  k.initrd_addr_max = 0x2ffffff;  // 48 MiB
  addr = place_initrd(k, mem, 0x1000);
  EXPECT_EQ(addr, 0x3000000u - 0x1000);
}

TEST(Initrd, TooLargeForMemoryIsAnError) {
  GuestMemory mem = small_memory(64);
  LoadedKernel k = load_kernel(BufferImage(test::make_bzimage({}), "k"), mem);
  try {
    place_initrd(k, mem, 60 * layout::kMiB);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos);
  }
  EXPECT_THROW(place_initrd(k, mem, 0), Error);
}

// A file on disk (in $TMPDIR, like the blk tests' files), removed when the test ends.
struct TempFile {
  std::string path;
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    const char* tmp = std::getenv("TMPDIR");
    std::string name = std::string(tmp ? tmp : "/tmp") + "/ember-image-XXXXXX";
    int fd = ::mkstemp(name.data());
    EXPECT_GE(fd, 0);
    path = name;
    EXPECT_TRUE(write_all(fd, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
    ::close(fd);
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

// A kernel or initrd path naming a FIFO: refused at once, not a wait in open() that
// SIGTERM cannot end.
TEST(FileImage, FifoIsRefusedWithoutWaiting) {
  test::TempFifo fifo;
  int rc = test::run_in_child(
      [&] {
        try {
          FileImage::open(fifo.path, "kernel");
        } catch (const Error& e) {
          return std::string(e.what()).find("is not a regular file (it is a FIFO)") != std::string::npos ? 0 : 1;
        }
        return 2;
      },
      5000);
  EXPECT_EQ(rc, 0) << "1: wrong message, 2: accepted, -1: blocked in open()";
}

TEST(FileImage, BatchedReadsFromTwoImagesLandIntact) {
  // 9 MiB and a bit, read at an odd guest address (pieces end at 2 MiB boundaries of
  // the destination, not of the file), and a second image; headers are read at once.
  std::vector<uint8_t> big((9u << 20) + 123), small(300 * 1024);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<uint8_t>(i * 13 + 5);
  TempFile big_file(big), small_file(small);
  GuestMemory mem = small_memory(32);
  ReadBatch batch;
  FileImage kernel = FileImage::open(big_file.path, "kernel");
  FileImage initrd = FileImage::open(small_file.path, "initrd");
  kernel.defer_large_reads_to(&batch);
  initrd.defer_large_reads_to(&batch);
  EXPECT_EQ(kernel.size(), big.size());
  EXPECT_EQ(kernel.read_obj<uint32_t>(4), big[4] | big[5] << 8 | big[6] << 16 | uint32_t{big[7]} << 24);
  auto dst = mem.span(0x100321, big.size() - 100, "test");
  auto dst2 = mem.span(0x1c00000, small.size(), "test");
  kernel.read(100, dst);
  initrd.read(0, dst2);
  EXPECT_EQ(batch.pieces(), 7u);  // 0x100321..0xa00338 in six (RAM is 2 MiB-aligned), the initrd in one
  EXPECT_EQ(dst[0], 0);           // not read yet
  batch.run();
  EXPECT_TRUE(std::equal(dst.begin(), dst.end(), big.begin() + 100));
  EXPECT_TRUE(std::equal(dst2.begin(), dst2.end(), small.begin()));
  // Past the end: an error naming the file, before anything is queued.
  try {
    kernel.read(1, mem.span(0x100000, big.size(), "test"));
    ADD_FAILURE() << "read past the end accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kernel '" + big_file.path + "' is truncated"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(batch.pieces(), 0u);
}

// Large reads copy from a mapping of the file: a range that starts mid-page in the file
// and ends at its last byte, read at once (no batch) and through a batch.
TEST(FileImage, LargeReadFromAnUnalignedFileOffsetLandsIntact) {
  std::vector<uint8_t> bytes((3u << 20) + 77);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 11 + i / 4096);
  TempFile file(bytes);
  GuestMemory mem = small_memory(32);
  const uint64_t offset = 4096 + 333;
  const size_t len = bytes.size() - offset;
  FileImage image = FileImage::open(file.path, "kernel");
  image.read(offset, mem.span(0x100000, len, "test"));
  ReadBatch batch;
  image.defer_large_reads_to(&batch);
  image.read(offset, mem.span(0x800000, len, "test"));
  batch.run();
  for (uint64_t gpa : {0x100000ull, 0x800000ull}) {
    auto got = mem.span(gpa, len, "test");
    ASSERT_TRUE(std::equal(got.begin(), got.end(), bytes.begin() + offset)) << "at gpa " << gpa;
  }
}

TEST(FileImage, BatchReportsAFileThatShrankAfterQueuing) {
  std::vector<uint8_t> bytes(5u << 20, 0x5a);
  TempFile file(bytes);
  GuestMemory mem = small_memory(32);
  ReadBatch batch;
  FileImage image = FileImage::open(file.path, "initrd");
  image.defer_large_reads_to(&batch);
  image.read(0, mem.span(0x200000, bytes.size(), "test"));
  ASSERT_EQ(::truncate(file.path.c_str(), 1 << 20), 0);
  try {
    batch.run();
    ADD_FAILURE() << "a shrunken file was read without an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initrd '" + file.path + "' shrank while being read"), std::string::npos)
        << e.what();
  }
}

TEST(BootInfo, ZeroPageCarriesCmdlineInitrdAndE820) {
  GuestMemory mem = small_memory(64);
  LoadedKernel k = load_kernel(BufferImage(test::make_bzimage({}), "k"), mem);
  std::string cmdline = "console=ttyS0 quiet";
  write_cmdline(mem, k, cmdline);
  uint64_t at = write_boot_info(mem, k, cmdline, InitrdLocation{0x3000000, 0x5000});
  EXPECT_EQ(at, layout::kZeroPageStart);
  auto bp = mem.read_obj<boot_params>(at, "zero page");
  EXPECT_EQ(bp.hdr.header, 0x53726448u);
  EXPECT_EQ(bp.hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, layout::kCmdlineStart);
  EXPECT_EQ(bp.hdr.cmdline_size, cmdline.size());
  EXPECT_EQ(bp.hdr.ramdisk_image, 0x3000000u);
  EXPECT_EQ(bp.hdr.ramdisk_size, 0x5000u);
  ASSERT_EQ(bp.e820_entries, 3);
  EXPECT_EQ(bp.e820_table[2].addr, layout::kHighMemStart);
  EXPECT_EQ(bp.e820_table[2].addr + bp.e820_table[2].size, 64 * layout::kMiB);
  auto text = mem.span(layout::kCmdlineStart, cmdline.size() + 1, "cmdline");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(text.data())), cmdline);
}

TEST(BootInfo, PvhStartInfo) {
  GuestMemory mem = small_memory(64);
  ElfSpec spec;
  spec.pvh_entry = 0x1000000;
  LoadedKernel k = load_kernel(BufferImage(test::make_elf(spec), "k"), mem);
  uint64_t at = write_boot_info(mem, k, "x", InitrdLocation{0x3000000, 0x5000});
  EXPECT_EQ(at, layout::kPvhInfoStart);
  auto info = mem.read_obj<HvmStartInfo>(at, "t");
  EXPECT_EQ(info.magic, kHvmStartMagic);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.nr_modules, 1u);
  EXPECT_EQ(info.cmdline_paddr, layout::kCmdlineStart);
  EXPECT_EQ(info.memmap_entries, 3u);
  auto mod = mem.read_obj<HvmModlistEntry>(info.modlist_paddr, "t");
  EXPECT_EQ(mod.paddr, 0x3000000u);
  EXPECT_EQ(mod.size, 0x5000u);
  auto last = mem.read_obj<HvmMemmapEntry>(info.memmap_paddr + 2 * sizeof(HvmMemmapEntry), "t");
  EXPECT_EQ(last.addr + last.size, 64 * layout::kMiB);
  EXPECT_EQ(last.type, 1u);
}

TEST(BootInfo, CommandLineTooLong) {
  GuestMemory mem = small_memory(64);
  LoadedKernel k = load_kernel(BufferImage(test::make_bzimage({}), "k"), mem);
  EXPECT_THROW(write_cmdline(mem, k, std::string(2048, 'a')), Error);
  EXPECT_NO_THROW(write_cmdline(mem, k, std::string(2047, 'a')));
}

}  // namespace
}  // namespace ember
