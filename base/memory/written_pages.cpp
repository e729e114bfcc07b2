#include "base/memory/written_pages.h"

#include <bit>

namespace ember {

WrittenPages::WrittenPages(uint64_t mapping_bytes)
    : pages_((mapping_bytes + kPageSize - 1) / kPageSize),
      words_(std::make_unique<std::atomic<uint64_t>[]>((pages_ + 63) / 64)) {}

void WrittenPages::mark(uint64_t offset, uint64_t len) {
  if (len == 0) return;
  uint64_t first = offset / kPageSize, last = (offset + len - 1) / kPageSize;
  if (last >= pages_) last = pages_ - 1;
  for (uint64_t page = first; page <= last; ++page) set(page);
}

void WrittenPages::merge(uint64_t first_offset, const std::vector<uint64_t>& bits) {
  uint64_t base = first_offset / kPageSize;
  for (size_t w = 0; w < bits.size(); ++w) {
    for (uint64_t word = bits[w]; word != 0; word &= word - 1) {
      uint64_t page = base + w * 64 + static_cast<uint64_t>(std::countr_zero(word));
      if (page >= pages_) return;
      set(page);
    }
  }
}

std::vector<uint64_t> WrittenPages::extract(uint64_t first_offset, uint64_t bytes) const {
  uint64_t base = first_offset / kPageSize, count = (bytes + kPageSize - 1) / kPageSize;
  std::vector<uint64_t> out((count + 63) / 64, 0);
  for (uint64_t i = 0; i < count && base + i < pages_; ++i) {
    uint64_t page = base + i;
    if (words_[page / 64].load(std::memory_order_relaxed) & (uint64_t{1} << (page % 64))) {
      out[i / 64] |= uint64_t{1} << (i % 64);
    }
  }
  return out;
}

void WrittenPages::clear() {
  for (uint64_t w = 0; w < (pages_ + 63) / 64; ++w) words_[w].store(0, std::memory_order_relaxed);
}

uint64_t WrittenPages::count() const {
  uint64_t n = 0;
  for (uint64_t w = 0; w < (pages_ + 63) / 64; ++w) n += std::popcount(words_[w].load(std::memory_order_relaxed));
  return n;
}

}  // namespace ember
