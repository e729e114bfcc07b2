// The page map of what the VMM wrote since the last snapshot (Diff snapshots).
#include "base/memory/written_pages.h"

#include <gtest/gtest.h>

namespace ember {
namespace {

constexpr uint64_t kPage = WrittenPages::kPageSize;

bool marked(const WrittenPages& w, uint64_t page) { return (w.extract(page * kPage, kPage)[0] & 1) != 0; }

TEST(WrittenPages, MarksEveryPageARangeTouches) {
  WrittenPages w(300 * kPage);
  EXPECT_EQ(w.pages(), 300u);
  w.mark(5 * kPage - 1, 2);  // the last byte of page 4 and the first of page 5
  w.mark(70 * kPage, 0);     // nothing
  w.mark(299 * kPage + 4095, 1);
  EXPECT_EQ(w.count(), 3u);
  EXPECT_TRUE(marked(w, 4));
  EXPECT_TRUE(marked(w, 5));
  EXPECT_FALSE(marked(w, 70));
  EXPECT_TRUE(marked(w, 299));
  w.clear();
  EXPECT_EQ(w.count(), 0u);
}

TEST(WrittenPages, MergesAndExtractsKvmDirtyLogBitmapsAtARegionOffset) {
  WrittenPages w(1024 * kPage);
  // A region starting at page 128: its page 0 and 65 are pages 128 and 193 of the map.
  w.merge(128 * kPage, {1, 2});
  EXPECT_TRUE(marked(w, 128));
  EXPECT_TRUE(marked(w, 193));
  EXPECT_EQ(w.count(), 2u);
  std::vector<uint64_t> region = w.extract(128 * kPage, 200 * kPage);
  ASSERT_EQ(region.size(), 4u);  // 200 pages round up to four words
  EXPECT_EQ(region[0], 1u);
  EXPECT_EQ(region[1], 2u);
  EXPECT_EQ(region[2] | region[3], 0u);
  // Bits past the end of the map are ignored, not written out of bounds.
  w.merge(1000 * kPage, {~0ull, ~0ull});
  EXPECT_EQ(w.count(), 2u + 24u);
  EXPECT_EQ(w.extract(1020 * kPage, 10 * kPage)[0], 0xfu);  // only pages 1020..1023 exist
}

}  // namespace
}  // namespace ember
