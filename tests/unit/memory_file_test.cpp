// Guest memory saved to the memory file (full and diff) and restored through the File and
// Uffd backends; the Uffd test runs the example handler (examples/uffd) as a process.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/memory/layout.h"
#include "base/util/file_io.h"
#include "tests/unit/child_process.h"
#include "tests/unit/error_of.h"
#include "tests/unit/temp_dir.h"
#include "vmm/snapshot/memory_file.h"

namespace ember::snapshot {
namespace {

using test::error_of;
using test::TempDir;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kSize = 16 * layout::kMiB;

GuestMemoryOptions options(uint64_t size = kSize) { return {size, HugePages::None, Prefault::Off}; }

// Every 37th page gets a pattern (and the very last byte of memory): mostly zeros, as a
// freshly booted guest's memory is.
uint64_t fill(GuestMemory& mem, uint8_t seed) {
  uint64_t pages = 0;
  for (uint64_t p = 0; p < mem.size() / kPage; p += 37, ++pages) {
    uint8_t* page = mem.host_base() + p * kPage;
    for (uint64_t i = 0; i < kPage; i += 64) page[i] = static_cast<uint8_t>(seed + p + i / 64);
  }
  mem.host_base()[mem.size() - 1] = seed;
  return pages + 1;
}

std::string file_text(const std::string& path) { return read_file(path, "memory file"); }

// Patterned memory saved in full to a file in a fresh folder.
struct Saved {
  TempDir dir;
  GuestMemory mem = GuestMemory::create(options());
  std::string path = dir.file("mem");
  uint64_t pages;
  MemorySaveStats stats;
  explicit Saved(uint8_t seed) : pages(fill(mem, seed)), stats(save_memory_full(mem, path)) {}
};

bool same(const GuestMemory& mem, const std::string& bytes) {
  return bytes.size() == mem.size() && std::memcmp(mem.host_base(), bytes.data(), bytes.size()) == 0;
}

TEST(MemoryFile, FullSaveIsSparseAndRestoresTheSameBytes) {
  Saved s(1);
  const GuestMemory& mem = s.mem;
  const std::string& path = s.path;
  EXPECT_EQ(s.stats.pages_written, s.pages);
  EXPECT_EQ(s.stats.bytes_written, s.pages * kPage);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, kSize / 8) << "the zero pages were written";
  EXPECT_TRUE(same(mem, file_text(path)));

  GuestMemory back = restore_memory_from_file(path, options());
  EXPECT_EQ(back.size(), kSize);
  EXPECT_EQ(std::memcmp(back.host_base(), mem.host_base(), kSize), 0);
}

TEST(MemoryFile, RestoredMemoryIsPrivate) {
  Saved s(2);
  const std::string& path = s.path;
  const std::string before = file_text(path);
  GuestMemory a = restore_memory_from_file(path, options());
  GuestMemory b = restore_memory_from_file(path, {kSize, HugePages::None, Prefault::Sync});
  std::memset(a.host_base(), 0x5a, kSize);  // every page, zero ones included
  EXPECT_EQ(file_text(path), before);
  EXPECT_TRUE(same(b, before));  // another restore of the same file does not see a's writes
}

TEST(MemoryFile, RestoreRefusesWrongSizeAndType) {
  Saved s(0);
  const TempDir& dir = s.dir;
  const std::string& path = s.path;
  std::string e = error_of([&] { restore_memory_from_file(path, options(32 * layout::kMiB)); });
  EXPECT_EQ(e, "memory file '" + path + "' is 16777216 bytes, but the snapshot's guest memory is 33554432 bytes (32 MiB)");
  EXPECT_NE(error_of([&] { restore_memory_from_file(dir.path, options()); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { restore_memory_from_file(dir.file("none"), options()); }).find("cannot open memory file"),
            std::string::npos);
  test::TempFifo fifo;
  int rc = test::run_in_child(
      [&] { return error_of([&] { restore_memory_from_file(fifo.path, options()); }).find("is a FIFO") != std::string::npos ? 0 : 1; },
      5000);
  EXPECT_EQ(rc, 0);
}

TEST(MemoryFile, FailedFullSaveLeavesExistingFile) {
  Saved s(3);
  GuestMemory& mem = s.mem;
  const std::string& path = s.path;
  const std::string before = file_text(path);
  fill(mem, 4);
  int rc = test::run_in_child(
      [&] {
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit limit{1 << 20, 1 << 20};
        ::setrlimit(RLIMIT_FSIZE, &limit);
        return error_of([&] { save_memory_full(mem, path); }).find("cannot write memory file") == 0 ? 0 : 1;
      },
      10000);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(file_text(path), before);
}

void mark(DirtyBitmap& bitmap, uint64_t page) { bitmap[page / 64] |= 1ull << (page % 64); }

// Whether [offset, offset + len) of the file at `path` is data (not a hole).
bool is_data(const std::string& path, uint64_t offset, uint64_t len) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  off_t data = ::lseek(fd.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (data != static_cast<off_t>(offset)) return false;
  return ::lseek(fd.get(), data, SEEK_HOLE) >= static_cast<off_t>(offset + len);
}

TEST(MemoryFile, DiffHoldsTheDirtyPagesAsDataAndRebasesOntoItsBase) {
  Saved s(5);  // the base: a full save of memory filled with 5
  GuestMemory& mem = s.mem;
  const std::string base_before = file_text(s.path);

  std::vector<DirtyBitmap> dirty(1, DirtyBitmap(kSize / kPage / 64));
  std::memset(mem.host_base() + 3 * kPage, 0x11, kPage);       // dirty, marked
  std::memset(mem.host_base() + 4 * kPage, 0x22, 2 * kPage);   // dirty, marked (a run of two)
  std::memset(mem.host_base() + 100 * kPage, 0x33, kPage);     // changed but not marked: not written
  std::memset(mem.host_base() + 37 * kPage, 0, kPage);         // now zero: written as zeros
  for (uint64_t p : {3, 4, 5, 37, 4095}) mark(dirty[0], p);    // 4095: the last page
  std::string diff = s.dir.file("diff");
  {
    std::ofstream(diff) << "an older file, replaced";
  }
  MemorySaveStats stats = save_memory_diff(mem, dirty, diff);
  EXPECT_EQ(stats.pages_written, 5u);

  std::string text = file_text(diff);
  ASSERT_EQ(text.size(), kSize);
  EXPECT_EQ(text.substr(3 * kPage, kPage), std::string(kPage, '\x11'));
  EXPECT_EQ(text.substr(4 * kPage, 2 * kPage), std::string(2 * kPage, '\x22'));
  EXPECT_EQ(text.substr(100 * kPage, kPage), std::string(kPage, '\0'));
  EXPECT_TRUE(is_data(diff, 37 * kPage, kPage)) << "a dirty zero page must be data, or a rebase would skip it";
  EXPECT_TRUE(is_data(diff, 3 * kPage, 3 * kPage));
  EXPECT_FALSE(is_data(diff, 6 * kPage, kPage));
  EXPECT_EQ(file_text(s.path), base_before) << "the base is not touched by a diff save";

  // Base + diff == memory, but for the page changed without being marked.
  stats = rebase_memory_file(s.path, diff);
  EXPECT_EQ(stats.pages_written, 5u);
  std::memset(mem.host_base() + 100 * kPage, 0, kPage);  // what the base holds there
  EXPECT_TRUE(same(mem, file_text(s.path)));

  std::vector<DirtyBitmap> short_bitmap(1, DirtyBitmap(3));
  EXPECT_NE(error_of([&] { save_memory_diff(mem, short_bitmap, diff); }).find("has 3 words, 64 needed"),
            std::string::npos);
  EXPECT_NE(error_of([&] { save_memory_diff(mem, std::vector<DirtyBitmap>(2, dirty[0]), diff); })
                .find("2 dirty bitmaps for 1 memory regions"),
            std::string::npos);
}

TEST(MemoryFile, RebaseRefusesFilesThatDoNotMatch) {
  Saved s(1);
  GuestMemory other = GuestMemory::create(options(32 * layout::kMiB));
  std::string other_diff = s.dir.file("other-diff");
  save_memory_diff(other, std::vector<DirtyBitmap>(1, DirtyBitmap(32 * layout::kMiB / kPage / 64)), other_diff);
  const std::string before = file_text(s.path);
  EXPECT_NE(error_of([&] { rebase_memory_file(s.path, other_diff); }).find("is 16777216 bytes"), std::string::npos);
  EXPECT_NE(error_of([&] { rebase_memory_file(s.path, s.dir.file("missing")); })
                .find("cannot open diff memory file '" + s.dir.file("missing") + "'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { rebase_memory_file(s.dir.file("missing"), s.path); }).find("cannot open memory file"),
            std::string::npos);
  EXPECT_NE(error_of([&] { rebase_memory_file(s.path, s.dir.path); }).find("not a regular file"), std::string::npos);
  EXPECT_EQ(file_text(s.path), before);
}

// Above the MMIO gap, a region's pages go at its host_offset in the file.
TEST(MemoryFile, DiffOfTheRegionAboveTheGap) {
  TempDir dir;
  const uint64_t size = layout::kMmioGapStart + 16 * layout::kMiB;
  GuestMemory mem = GuestMemory::create(options(size));
  ASSERT_EQ(mem.regions().size(), 2u);
  std::vector<DirtyBitmap> dirty(2);
  for (size_t i = 0; i < 2; ++i) dirty[i].resize(mem.regions()[i].size / kPage / 64);
  mem.write_obj<uint64_t>(layout::kMmioGapEnd + 7 * kPage, 0x1122334455667788ull, "test");
  mark(dirty[1], 7);
  std::string path = dir.file("mem");
  EXPECT_EQ(save_memory_diff(mem, dirty, path).pages_written, 1u);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  uint64_t value = 0;
  ASSERT_EQ(::pread(fd.get(), &value, 8, static_cast<off_t>(layout::kMmioGapStart + 7 * kPage)), 8);
  EXPECT_EQ(value, 0x1122334455667788ull);
  struct stat st{};
  ::fstat(fd.get(), &st);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
}

TEST(MemoryFile, UffdRegionsMessage) {
  GuestMemory mem = GuestMemory::create(options(layout::kMmioGapStart + 16 * layout::kMiB));
  auto regions = nlohmann::json::parse(uffd_regions_json(mem));
  ASSERT_EQ(regions.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const MemoryRegion& r = mem.regions()[i];
    EXPECT_EQ(regions[i].at("base_host_virt_addr").get<uint64_t>(), reinterpret_cast<uintptr_t>(mem.host_base() + r.host_offset));
    EXPECT_EQ(regions[i].at("size").get<uint64_t>(), r.size);
    EXPECT_EQ(regions[i].at("offset").get<uint64_t>(), r.host_offset);
    EXPECT_EQ(regions[i].at("page_size").get<uint64_t>(), 4096u);
    EXPECT_EQ(regions[i].at("page_size_kib").get<uint64_t>(), 4u);
  }
}

// Why userfaultfd cannot be used here, or "" when it can.
std::string userfaultfd_unavailable() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC)));
  if (fd.valid()) return "";
  std::string why = cat("userfaultfd(): ", errno_text());
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev.valid() && ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC) >= 0) return "";
  std::string sysctl = "?";
  try {
    sysctl = read_file("/proc/sys/vm/unprivileged_userfaultfd", "sysctl");
  } catch (const Error&) {
  }
  return cat(why, "; /dev/userfaultfd: ", errno_text(), "; vm.unprivileged_userfaultfd = ", sysctl);
}

TEST(MemoryFile, UffdMissingSocketIsNamed) {
  std::string why = userfaultfd_unavailable();
  if (!why.empty()) GTEST_SKIP() << "userfaultfd unavailable on this machine: " << why;
  std::string e = error_of([] { restore_memory_with_uffd("/nonexistent/ember-uffd.sock", options()); });
  EXPECT_EQ(e, "page-fault handler socket '/nonexistent/ember-uffd.sock': cannot connect: No such file or directory");
}

// ember's side of a restore through the example handler, in a child with a deadline (a
// broken handler would leave a fault waiting forever): every page as in the file, and a
// page given back (MADV_DONTNEED, UFFD_EVENT_REMOVE) reads as zeros afterwards.
int uffd_client(const std::string& socket, const std::string& mem_path) {
  const std::string file = file_text(mem_path);
  for (int attempt = 0;; ++attempt) {  // until the handler listens
    try {
      UffdMemory restored = restore_memory_with_uffd(socket, options());
      GuestMemory& mem = restored.memory;
      for (uint64_t off = 0; off < kSize; off += kPage) {
        if (std::memcmp(mem.host_base() + off, file.data() + off, kPage) != 0) {
          std::fprintf(stderr, "page at %#llx differs\n", static_cast<unsigned long long>(off));
          return 10;
        }
      }
      if (::madvise(mem.host_base() + 37 * kPage, kPage, MADV_DONTNEED) != 0) return 11;
      if (mem.host_base()[37 * kPage] != 0 || mem.host_base()[74 * kPage] == 0) return 12;
      mem.host_base()[0] = 1;  // writes are served too
      return mem.host_base()[0] == 1 ? 0 : 13;
    } catch (const Error& e) {
      if (attempt > 500) {
        std::fprintf(stderr, "%s\n", e.what());
        return 14;
      }
      ::usleep(10000);
    }
  }
}

TEST(MemoryFile, UffdRestoreThroughTheExampleHandler) {
  std::string why = userfaultfd_unavailable();
  if (!why.empty()) GTEST_SKIP() << "userfaultfd unavailable on this machine: " << why;
  Saved s(9);
  const std::string& mem_path = s.path;
  const std::string socket = s.dir.file("uffd.sock");

  pid_t handler = ::fork();
  if (handler == 0) {
    ::execl(EMBER_UFFD_HANDLER, EMBER_UFFD_HANDLER, socket.c_str(), mem_path.c_str(), nullptr);
    ::_exit(127);
  }
  ASSERT_GT(handler, 0);
  int rc = test::run_in_child([&] { return uffd_client(socket, mem_path); }, 20000);
  EXPECT_EQ(rc, 0) << (rc == test::kChildTimedOut ? "a fault was never served" : "see stderr");
  // The handler ends once ember's socket closes.
  int status = -1;
  for (int waited = 0; waited < 5000 && ::waitpid(handler, &status, WNOHANG) == 0; waited += 10) ::usleep(10000);
  if (status == -1) {
    ::kill(handler, SIGKILL);
    ::waitpid(handler, &status, 0);
    ADD_FAILURE() << "the handler did not end after ember closed the socket";
  } else {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

}  // namespace
}  // namespace ember::snapshot
