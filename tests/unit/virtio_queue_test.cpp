// The split virtqueue against well-behaved and hostile drivers: every validation
// rule has a test that breaks it.
#include <gtest/gtest.h>

#include "tests/unit/virtio_driver.h"
#include "virtio/queue.h"
#include "virtio/spec.h"

namespace ember::virtio {
namespace {

using test::Buffer;
using test::VirtioDriver;

struct QueueHarness {
  GuestMemory memory = test::small_guest_memory();
  VirtioDriver driver{memory, 16};
  SplitQueue queue;
  explicit QueueHarness(QueueFeatures features = {false, true}) : queue(make(features)) {}
  SplitQueue make(QueueFeatures features) {
    Result<SplitQueue> q = SplitQueue::create(memory, driver.config(), 256, features);
    EXPECT_TRUE(q) << q.error();
    return *q;
  }
  // Pops expecting nothing valid; returns the used entry written for a rejected chain.
  void expect_rejected(uint16_t head) {
    EXPECT_FALSE(queue.pop());
    EXPECT_FALSE(queue.broken());
    ASSERT_EQ(driver.used_idx(), 1);
    EXPECT_EQ(driver.used(0).id, head);
    EXPECT_EQ(driver.used(0).len, 0u);
    EXPECT_EQ(queue.chains_failed(), 1u);
  }
};

TEST(SplitQueue, PopsAChainAsReaderAndWriterAndCompletesIt) {
  QueueHarness h;
  Buffer header = h.driver.alloc(16, 0xaa);
  Buffer data = h.driver.alloc(512);
  Buffer status = h.driver.alloc(1);
  uint16_t head = h.driver.add({header}, {data, status});
  auto chain = h.queue.pop();
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->head(), head);
  ChainReader r = chain->reader();
  EXPECT_EQ(r.remaining(), 16u);
  uint8_t got[16];
  EXPECT_EQ(r.read(got), 16u);
  EXPECT_EQ(got[3], 0xaa);
  ChainWriter w = chain->writer();
  EXPECT_EQ(w.remaining(), 513u);
  ChainWriter tail = w.split_at(512);
  EXPECT_TRUE(tail.write_obj(uint8_t{7}));
  EXPECT_EQ(h.driver.bytes(status)[0], 7);
  chain->complete(513);
  EXPECT_FALSE(h.queue.pop());
  ASSERT_EQ(h.driver.used_idx(), 1);
  EXPECT_EQ(h.driver.used(0).id, head);
  EXPECT_EQ(h.driver.used(0).len, 513u);
}

// Diff snapshots: what a device may write (a popped chain's writable buffers, the used
// ring) is marked, what it only reads is not; nothing is marked without tracking.
TEST(SplitQueue, MarksThePagesADeviceMayWriteWhenTracking) {
  QueueHarness h;
  Buffer header = h.driver.alloc(16, 0xaa);
  Buffer first = h.driver.alloc(4096 * 2);
  Buffer second = h.driver.alloc(1);
  h.driver.add({header}, {first, second});
  auto untracked = h.queue.pop();
  ASSERT_TRUE(untracked);
  untracked->complete(1);
  EXPECT_EQ(h.memory.written_pages(), nullptr);

  h.memory.track_writes();
  WrittenPages& written = *h.memory.written_pages();
  h.driver.add({header}, {first, second});
  auto chain = h.queue.pop();
  ASSERT_TRUE(chain);
  auto page_marked = [&](uint64_t gpa) {
    uint64_t offset = static_cast<uint64_t>(h.memory.try_span(gpa, 1)->data() - h.memory.host_base());
    return (written.extract(offset & ~4095ull, 4096)[0] & 1) != 0;
  };
  EXPECT_TRUE(page_marked(first.gpa));
  EXPECT_TRUE(page_marked(first.gpa + first.len - 1));
  EXPECT_TRUE(page_marked(second.gpa));
  uint64_t marked_at_pop = written.count();
  EXPECT_LE(marked_at_pop, 4u);  // two pages of `first`, perhaps one more it crosses into, `second`'s
  chain->complete(1);
  EXPECT_TRUE(page_marked(h.driver.config().device));
  written.clear();
  h.driver.add({header}, {});
  auto reading = h.queue.pop();
  ASSERT_TRUE(reading);
  EXPECT_EQ(written.count(), 0u);  // a read-only chain marks nothing until it is completed
  reading->complete(0);
  EXPECT_TRUE(page_marked(h.driver.config().device));
}

TEST(SplitQueue, ReaderCrossesDescriptorBoundaries) {
  QueueHarness h;
  Buffer a = h.driver.alloc(3, 1), b = h.driver.alloc(5, 2);
  h.driver.add({a, b}, {});
  auto chain = h.queue.pop();
  ASSERT_TRUE(chain);
  ChainReader r = chain->reader();
  uint64_t v = 0;
  ASSERT_TRUE(r.read_obj(v));
  EXPECT_EQ(v, 0x0202020202010101ull);
  std::vector<iovec> iov;
  ChainReader first6 = chain->reader();
  ChainReader rest = first6.split_at(6);
  EXPECT_EQ(rest.remaining(), 2u);
  first6.append_iovecs(iov);
  ASSERT_EQ(iov.size(), 2u);
  EXPECT_EQ(iov[1].iov_len, 3u);
  chain->complete(0);
}

TEST(SplitQueue, IndirectChainIsFollowedWhenNegotiated) {
  QueueHarness h;
  Buffer header = h.driver.alloc(16), data = h.driver.alloc(4096), status = h.driver.alloc(1);
  h.driver.add({header}, {data, status}, true);
  auto chain = h.queue.pop();
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->reader().remaining(), 16u);
  EXPECT_EQ(chain->writer().remaining(), 4097u);
  chain->complete(1);
}

TEST(SplitQueue, IndirectWithoutTheFeatureFailsTheRequest) {
  QueueHarness h({false, false});
  uint16_t head = h.driver.add({h.driver.alloc(16)}, {h.driver.alloc(1)}, true);
  h.expect_rejected(head);
}

TEST(SplitQueue, NestedIndirectTableIsRejected) {
  QueueHarness h;
  uint64_t inner = h.driver.indirect_table(5);
  uint64_t outer = h.driver.indirect_table(6);
  h.driver.write_desc(inner, 0, {h.driver.alloc(16).gpa, 16, 0, 0});
  h.driver.write_desc(outer, 0, {inner, 16, kDescIndirect, 0});
  h.driver.write_desc(h.driver.desc_table(), 0, {outer, 16, kDescIndirect, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, IndirectTableSizeMustBeAWholeNumberOfDescriptors) {
  for (uint32_t len : {0u, 8u, 24u, 16u * 257u}) {
    SCOPED_TRACE(len);
    QueueHarness h;
    h.driver.write_desc(h.driver.desc_table(), 0, {h.driver.indirect_table(0), len, kDescIndirect, 0});
    h.driver.publish(0);
    h.expect_rejected(0);
  }
}

TEST(SplitQueue, IndirectTableOutsideGuestMemoryIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {(4ull << 20) - 16, 32, kDescIndirect, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, IndirectTogetherWithNextIsRejected) {
  QueueHarness h;
  uint64_t table = h.driver.indirect_table(0);
  h.driver.write_desc(table, 0, {h.driver.alloc(16).gpa, 16, 0, 0});
  h.driver.write_desc(h.driver.desc_table(), 0, {table, 16, kDescIndirect | kDescNext, 1});
  h.driver.write_desc(h.driver.desc_table(), 1, {h.driver.alloc(1).gpa, 1, kDescWrite, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, LoopInsideAnIndirectTableIsDetected) {
  QueueHarness h;
  uint64_t table = h.driver.indirect_table(0);
  Buffer b = h.driver.alloc(16);
  h.driver.write_desc(table, 0, {b.gpa, 16, kDescNext, 1});
  h.driver.write_desc(table, 1, {b.gpa, 16, kDescNext, 0});
  h.driver.write_desc(h.driver.desc_table(), 0, {table, 32, kDescIndirect, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, BufferOutsideGuestMemoryIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {(4ull << 20) - 8, 16, 0, 0});  // crosses the end of RAM
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, BufferWithAHugeLengthIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {0x1000, 0xffffffff, kDescWrite, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, BufferAddressThatWrapsIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {UINT64_MAX - 4, 16, 0, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, LoopInTheDescriptorTableIsDetected) {
  QueueHarness h;
  Buffer b = h.driver.alloc(16);
  h.driver.write_desc(h.driver.desc_table(), 0, {b.gpa, 16, kDescNext, 1});
  h.driver.write_desc(h.driver.desc_table(), 1, {b.gpa, 16, kDescNext, 2});
  h.driver.write_desc(h.driver.desc_table(), 2, {b.gpa, 16, kDescNext, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, SelfLoopIsDetected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 3, {h.driver.alloc(1).gpa, 1, kDescWrite | kDescNext, 3});
  h.driver.publish(3);
  h.expect_rejected(3);
}

TEST(SplitQueue, NextIndexPastTheTableIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {h.driver.alloc(16).gpa, 16, kDescNext, 16});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, ReadableAfterWritableIsRejected) {
  QueueHarness h;
  h.driver.write_desc(h.driver.desc_table(), 0, {h.driver.alloc(1).gpa, 1, kDescWrite | kDescNext, 1});
  h.driver.write_desc(h.driver.desc_table(), 1, {h.driver.alloc(16).gpa, 16, 0, 0});
  h.driver.publish(0);
  h.expect_rejected(0);
}

TEST(SplitQueue, AvailIndexJumpingPastTheQueueSizeBreaksTheRing) {
  QueueHarness h;
  h.driver.set_avail_idx(17);  // 17 new entries in a queue of 16
  EXPECT_FALSE(h.queue.pop());
  EXPECT_TRUE(h.queue.broken());
  EXPECT_EQ(h.driver.used_idx(), 0);
  // Once broken, the queue stays quiet even if the index looks sane again.
  h.driver.set_avail_idx(1);
  EXPECT_FALSE(h.queue.pop());
}

TEST(SplitQueue, HeadIndexPastTheQueueSizeBreaksTheRing) {
  QueueHarness h;
  h.driver.publish(16);
  EXPECT_FALSE(h.queue.pop());
  EXPECT_TRUE(h.queue.broken());
}

TEST(SplitQueue, AFullRingIsAccepted) {
  QueueHarness h;
  for (int i = 0; i < 16; ++i) h.driver.add({}, {h.driver.alloc(1)});
  int popped = 0;
  while (auto chain = h.queue.pop()) {
    chain->complete(1);
    ++popped;
  }
  EXPECT_EQ(popped, 16);
  EXPECT_FALSE(h.queue.broken());
  EXPECT_EQ(h.driver.used_idx(), 16);
}

TEST(SplitQueue, AvailIndexWrapsAround) {
  QueueHarness h;
  for (int round = 0; round < 5000; ++round) {
    h.driver.add({}, {h.driver.alloc(0)});
    auto chain = h.queue.pop();
    ASSERT_TRUE(chain) << round;
    chain->complete(0);
  }
  EXPECT_EQ(h.driver.used_idx(), static_cast<uint16_t>(5000));
}

TEST(SplitQueue, DroppedChainGoesBackEmpty) {
  QueueHarness h;
  uint16_t head = h.driver.add({h.driver.alloc(16)}, {});
  { auto chain = h.queue.pop(); }
  ASSERT_EQ(h.driver.used_idx(), 1);
  EXPECT_EQ(h.driver.used(0).id, head);
  EXPECT_EQ(h.driver.used(0).len, 0u);
}

TEST(SplitQueue, ConfigurationIsValidated) {
  GuestMemory memory = test::small_guest_memory();
  VirtioDriver driver(memory, 16);
  std::string why;
  auto with = [&](auto change) {
    QueueConfig c = driver.config();
    change(c);
    Result<SplitQueue> q = SplitQueue::create(memory, c, 256, {});
    if (!q) why = q.error();
    return q.ok();
  };
  EXPECT_TRUE(with([](QueueConfig&) {}));
  EXPECT_FALSE(with([](QueueConfig& c) { c.size = 0; }));
  EXPECT_FALSE(with([](QueueConfig& c) { c.size = 24; }));  // not a power of two
  EXPECT_FALSE(with([](QueueConfig& c) { c.size = 512; }));  // above the maximum
  EXPECT_NE(why.find("power of two"), std::string::npos) << why;
  EXPECT_FALSE(with([](QueueConfig& c) { c.desc += 8; }));  // 16-byte alignment
  EXPECT_FALSE(with([](QueueConfig& c) { c.driver += 1; }));
  EXPECT_FALSE(with([](QueueConfig& c) { c.device += 2; }));
  EXPECT_FALSE(with([](QueueConfig& c) { c.device = (4ull << 20) - 64; }));  // used ring leaves RAM
  EXPECT_FALSE(with([](QueueConfig& c) { c.desc = 0xfffffffffffff000ull; }));
  EXPECT_NE(why.find("outside guest memory"), std::string::npos) << why;
}

TEST(SplitQueue, EventIdxSuppressesInterruptsUntilUsedEventIsPassed) {
  QueueHarness h({true, true});
  h.driver.set_used_event(1);  // interrupt when used.idx passes 1, i.e. becomes 2
  h.driver.add({}, {h.driver.alloc(1)});
  h.queue.pop()->complete(1);
  EXPECT_FALSE(h.queue.needs_interrupt());
  h.driver.add({}, {h.driver.alloc(1)});
  h.queue.pop()->complete(1);
  EXPECT_TRUE(h.queue.needs_interrupt());
  EXPECT_FALSE(h.queue.needs_interrupt());  // nothing new
  // After draining, the device asks for a notification at the next entry.
  EXPECT_FALSE(h.queue.pop());
  EXPECT_EQ(h.driver.avail_event(), 2);
}

TEST(SplitQueue, NoInterruptFlagIsHonouredWithoutEventIdx) {
  QueueHarness h;
  h.driver.set_avail_flags(kAvailNoInterrupt);
  h.driver.add({}, {h.driver.alloc(1)});
  h.queue.pop()->complete(1);
  EXPECT_FALSE(h.queue.needs_interrupt());
  h.driver.set_avail_flags(0);
  h.driver.add({}, {h.driver.alloc(1)});
  h.queue.pop()->complete(1);
  EXPECT_TRUE(h.queue.needs_interrupt());
}

TEST(SplitQueue, StateDescriptionShowsBothSidesIndexes) {
  QueueHarness h({true, true});
  h.driver.set_used_event(7);
  h.driver.add({}, {h.driver.alloc(1)});
  h.driver.add({}, {h.driver.alloc(1)});
  h.queue.pop()->complete(1);
  EXPECT_FALSE(h.queue.needs_interrupt());  // used_event 7 not passed
  // The driver added 2, the device took and returned 1 and decided the interrupt at 1.
  EXPECT_EQ(h.queue.describe_state(),
            "size 16, avail.idx 2 (device took 1), used.idx 1 (device pushed 1, interrupt decided at 1), "
            "used_event 7, avail_event 0");
  h.queue.pop()->complete(1);
  EXPECT_FALSE(h.queue.pop());  // drained: asks for a notification at entry 2
  EXPECT_NE(h.queue.describe_state().find("used.idx 2 (device pushed 2, interrupt decided at 1), used_event 7, "
                                          "avail_event 2"),
            std::string::npos)
      << h.queue.describe_state();
}

}  // namespace
}  // namespace ember::virtio
