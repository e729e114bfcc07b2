// virtio-blk request handling on a temporary file, with both I/O engines:
// data in and out, flush, GET_ID, status codes, and requests a guest got wrong.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <functional>

#include "base/util/error.h"
#include "tests/unit/blk_harness.h"
#include "tests/unit/child_process.h"
#include "tests/unit/fake_clock.h"
#include "tests/unit/mmio_driver.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/blk/block_device.h"
#include "virtio/mmio_transport.h"

namespace ember::virtio::blk {
namespace {

namespace fs = std::filesystem;
using test::Buffer;
using test::BlkHarness;
using test::Engine;
using test::read_file;
using test::temp_file;

class BlkEngines : public ::testing::TestWithParam<Engine> {};

TEST_P(BlkEngines, ReadReturnsTheFileContents) {
  BlkHarness h(GetParam());
  { std::fstream f(h.path, std::ios::in | std::ios::out | std::ios::binary); f.seekp(1024); f << "hello"; }
  Buffer a = h.driver.alloc(512), b = h.driver.alloc(512);
  uint32_t used = 0;
  EXPECT_EQ(h.request(kTypeIn, 1, {}, {a, b}, &used), kStatusOk);
  EXPECT_EQ(used, 1025u);
  EXPECT_EQ(h.driver.bytes(a)[0], 'd');
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h.driver.bytes(b).data()), 5), "hello");
  EXPECT_GT(h.interrupt.raised(), 0u);
}

TEST_P(BlkEngines, WriteReachesTheFileAndFlushSucceeds) {
  BlkHarness h(GetParam());
  Buffer data = h.driver.alloc(1024, 'w');
  EXPECT_EQ(h.request(kTypeOut, 2, {data}, {}), kStatusOk);
  EXPECT_EQ(h.request(kTypeFlush, 0, {}, {}), kStatusOk);
  std::string contents = read_file(h.path);
  EXPECT_EQ(contents.substr(1024, 1024), std::string(1024, 'w'));
  EXPECT_EQ(contents[1023], 'd');
  EXPECT_EQ(contents[2048], 'd');
}

TEST_P(BlkEngines, ManyRequestsInOneNotification) {
  BlkHarness h(GetParam());
  std::vector<Buffer> statuses;
  for (int i = 0; i < 8; ++i) {
    Buffer header = h.driver.alloc(16);
    RequestHeader hdr{kTypeIn, 0, static_cast<uint64_t>(i)};
    std::memcpy(h.driver.bytes(header).data(), &hdr, 16);
    statuses.push_back(h.driver.alloc(1, 0xee));
    h.driver.add({header}, {h.driver.alloc(512), statuses.back()}, true);  // 8 chains of 3 exceed 16 descriptors
  }
  h.device->process_queue(0);
  h.wait_used(8);
  for (const Buffer& s : statuses) EXPECT_EQ(h.driver.bytes(s)[0], kStatusOk);
}

TEST_P(BlkEngines, ReadOnlyDriveRefusesWrites) {
  BlkHarness h(GetParam(), true);
  EXPECT_EQ(h.device->device_features() & bit(kFeatureRo), bit(kFeatureRo));
  EXPECT_EQ(h.request(kTypeOut, 0, {h.driver.alloc(512, 'x')}, {}), kStatusIoErr);
  EXPECT_EQ(read_file(h.path)[0], 'd');
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {h.driver.alloc(512)}), kStatusOk);
}

TEST_P(BlkEngines, SectorsBeyondTheCapacityAreIoErrors) {
  BlkHarness h(GetParam(), false, 8192);  // 16 sectors
  EXPECT_EQ(h.request(kTypeIn, 15, {}, {h.driver.alloc(512)}), kStatusOk);
  EXPECT_EQ(h.request(kTypeIn, 15, {}, {h.driver.alloc(1024)}), kStatusIoErr);
  EXPECT_EQ(h.request(kTypeIn, 16, {}, {h.driver.alloc(512)}), kStatusIoErr);
  EXPECT_EQ(h.request(kTypeOut, UINT64_MAX, {h.driver.alloc(512)}, {}), kStatusIoErr);  // overflow
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {h.driver.alloc(100)}), kStatusIoErr);  // not whole sectors
}

TEST_P(BlkEngines, TruncatedBackingFileGivesIoErrorsNotACrash) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  fs::resize_file(h.path, 4096);
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {h.driver.alloc(512)}), kStatusOk);
  EXPECT_EQ(h.request(kTypeIn, 64, {}, {h.driver.alloc(4096)}), kStatusIoErr);  // past the new end
}

TEST_P(BlkEngines, GetIdReturnsTheDriveId) {
  BlkHarness h(GetParam(), false, 4096, "rootfs");
  Buffer id = h.driver.alloc(20, 0xff);
  uint32_t used = 0;
  EXPECT_EQ(h.request(kTypeGetId, 0, {}, {id}, &used), kStatusOk);
  EXPECT_EQ(used, 21u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h.driver.bytes(id).data())), "rootfs");
  EXPECT_EQ(h.driver.bytes(id)[19], 0);
}

TEST_P(BlkEngines, UnknownRequestTypeIsUnsupported) {
  BlkHarness h(GetParam());
  EXPECT_EQ(h.request(14 /* SECURE_ERASE, not offered */, 0, {}, {}), kStatusUnsupported);
  EXPECT_EQ(h.request(0x1234, 0, {}, {}), kStatusUnsupported);
}

INSTANTIATE_TEST_SUITE_P(Blk, BlkEngines, ::testing::Values(Engine::Sync, Engine::IoUring),
                         test::engine_name);

TEST(Blk, RequestWithoutStatusByteIsReturnedEmpty) {
  BlkHarness h(Engine::Sync);
  Buffer header = h.driver.alloc(16);
  h.driver.add({header}, {});
  h.device->process_queue(0);
  ASSERT_EQ(h.driver.used_idx(), 1);
  EXPECT_EQ(h.driver.used(0).len, 0u);
}

TEST(Blk, ShortHeaderIsAnIoError) {
  BlkHarness h(Engine::Sync);
  Buffer status = h.driver.alloc(1, 0xee);
  h.driver.add({h.driver.alloc(8)}, {status});
  h.device->process_queue(0);
  ASSERT_EQ(h.driver.used_idx(), 1);
  EXPECT_EQ(h.driver.bytes(status)[0], kStatusIoErr);
}

TEST(Blk, HeaderSplitAcrossDescriptorsIsParsed) {
  BlkHarness h(Engine::Sync);
  Buffer a = h.driver.alloc(4), b = h.driver.alloc(12);
  RequestHeader hdr{kTypeIn, 0, 3};
  std::memcpy(h.driver.bytes(a).data(), &hdr, 4);
  std::memcpy(h.driver.bytes(b).data(), reinterpret_cast<uint8_t*>(&hdr) + 4, 12);
  Buffer status = h.driver.alloc(1, 0xee);
  h.driver.add({a, b}, {h.driver.alloc(512), status});
  h.device->process_queue(0);
  EXPECT_EQ(h.driver.bytes(status)[0], kStatusOk);
}

TEST(Blk, ConfigSpaceHasCapacitySegMaxAndBlockSize) {
  BlkHarness h(Engine::Sync, false, 1 << 20);
  uint8_t config[24] = {};
  h.device->read_config(0, config);
  uint64_t capacity;
  uint32_t seg_max, blk_size;
  std::memcpy(&capacity, config, 8);
  std::memcpy(&seg_max, config + 12, 4);
  std::memcpy(&blk_size, config + 20, 4);
  EXPECT_EQ(capacity, 2048u);
  EXPECT_EQ(seg_max, 14u);
  EXPECT_EQ(blk_size, 512u);
  uint64_t f = h.device->device_features();
  EXPECT_EQ(f, bit(kFeatureSegMax) | bit(kFeatureBlkSize) | bit(kFeatureFlush) | bit(kFeatureDiscard) |
                   bit(kFeatureWriteZeroes));
}

TEST(Blk, MissingBackingFileIsASetupError) {
  EXPECT_THROW(BlockDevice(BlockDeviceOptions{"x", "/nonexistent/disk.img"}, nullptr), Error);
}

// open() of a FIFO with no writer would block forever: refused at once, by type.
TEST(Blk, FifoAsBackingFileIsRefusedWithoutWaiting) {
  test::TempFifo fifo;
  int rc = test::run_in_child(
      [&] {
        try {
          BlockDevice(BlockDeviceOptions{"x", fifo.path}, nullptr);
        } catch (const Error& e) {
          return std::string(e.what()).find("a FIFO") != std::string::npos ? 0 : 1;
        }
        return 2;
      },
      5000);
  EXPECT_EQ(rc, 0) << "1: wrong message, 2: accepted, -1: blocked in open()";
}

// PATCH /drives with path_on_host: the device switches to another file. Later requests
// reach the new file and see its size; the old file is left as it was.
TEST_P(BlkEngines, ReplacedBackingFileServesLaterRequestsWithItsSize) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  fs::path other = temp_file("other", (1 << 20) + 100, 'b');  // not whole sectors: the tail is not seen
  h.device->replace_backing_file(open_backing("disk0", other.string(), false), other.string());
  EXPECT_EQ(h.device->capacity_sectors(), 2048u);
  EXPECT_EQ(h.device->path(), other.string());
  // The config space follows only when published (under the transport's config lock).
  uint64_t capacity = 0;
  h.device->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&capacity), 8));
  EXPECT_EQ(capacity, 128u);
  h.device->publish_capacity();
  h.device->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&capacity), 8));
  EXPECT_EQ(capacity, 2048u);

  Buffer sector = h.driver.alloc(512);
  EXPECT_EQ(h.request(kTypeIn, 2000, {}, {sector}), kStatusOk);  // beyond the old file's end
  EXPECT_EQ(h.driver.bytes(sector)[0], 'b');
  Buffer data = h.driver.alloc(512, 'w');
  EXPECT_EQ(h.request(kTypeOut, 0, {data}, {}), kStatusOk);
  EXPECT_EQ(h.request(kTypeFlush, 0, {}, {}), kStatusOk);
  EXPECT_EQ(read_file(other).substr(0, 512), std::string(512, 'w'));
  EXPECT_EQ(read_file(h.path), std::string(64 * 1024, 'd'));
  Buffer id = h.driver.alloc(20);
  EXPECT_EQ(h.request(kTypeGetId, 0, {}, {id}), kStatusOk);  // the drive keeps its id
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h.driver.bytes(id).data()), 5), "disk0");
  fs::remove(other);
}

// A smaller file: requests past its end are refused from now on, as for any drive.
TEST_P(BlkEngines, ReplacingWithASmallerFileShrinksTheCapacity) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  fs::path other = temp_file("small", 4096, 's');
  h.device->replace_backing_file(open_backing("disk0", other.string(), false), other.string());
  EXPECT_EQ(h.device->capacity_sectors(), 8u);
  Buffer sector = h.driver.alloc(512);
  EXPECT_EQ(h.request(kTypeIn, 8, {}, {sector}), kStatusIoErr);
  EXPECT_EQ(h.request(kTypeIn, 7, {}, {sector}), kStatusOk);
  EXPECT_EQ(h.driver.bytes(sector)[0], 's');
  fs::remove(other);
}

// A request already submitted when the swap comes completes against the old file, and is
// in the used ring before the swap returns (the old file closes only after it).
TEST_P(BlkEngines, RequestInFlightCompletesOnTheOldFileBeforeTheSwap) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  fs::path other = temp_file("next", 64 * 1024, 'n');
  Buffer header = h.driver.alloc(16);
  RequestHeader rh{kTypeIn, 0, 3};
  std::memcpy(h.driver.bytes(header).data(), &rh, 16);
  Buffer sector = h.driver.alloc(512), status = h.driver.alloc(1, 0xee);
  h.driver.add({header}, {sector, status});
  h.device->process_queue(0);  // io_uring: submitted, not reaped
  h.device->replace_backing_file(open_backing("disk0", other.string(), false), other.string());
  EXPECT_EQ(h.driver.used_idx(), 1);  // no reap ran: the swap itself waited for it
  EXPECT_EQ(h.driver.bytes(status)[0], kStatusOk);
  EXPECT_EQ(h.driver.bytes(sector)[0], 'd');
  EXPECT_EQ(h.request(kTypeIn, 3, {}, {sector}), kStatusOk);
  EXPECT_EQ(h.driver.bytes(sector)[0], 'n');
  fs::remove(other);
}

// Through the transport, as VirtioDevices does it: capacity, generation and the config
// change interrupt that makes Linux's virtio_blk re-read the capacity.
TEST(Blk, ReplacedFileIsAnnouncedThroughTheTransport) {
  GuestMemory memory = test::small_guest_memory();
  test::VirtioDriver driver{memory, 16};
  EventLoop loop;
  fs::path first = temp_file("first", 64 * 1024, 'f'), second = temp_file("second", 256 * 1024, 's');
  auto owned = std::make_unique<BlockDevice>(BlockDeviceOptions{"disk0", first.string(), false, false, 16}, nullptr);
  BlockDevice* device = owned.get();
  MmioTransport transport(std::move(owned), memory, loop, "drive 'disk0'");
  test::MmioDriver regs(transport);
  regs.negotiate();
  regs.setup_queue(driver.config());
  regs.driver_ok();
  loop.run_once(0);
  auto capacity = [&] { return uint64_t{regs.rd(mmio::kConfig)} | uint64_t{regs.rd(mmio::kConfig + 4)} << 32; };
  EXPECT_EQ(capacity(), 128u);
  uint32_t generation = regs.rd(mmio::kConfigGeneration);

  device->replace_backing_file(open_backing("disk0", second.string(), false), second.string());
  transport.update_config([&] { device->publish_capacity(); });
  EXPECT_EQ(capacity(), 512u);
  EXPECT_EQ(regs.rd(mmio::kConfigGeneration), generation + 1);
  EXPECT_EQ(regs.rd(mmio::kInterruptStatus) & mmio::kInterruptConfigChange, mmio::kInterruptConfigChange);

  // A snapshot of the swapped drive restores onto the new file's size, not the old one's.
  snapshot::StateWriter saved;
  device->save_state(saved);
  BlockDevice on_second(BlockDeviceOptions{"disk0", second.string(), false, false, 16}, nullptr);
  snapshot::StateReader in(saved.data(), "test");
  EXPECT_NO_THROW(on_second.restore_state(in));
  BlockDevice on_first(BlockDeviceOptions{"disk0", first.string(), false, false, 16}, nullptr);
  snapshot::StateReader again(saved.data(), "test");
  EXPECT_THROW(on_first.restore_state(again), Error);
  transport.quiesce();
  fs::remove(first);
  fs::remove(second);
}

// Refused the way a PUT is: the drive names itself, the path and the reason.
TEST(Blk, ABackingFileOfTheWrongKindIsRefusedNamingDriveAndPath) {
  fs::path dir = fs::temp_directory_path();
  try {
    open_backing("disk0", dir.string(), true);
    ADD_FAILURE() << "a directory was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "drive 'disk0' at '" + dir.string() +
                                         "' is neither a regular file nor a block device (it is a directory)");
  }
  try {
    open_backing("disk0", "/nonexistent/disk.img", false);
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open drive 'disk0' at '/nonexistent/disk.img': No such file or directory");
  }
}

// Rate limiting. A fake clock decides how many tokens there are; the loop's timerfd,
// armed for the limiter's wait (a few real ms here), decides when the device looks again.
using std::chrono::milliseconds;
using test::FakeClock;
using test::run_loop;

// Reads of one sector each, sector i by request i, in one notification; sector i of the
// disk is filled with 'a' + i, so each answer shows which request it belongs to.
struct Reads {
  std::vector<uint16_t> heads;
  std::vector<Buffer> data, status;
};
Reads queue_reads(BlkHarness& h, int count, uint32_t sectors = 1) {
  {
    std::fstream f(h.path, std::ios::in | std::ios::out | std::ios::binary);
    for (int i = 0; i < 8; ++i) f << std::string(512, static_cast<char>('a' + i));
  }
  Reads r;
  for (int i = 0; i < count; ++i) {
    Buffer header = h.driver.alloc(16);
    RequestHeader hdr{kTypeIn, 0, static_cast<uint64_t>(i) * sectors};
    std::memcpy(h.driver.bytes(header).data(), &hdr, 16);
    r.data.push_back(h.driver.alloc(512 * sectors));
    r.status.push_back(h.driver.alloc(1, 0xee));
    r.heads.push_back(h.driver.add({header}, {r.data.back(), r.status.back()}, true));
  }
  h.device->process_queue(0);
  return r;
}

// Used entries [first, last) are exactly requests [first, last) (io_uring may complete
// requests that were in flight together in either order), each with its own sector.
void expect_answered(BlkHarness& h, const Reads& r, uint16_t first, uint16_t last) {
  std::set<uint32_t> used, expected;
  for (uint16_t i = first; i < last; ++i) {
    used.insert(h.driver.used(i).id);
    expected.insert(r.heads[i]);
    EXPECT_EQ(h.driver.bytes(r.status[i])[0], kStatusOk) << i;
    EXPECT_EQ(h.driver.bytes(r.data[i])[0], 'a' + i) << i;
  }
  EXPECT_EQ(used, expected);
}

TEST_P(BlkEngines, OpsLimitHoldsRequestsUntilItsTimerAndLosesOrReordersNone) {
  FakeClock clock;
  BlkHarness h(GetParam(), false, 64 * 1024, "disk0", [&](BlockDeviceOptions& o) {
    o.rate_limiter.ops = TokenBucketConfig{2, 0, 20};  // 2 requests, then one per 10 ms
    o.clock = clock.get();
  });
  Reads r = queue_reads(h, 5);
  h.wait_used(2);
  EXPECT_EQ(h.metric("rate_limiter_throttled_events"), 1u);
  EXPECT_NE(h.device->describe_state().find("waits for the rate limiter"), std::string::npos);
  // The timer expires (real time) but no time passed for the limiter: still held.
  run_loop(h.loop, 50);
  h.wait_used(2);
  clock.now += milliseconds(10);  // one token
  run_loop(h.loop, 1000, [&] { return h.driver.used_idx() == 3; });
  h.wait_used(3);
  EXPECT_EQ(h.metric("rate_limiter_throttled_events"), 2u);  // request 4 waits now
  clock.now += milliseconds(30);  // the bucket is full again: 2 tokens, not 3
  run_loop(h.loop, 1000, [&] { return h.driver.used_idx() == 5; });
  h.wait_used(5);
  expect_answered(h, r, 0, 2);
  expect_answered(h, r, 2, 3);
  expect_answered(h, r, 3, 5);
  EXPECT_EQ(h.device->describe_state(), "");
}

TEST(BlkRateLimit, BandwidthChargesEachRequestsDataBytes) {
  FakeClock clock;
  BlkHarness h(Engine::Sync, false, 64 * 1024, "disk0", [&](BlockDeviceOptions& o) {
    o.rate_limiter.bandwidth = TokenBucketConfig{1024, 512, 100};  // 1 KiB per 100 ms, 512 bytes extra once
    o.clock = clock.get();
  });
  Reads r = queue_reads(h, 4, 1);  // 512 bytes each: the burst, twice the bucket, then 50 ms
  EXPECT_EQ(h.driver.used_idx(), 3);
  clock.now += milliseconds(49);
  run_loop(h.loop, 100);
  EXPECT_EQ(h.driver.used_idx(), 3);
  clock.now += milliseconds(1);
  run_loop(h.loop, 1000, [&] { return h.driver.used_idx() == 4; });
  EXPECT_EQ(h.driver.used_idx(), 4);
  expect_answered(h, r, 0, 4);
}

TEST(BlkRateLimit, UpdateAppliesToTheHeldRequestAndLaterOnes) {
  FakeClock clock;
  BlkHarness h(Engine::Sync, false, 64 * 1024, "disk0", [&](BlockDeviceOptions& o) {
    o.rate_limiter.ops = TokenBucketConfig{1, 0, 3'600'000};  // one request an hour
    o.clock = clock.get();
  });
  Reads r = queue_reads(h, 3);
  EXPECT_EQ(h.driver.used_idx(), 1);
  RateLimiterConfig off;
  off.ops = TokenBucketConfig{};  // PATCH with size 0: the bucket is turned off
  h.device->update_rate_limiter(off);
  run_loop(h.loop, 1000, [&] { return h.driver.used_idx() == 3; });  // on the event thread
  EXPECT_EQ(h.driver.used_idx(), 3);
  expect_answered(h, r, 0, 3);
  RateLimiterConfig again;
  again.ops = TokenBucketConfig{1, 0, 3'600'000};  // a new bucket starts full
  h.device->update_rate_limiter(again);
  for (int i = 0; i < 2; ++i) {
    Buffer header = h.driver.alloc(16);
    RequestHeader hdr{kTypeFlush, 0, 0};
    std::memcpy(h.driver.bytes(header).data(), &hdr, 16);
    h.driver.add({header}, {h.driver.alloc(1, 0xee)});
  }
  h.device->process_queue(0);
  EXPECT_EQ(h.driver.used_idx(), 4);
  EXPECT_EQ(h.metric("rate_limiter_throttled_events"), 2u);
}

TEST(BlkRateLimit, ResetForgetsTheHeldRequestAndTheTimerFindsAnIdleDevice) {
  FakeClock clock;
  BlkHarness h(Engine::Sync, false, 64 * 1024, "disk0", [&](BlockDeviceOptions& o) {
    o.rate_limiter.ops = TokenBucketConfig{1, 0, 20};
    o.clock = clock.get();
  });
  queue_reads(h, 2);
  EXPECT_EQ(h.driver.used_idx(), 1);
  h.device->reset();
  clock.now += milliseconds(100);
  run_loop(h.loop, 100);
  EXPECT_EQ(h.driver.used_idx(), 1);  // the driver owns its ring again: nothing is written
}

// Interrupt coalescing (virtio/interrupt_coalescing.h) on the device: the fake clock sets
// the guest's pace, the loop's timerfd ends a hold (armed for a few real µs here).
using std::chrono::microseconds;

struct CoalescingHarness : BlkHarness {
  FakeClock& clock;
  explicit CoalescingHarness(FakeClock& c)
      : BlkHarness(Engine::Sync, false, 64 * 1024, "disk0", [&](BlockDeviceOptions& o) { o.clock = c.get(); }),
        clock(c) {}
  // One request at `t` µs, with used_event set as the driver would: `wants` false while
  // its handler is still busy (no interrupt wanted for this entry).
  void read_at(int64_t t, bool wants) {
    clock.now = microseconds(t);
    driver.set_used_event(wants ? driver.used_idx() : static_cast<uint16_t>(driver.used_idx() + 100));
    queue_reads(*this, 1);
  }
  // Three requests 10 µs apart, the first two wanting no interrupt: the pace is 10 µs and
  // the third completion's interrupt is held for a window of 20, from 20 µs.
  void start_hold() {
    read_at(0, false);
    read_at(10, false);
    read_at(20, true);
    ASSERT_EQ(driver.used_idx(), 3);
    ASSERT_EQ(interrupt.raised(), 0u);
  }
};

TEST(BlkInterrupts, RequestsAddedDuringAHoldShareOneInterruptWhenTheGuestStops) {
  FakeClock clock;
  CoalescingHarness h(clock);
  h.start_hold();
  h.read_at(25, true);
  h.read_at(35, true);
  EXPECT_EQ(h.driver.used_idx(), 5);
  EXPECT_EQ(h.interrupt.raised(), 0u);  // held: the guest is still adding
  clock.now = microseconds(55);         // quiet for a window since the last one
  run_loop(h.loop, 1000, [&] { return h.interrupt.raised() > 0; });
  EXPECT_EQ(h.interrupt.raised(), 1u);
  run_loop(h.loop, 20);
  EXPECT_EQ(h.interrupt.raised(), 1u);  // one for the three it wanted
}

TEST(BlkInterrupts, AHoldEndsOnlyOnceTheGuestWasQuietForAWindow) {
  FakeClock clock;
  CoalescingHarness h(clock);
  h.start_hold();
  clock.now = microseconds(39);  // the window (20 µs) has not passed: the expiry holds on
  run_loop(h.loop, 20);
  EXPECT_EQ(h.interrupt.raised(), 0u);
  clock.now = microseconds(40);
  run_loop(h.loop, 1000, [&] { return h.interrupt.raised() > 0; });
  EXPECT_EQ(h.interrupt.raised(), 1u);
}

TEST(BlkInterrupts, AGuestWaitingForEachRequestIsInterruptedForEachAtOnce) {
  FakeClock clock;
  CoalescingHarness h(clock);
  for (int i = 0; i < 10; ++i) {
    h.read_at(i * 30, true);
    EXPECT_EQ(h.interrupt.raised(), i + 1u) << i;  // without running the loop: no timer
  }
}

TEST(BlkInterrupts, DrainSendsAHeldInterrupt) {
  FakeClock clock;
  CoalescingHarness h(clock);
  h.start_hold();
  h.device->drain();  // before a pause or snapshot: nothing is left for later
  EXPECT_EQ(h.interrupt.raised(), 1u);
  clock.now = microseconds(1000);
  run_loop(h.loop, 20);
  EXPECT_EQ(h.interrupt.raised(), 1u);
}

TEST(BlkInterrupts, ResetForgetsAHoldAndItsTimerFindsAnIdleDevice) {
  FakeClock clock;
  CoalescingHarness h(clock);
  h.start_hold();
  h.device->reset();
  clock.now = microseconds(1000);
  run_loop(h.loop, 20);
  EXPECT_EQ(h.interrupt.raised(), 0u);  // the driver owns its ring again
}

TEST(BlkRateLimit, ALimiterNeedsTheEventLoop) {
  fs::path p = temp_file("noloop", 4096, 'd');
  BlockDeviceOptions o{"x", p.string()};
  o.rate_limiter.ops = TokenBucketConfig{1, 0, 1000};
  EXPECT_THROW(BlockDevice(o, nullptr), Error);
  fs::remove(p);
}

}  // namespace
}  // namespace ember::virtio::blk
