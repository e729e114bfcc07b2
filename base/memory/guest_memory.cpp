#include "base/memory/guest_memory.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "base/util/log.h"
#include "base/util/thread.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

namespace ember {

std::vector<MemoryRegion> GuestMemory::plan_regions(uint64_t size_bytes) {
  std::vector<MemoryRegion> regions;
  uint64_t low = std::min(size_bytes, layout::kMmioGapStart);
  regions.push_back({0, low, 0});
  if (size_bytes > low) regions.push_back({layout::kMmioGapEnd, size_bytes - low, low});
  return regions;
}

namespace {

// In chunks: one madvise() holds the mm lock for its whole range, and KVM needs that
// lock (vCPU setup, the first KVM_RUN) while a background prefault runs.
constexpr uint64_t kPrefaultChunk = 4 * layout::kMiB;

// A private file mapping is populated for reading: writing would copy every page and end
// the sharing of the file's page cache between VMs restored from one snapshot.
void prefault(uint8_t* base, uint64_t size, uint64_t page, bool file_backed) {
  const int advice = file_backed ? MADV_POPULATE_READ : MADV_POPULATE_WRITE;
  uint64_t done = 0;
  while (done < size) {
    uint64_t len = std::min(kPrefaultChunk, size - done);
    if (::madvise(base + done, len, advice) != 0) break;
    done += len;
  }
  if (done == size) return;
  // Kernels before 5.14 lack MADV_POPULATE_*: fault each page instead, by reading it (a file
  // mapping) or with an atomic OR of 0, so data already there (the kernel, a guest's writes)
  // is left unchanged.
  log::debug(cat("MADV_POPULATE failed (", errno_text(), "), touching pages"));
  for (uint64_t off = done; off < size; off += page) {
    if (file_backed) {
      (void)*static_cast<volatile uint8_t*>(base + off);
    } else {
      __atomic_fetch_or(base + off, uint8_t{0}, __ATOMIC_RELAXED);
    }
  }
}

// Guest RAM starts on a 2 MiB boundary. KVM maps guest memory with 2 MiB pages only where the
// host address is aligned like the guest address, and a transparent huge page only forms on a
// 2 MiB-aligned host range; mmap() aligns to 4 KiB. Unaligned, every guest page took a 4 KiB
// fault of its own (perf/boot-latency). Reserves 2 MiB more, maps inside, returns the slack.
// The same for a private mapping of a memory file (`fd` >= 0).
void* map_aligned(uint64_t size, int fd) {
  constexpr uint64_t kAlign = 2 * layout::kMiB;
  const int reserve_flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  const int flags = fd >= 0 ? MAP_PRIVATE | MAP_NORESERVE : reserve_flags;
  void* raw = ::mmap(nullptr, size + kAlign, PROT_NONE, reserve_flags, -1, 0);
  if (raw == MAP_FAILED) return MAP_FAILED;
  auto raw_start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t start = (raw_start + kAlign - 1) & ~(kAlign - 1);
  void* addr = ::mmap(reinterpret_cast<void*>(start), size, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0);
  if (addr == MAP_FAILED) {
    int saved = errno;
    ::munmap(raw, size + kAlign);
    errno = saved;
    return MAP_FAILED;
  }
  if (start > raw_start) ::munmap(raw, start - raw_start);
  uintptr_t end = start + size, raw_end = raw_start + size + kAlign;
  if (raw_end > end) ::munmap(reinterpret_cast<void*>(end), raw_end - end);
  return addr;
}

}  // namespace

GuestMemory GuestMemory::create(const GuestMemoryOptions& options) {
  uint64_t size = options.size_bytes;
  if (size == 0 || size % layout::kMiB != 0) fail("guest memory size must be a positive number of MiB");
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  uint64_t page = layout::kPageSize;
  const bool file_backed = options.backing_fd >= 0;
  if (file_backed && options.huge_pages == HugePages::Huge2M) {
    fail("guest memory with 2 MiB huge pages cannot be mapped from a memory file (restore it through a page-fault handler)");
  }
  if (options.huge_pages == HugePages::Huge2M) {
    if (size % (2 * layout::kMiB) != 0) fail("mem_size_mib must be a multiple of 2 with 2M huge pages");
    flags |= MAP_HUGETLB | MAP_HUGE_2MB;
    page = 2 * layout::kMiB;
  }
  // Huge-page mappings come 2 MiB-aligned already.
  void* addr = options.huge_pages == HugePages::Huge2M ? ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0)
                                                       : map_aligned(size, options.backing_fd);
  if (addr == MAP_FAILED) {
    if (options.huge_pages == HugePages::Huge2M) {
      fail("cannot map ", size / layout::kMiB, " MiB of guest memory with 2 MiB huge pages: ",
           errno_text(), " (reserve pages with: echo N > /proc/sys/vm/nr_hugepages)");
    }
    fail("cannot map ", size / layout::kMiB, " MiB of guest memory: ", errno_text());
  }
  GuestMemory memory;
  memory.mapping_ = Mapping(addr, size);
  memory.regions_ = plan_regions(size);
  // KVM may merge pages from a fork into the guest; guest RAM is never shared.
  ::madvise(addr, size, MADV_DONTFORK);
  // Shows as [anon:ember-guest-ram] in /proc/PID/smaps, so tools can tell guest RAM from
  // ember's own memory (Linux 5.17+ with CONFIG_ANON_VMA_NAME; harmless elsewhere). A file
  // mapping shows under the file's name instead.
  if (!file_backed) ::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, reinterpret_cast<unsigned long>(addr), size, "ember-guest-ram");
  if (options.huge_pages == HugePages::Transparent) ::madvise(addr, size, MADV_HUGEPAGE);
  memory.page_size_ = page;
  memory.file_backed_ = file_backed;
  if (options.prefault == Prefault::Sync) prefault(memory.mapping_.data(), size, page, file_backed);
  return memory;
}

void GuestMemory::start_background_prefault() {
  uint8_t* base = mapping_.data();
  uint64_t size = mapping_.size(), page = page_size_;
  bool file_backed = file_backed_;
  prefault_thread_ = JoiningThread(start_thread(ThreadRole::Prefault, "ember-prefault", [base, size, page, file_backed] {
    // Lowest normal priority: when CPUs are short (the emulated host, a busy fleet host) the
    // vCPUs and the boot come first. Not SCHED_IDLE: a starved thread holding the mm lock
    // would stall every writer of it and every page fault queued behind that writer.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
    prefault(base, size, page, file_backed);
  }));
}

std::optional<std::span<uint8_t>> GuestMemory::try_span(uint64_t gpa, uint64_t len) const {
  for (const MemoryRegion& r : regions_) {
    if (gpa < r.gpa) continue;
    uint64_t offset = gpa - r.gpa;
    if (offset >= r.size && !(offset == r.size && len == 0)) continue;
    if (len > r.size - offset) return std::nullopt;  // crosses the end of this region
    return std::span<uint8_t>(mapping_.data() + r.host_offset + offset, len);
  }
  return std::nullopt;
}

std::span<uint8_t> GuestMemory::span(uint64_t gpa, uint64_t len, const char* what) const {
  auto s = try_span(gpa, len);
  if (!s) {
    fail(what, " at guest address ", hex(gpa), " (", len, " bytes) is outside guest memory (",
         size() / layout::kMiB, " MiB)");
  }
  return *s;
}

}  // namespace ember
