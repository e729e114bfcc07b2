// The virtio-mmio register file as Linux's virtio_mmio.c programs it, and what
// it does with drivers that skip steps or lie.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "base/util/error.h"
#include "tests/unit/log_capture.h"
#include "tests/unit/mmio_driver.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/mmio_transport.h"
#include "virtio/spec.h"

namespace ember::virtio {
namespace {

class FakeDevice : public VirtioDevice {
 public:
  struct Log {
    int activations = 0, resets = 0, processed = 0;
    uint64_t acked = 0;
  };
  explicit FakeDevice(Log& log) : log_(log) {}
  uint32_t device_type() const override { return 42; }
  uint64_t device_features() const override { return bit(3); }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
  }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  std::vector<uint16_t> queue_max_sizes() const override { return {64}; }
  void activate(std::span<SplitQueue> queues, Interrupt& irq, uint64_t acked) override {
    queues_ = queues;
    irq_ = &irq;
    log_.activations++;
    log_.acked = acked;
  }
  void reset() override { log_.resets++; }
  void process_queue(uint16_t index) override {
    log_.processed++;
    while (auto chain = queues_[index].pop()) chain->complete(0);
    if (queues_[index].needs_interrupt()) irq_->signal_used();
  }

 private:
  Log& log_;
  std::span<SplitQueue> queues_;
  Interrupt* irq_ = nullptr;
};

struct MmioHarness {
  GuestMemory memory = test::small_guest_memory();
  test::VirtioDriver driver{memory, 64};
  EventLoop loop;
  FakeDevice::Log log;
  MmioTransport transport{std::make_unique<FakeDevice>(log), memory, loop, "fake"};

  test::MmioDriver regs{transport};

  uint32_t rd(uint64_t off) { return regs.rd(off); }
  void wr(uint64_t off, uint32_t v) { regs.wr(off, v); }
  void negotiate(uint64_t features = bit(kFeatureVersion1) | bit(kFeatureEventIdx) | bit(kFeatureIndirectDesc)) {
    regs.negotiate(features);
  }
  void setup_queue(const QueueConfig& c) { regs.setup_queue(c); }
  void driver_ok() {
    regs.driver_ok();
    loop.run_once(0);  // the activation hand-off
  }
};

TEST(VirtioMmio, IdentifiesItselfAsVersion2) {
  MmioHarness h;
  EXPECT_EQ(h.rd(mmio::kMagicValue), 0x74726976u);
  EXPECT_EQ(h.rd(mmio::kVersionReg), 2u);
  EXPECT_EQ(h.rd(mmio::kDeviceId), 42u);
  EXPECT_EQ(h.rd(mmio::kVendorIdReg), mmio::kVendorId);
  h.wr(mmio::kDeviceFeaturesSel, 0);
  EXPECT_EQ(h.rd(mmio::kDeviceFeatures), (1u << 3) | (1u << kFeatureIndirectDesc) | (1u << kFeatureEventIdx));
  h.wr(mmio::kDeviceFeaturesSel, 1);
  EXPECT_EQ(h.rd(mmio::kDeviceFeatures), 1u);  // VERSION_1
  h.wr(mmio::kDeviceFeaturesSel, 2);
  EXPECT_EQ(h.rd(mmio::kDeviceFeatures), 0u);
  h.wr(mmio::kQueueSel, 0);
  EXPECT_EQ(h.rd(mmio::kQueueNumMax), 64u);
  h.wr(mmio::kQueueSel, 1);
  EXPECT_EQ(h.rd(mmio::kQueueNumMax), 0u);
}

TEST(VirtioMmio, ConfigSpaceIsReadAtAnyWidth) {
  MmioHarness h;
  uint8_t b[2];
  h.transport.read(mmio::kConfig + 5, b);
  EXPECT_EQ(b[0], 5);
  EXPECT_EQ(b[1], 6);
}

TEST(VirtioMmio, NarrowRegisterAccessIsIgnored) {
  MmioHarness h;
  uint8_t b[2] = {0xff, 0xff};
  h.transport.read(mmio::kMagicValue, b);
  EXPECT_EQ(b[0], 0);
}

TEST(VirtioMmio, FullNegotiationActivatesAndNotificationsAreProcessed) {
  MmioHarness h;
  h.negotiate();
  EXPECT_EQ(h.rd(mmio::kStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  h.setup_queue(h.driver.config());
  EXPECT_EQ(h.rd(mmio::kQueueReady), 1u);
  h.driver_ok();
  EXPECT_EQ(h.log.activations, 1);
  EXPECT_EQ(h.log.acked, bit(kFeatureVersion1) | bit(kFeatureEventIdx) | bit(kFeatureIndirectDesc));

  h.driver.add({}, {h.driver.alloc(8)});
  h.wr(mmio::kQueueNotify, 0);  // KVM's ioeventfd does this write's job in a real VM
  h.loop.run_once(0);
  EXPECT_EQ(h.driver.used_idx(), 1);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus) & mmio::kInterruptUsedBuffer, mmio::kInterruptUsedBuffer);
  h.wr(mmio::kInterruptAck, mmio::kInterruptUsedBuffer);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus), 0u);
}

// 4.2.2 ConfigGeneration and InterruptStatus bit 1: a device whose config space changed
// (a drive's file swapped) makes the driver re-read it; before DRIVER_OK only the
// generation moves.
TEST(VirtioMmio, ConfigChangeBumpsTheGenerationAndRaisesTheConfigInterruptOnceActive) {
  MmioHarness h;
  int changes = 0;
  h.transport.update_config([&] { ++changes; });
  EXPECT_EQ(changes, 1);
  EXPECT_EQ(h.rd(mmio::kConfigGeneration), 1u);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus), 0u);
  EXPECT_EQ(h.transport.interrupt().raised(), 0u);

  h.negotiate();
  h.setup_queue(h.driver.config());
  h.driver_ok();
  h.transport.update_config([&] { ++changes; });
  EXPECT_EQ(h.rd(mmio::kConfigGeneration), 2u);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus), mmio::kInterruptConfigChange);
  EXPECT_EQ(h.transport.interrupt().raised(), 1u);
  h.wr(mmio::kInterruptAck, mmio::kInterruptConfigChange);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus), 0u);

  // A change that fails (throws) is no change: no new generation, no interrupt.
  EXPECT_THROW(h.transport.update_config([] { fail("refused"); }), Error);
  EXPECT_EQ(h.rd(mmio::kConfigGeneration), 2u);
  EXPECT_EQ(h.transport.interrupt().raised(), 1u);
}

TEST(VirtioMmio, StatusMustFollowTheSpecSequence) {
  MmioHarness h;
  h.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver);  // skipped ACKNOWLEDGE
  EXPECT_EQ(h.rd(mmio::kStatus), 0u);
  h.wr(mmio::kStatus, kStatusAcknowledge);
  h.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriverOk);  // skipped DRIVER and FEATURES_OK
  EXPECT_EQ(h.rd(mmio::kStatus), kStatusAcknowledge);
  h.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(h.rd(mmio::kStatus), kStatusAcknowledge | kStatusDriver);
  h.wr(mmio::kStatus, kStatusAcknowledge);  // clearing a bit is not a transition
  EXPECT_EQ(h.rd(mmio::kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(h.log.activations, 0);
}

TEST(VirtioMmio, FeaturesOkIsRefusedWithoutVersion1OrWithUnofferedFeatures) {
  MmioHarness h;
  h.negotiate(bit(kFeatureEventIdx));  // a legacy driver
  EXPECT_EQ(h.rd(mmio::kStatus) & kStatusFeaturesOk, 0u);
  h.negotiate(bit(kFeatureVersion1) | bit(7));  // bit 7 was not offered
  EXPECT_EQ(h.rd(mmio::kStatus) & kStatusFeaturesOk, 0u);
  h.negotiate(bit(kFeatureVersion1));
  EXPECT_NE(h.rd(mmio::kStatus) & kStatusFeaturesOk, 0u);
}

TEST(VirtioMmio, BadQueueAtDriverOkSetsNeedsResetWithAConfigInterrupt) {
  MmioHarness h;
  h.negotiate();
  QueueConfig c = h.driver.config();
  c.size = 48;  // not a power of two
  h.setup_queue(c);
  h.driver_ok();
  EXPECT_EQ(h.log.activations, 0);
  EXPECT_NE(h.rd(mmio::kStatus) & kStatusNeedsReset, 0u);
  EXPECT_NE(h.rd(mmio::kInterruptStatus) & mmio::kInterruptConfigChange, 0u);
}

TEST(VirtioMmio, QueueNotReadyAtDriverOkSetsNeedsReset) {
  MmioHarness h;
  h.negotiate();
  h.driver_ok();
  EXPECT_NE(h.rd(mmio::kStatus) & kStatusNeedsReset, 0u);
}

TEST(VirtioMmio, BrokenRingSetsNeedsResetAndResetRecovers) {
  MmioHarness h;
  h.negotiate();
  h.setup_queue(h.driver.config());
  h.driver_ok();
  h.driver.set_avail_idx(1000);
  h.wr(mmio::kQueueNotify, 0);
  h.loop.run_once(0);
  EXPECT_NE(h.rd(mmio::kStatus) & kStatusNeedsReset, 0u);
  EXPECT_NE(h.rd(mmio::kInterruptStatus) & mmio::kInterruptConfigChange, 0u);
  h.wr(mmio::kStatus, 0);
  EXPECT_EQ(h.log.resets, 1);
  EXPECT_EQ(h.rd(mmio::kStatus), 0u);
  EXPECT_EQ(h.rd(mmio::kQueueReady), 0u);
  EXPECT_EQ(h.rd(mmio::kInterruptStatus), 0u);
}

// Found by mmio_transport_fuzz: a reset before the event thread took the activation
// left it pending, so the second activation replaced the queues of a live device (with
// virtio-blk on io_uring, a completion then wrote into the freed queue).
TEST(VirtioMmio, ResetBeforeTheActivationRanStillResetsTheDevice) {
  MmioHarness h;
  h.negotiate();
  h.setup_queue(h.driver.config());
  h.regs.driver_ok();  // the event thread has not run the hand-off yet
  h.wr(mmio::kStatus, 0);
  EXPECT_EQ(h.log.activations, 1);
  EXPECT_EQ(h.log.resets, 1);
  h.negotiate();
  h.setup_queue(h.driver.config());
  h.driver_ok();
  EXPECT_EQ(h.log.activations, 2);
  EXPECT_EQ(h.log.resets, 1);
}

TEST(VirtioMmio, QueueRegistersAreFrozenAfterDriverOk) {
  MmioHarness h;
  h.negotiate();
  h.setup_queue(h.driver.config());
  h.driver_ok();
  h.wr(mmio::kQueueReady, 0);
  h.wr(mmio::kQueueNum, 2);
  EXPECT_EQ(h.rd(mmio::kQueueReady), 1u);
}

TEST(VirtioMmio, NotificationForAMissingQueueIsIgnored) {
  MmioHarness h;
  h.negotiate();
  h.setup_queue(h.driver.config());
  h.driver_ok();
  h.wr(mmio::kQueueNotify, 7);
  h.loop.run_once(0);
  EXPECT_EQ(h.log.processed, 1);  // only the pass at activation
}

// What a guest can make ember log goes through the rate limiter: a burst a second,
// then one line counting what was dropped.
TEST(VirtioMmio, GuestLoopingOnFailedAndBadNotificationsCannotFloodTheLog) {
  MmioHarness h;
  h.negotiate();
  test::LogCapture capture;
  // The limiter's window is the steady clock's second: start a fresh one, so warnings of
  // earlier tests in this process do not take this test's burst.
  auto now = std::chrono::steady_clock::now().time_since_epoch();
  std::this_thread::sleep_for(std::chrono::seconds(1) - (now % std::chrono::seconds(1)));
  for (int i = 0; i < 100000; ++i) {
    h.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFailed);
    h.wr(mmio::kQueueNotify, 65535);
  }
  EXPECT_LE(capture.lines(), 40u) << capture.text().substr(0, 2000);
  EXPECT_NE(capture.text().find("status FAILED"), std::string::npos);
}

}  // namespace
}  // namespace ember::virtio
