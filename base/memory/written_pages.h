// Which 4 KiB pages of guest RAM changed since the last snapshot, for Diff snapshots: the
// pages the VMM's own devices wrote (virtio buffers and used rings), which KVM's dirty log
// cannot see, merged at snapshot time with that log. One bit per page of the guest memory
// mapping, by host offset; marked from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace ember {

class WrittenPages {
 public:
  static constexpr uint64_t kPageSize = 4096;

  explicit WrittenPages(uint64_t mapping_bytes);

  // Marks every page [offset, offset + len) touches (len 0 marks nothing). The range must
  // lie inside the mapping; callers pass ranges GuestMemory already bounds-checked.
  void mark(uint64_t offset, uint64_t len);
  // Ors `bits` (bit i of word i/64 is the page at `first_offset + i * 4096`, KVM_GET_DIRTY_LOG's
  // format) into the map. `first_offset` is page-aligned; bits past the mapping are ignored.
  void merge(uint64_t first_offset, const std::vector<uint64_t>& bits);
  // The pages of [first_offset, first_offset + bytes) in the same format.
  std::vector<uint64_t> extract(uint64_t first_offset, uint64_t bytes) const;
  void clear();
  uint64_t pages() const { return pages_; }
  uint64_t count() const;

 private:
  void set(uint64_t page) { words_[page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_relaxed); }

  uint64_t pages_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace ember
