// Guest RAM: one mapping (anonymous, or a snapshot's memory file mapped private) exposed to
// KVM as up to two slots (below and above the 32-bit MMIO gap), with bounds-checked access
// by guest-physical address.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "base/memory/written_pages.h"
#include "base/util/joining_thread.h"
#include "base/util/mapping.h"

namespace ember {

struct MemoryRegion {
  uint64_t gpa;       // guest-physical start
  uint64_t size;      // bytes
  uint64_t host_offset;  // offset into the backing mapping
};

enum class HugePages { None, Transparent, Huge2M };

// When guest RAM is populated: never (faulted in as the guest touches it), before
// create() returns, or by start_background_prefault() while the guest boots.
enum class Prefault { Off, Sync, Background };

struct GuestMemoryOptions {
  uint64_t size_bytes = 0;
  HugePages huge_pages = HugePages::None;
  Prefault prefault = Prefault::Sync;
  // A memory file to map MAP_PRIVATE instead of anonymous memory (snapshot restore): pages
  // load from it on first touch and stay shared with other mappings of it until written.
  // Borrowed: the mapping keeps the file, the caller may close the fd afterwards.
  int backing_fd = -1;
};

class GuestMemory {
 public:
  // Maps and (optionally) pre-faults guest RAM. Throws Error on failure.
  static GuestMemory create(const GuestMemoryOptions& options);
  // Splits [0, size) of RAM around the MMIO gap; exposed for tests.
  static std::vector<MemoryRegion> plan_regions(uint64_t size_bytes);

  // Host view of [gpa, gpa+len) if it lies entirely inside one region.
  // Never throws: hot paths use this and treat nullopt as a guest error.
  std::optional<std::span<uint8_t>> try_span(uint64_t gpa, uint64_t len) const;
  // Same, but throws Error naming the range (for setup code).
  std::span<uint8_t> span(uint64_t gpa, uint64_t len, const char* what) const;

  template <typename T>
  void write_obj(uint64_t gpa, const T& value, const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(span(gpa, sizeof(T), what).data(), &value, sizeof(T));
  }
  template <typename T>
  T read_obj(uint64_t gpa, const char* what) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, span(gpa, sizeof(T), what).data(), sizeof(T));
    return value;
  }

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t size() const { return mapping_.size(); }
  uint64_t page_size() const { return page_size_; }
  uint8_t* host_base() const { return mapping_.data(); }
  // End of RAM below 4 GiB (exclusive).
  uint64_t low_end() const { return regions_.front().gpa + regions_.front().size; }
  // Populates RAM on a thread of its own. Start it once KVM setup is done: populating
  // holds the mm lock that KVM_CREATE_VM and vCPU setup need, while the guest's own
  // page faults run alongside it.
  void start_background_prefault();

  // Diff snapshots: from now on, remember the pages the VMM writes (mark_written). Off by
  // default, and then mark_written costs one branch.
  void track_writes() { written_ = std::make_unique<WrittenPages>(mapping_.size()); }
  // The pages changed since the last snapshot, or null when not tracking.
  WrittenPages* written_pages() const { return written_.get(); }
  // `host` is a span try_span() returned (the virtio devices' buffers and rings).
  void mark_written(std::span<const uint8_t> host) const {
    if (written_) written_->mark(static_cast<uint64_t>(host.data() - mapping_.data()), host.size());
  }

 private:
  Mapping mapping_;
  std::vector<MemoryRegion> regions_;
  uint64_t page_size_ = 4096;
  bool file_backed_ = false;
  std::unique_ptr<WrittenPages> written_;
  JoiningThread prefault_thread_;  // declared after mapping_: joined before the unmap
};

}  // namespace ember
