// Address bus, 8250 UART and i8042 behaviour as a Linux driver sees it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/bus.h"
#include "base/util/error.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

namespace ember {
namespace {

class Recorder : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override { data[0] = static_cast<uint8_t>(offset); }
  void write(uint64_t offset, std::span<const uint8_t> data) override { last = {offset, data[0]}; }
  std::pair<uint64_t, uint8_t> last{};
};

TEST(Bus, DispatchesOffsetsAndRejectsOverlap) {
  Bus bus("test");
  auto a = std::make_unique<Recorder>();
  auto b = std::make_unique<Recorder>();
  bus.insert(*a, 0x100, 8, "a");
  bus.insert(*b, 0x200, 0x10, "b");
  EXPECT_THROW(bus.insert(*b, 0x104, 8, "c"), Error);
  EXPECT_THROW(bus.insert(*b, 0xfc, 8, "d"), Error);
  EXPECT_THROW(bus.insert(*b, UINT64_MAX - 2, 8, "wrap"), Error);
  EXPECT_THROW(bus.insert(*b, 0x300, 0, "empty"), Error);
  uint8_t v[1];
  ASSERT_TRUE(bus.read(0x103, v));
  EXPECT_EQ(v[0], 3);
  uint8_t w[1] = {9};
  ASSERT_TRUE(bus.write(0x20f, w));
  EXPECT_EQ(b->last.first, 0xfu);
  EXPECT_FALSE(bus.read(0x108, v));
  EXPECT_FALSE(bus.read(0x1ff, v));
  uint8_t wide[4];
  EXPECT_FALSE(bus.read(0x106, wide));  // crosses the end of device a
}

struct SerialHarness {
  int pipefd[2];
  int irqs = 0;
  std::vector<std::string> lines;
  std::unique_ptr<ConsoleOutput> console;
  std::unique_ptr<Serial> serial;
  SerialHarness() {
    EXPECT_EQ(::pipe(pipefd), 0);
    console = std::make_unique<ConsoleOutput>(pipefd[1]);
    serial = std::make_unique<Serial>(
        console.get(), [this] { ++irqs; }, [this](const std::string& l) { lines.push_back(l); });
  }
  ~SerialHarness() {
    serial.reset();
    console.reset();
    ::close(pipefd[0]);
    ::close(pipefd[1]);
  }
  uint8_t in(uint64_t off) {
    uint8_t v;
    serial->read(off, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out(uint64_t off, uint8_t v) { serial->write(off, std::span<const uint8_t>(&v, 1)); }
};

TEST(Serial, TransmitsBytesAndSplitsLines) {
  SerialHarness h;
  for (char c : std::string("hi\r\nthere\n")) h.out(0, static_cast<uint8_t>(c));
  ASSERT_TRUE(h.console->drain(std::chrono::seconds(5)));
  char buf[16] = {};
  ASSERT_EQ(::read(h.pipefd[0], buf, sizeof(buf)), 10);
  EXPECT_EQ(std::string(buf, 10), "hi\r\nthere\n");
  ASSERT_EQ(h.lines.size(), 2u);
  EXPECT_EQ(h.lines[0], "hi");
  EXPECT_EQ(h.lines[1], "there");
  EXPECT_EQ(h.in(5) & 0x60, 0x60);  // THR empty, transmitter empty
}

// A guest console nobody reads (a full pipe) stalls no vCPU: bytes beyond the bound are
// dropped and counted, and stopping does not wait on the reader forever.
TEST(ConsoleOutput, OutputNobodyReadsNeitherBlocksTheWriterNorGrowsPastItsBound) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto start = std::chrono::steady_clock::now();
  {
    ConsoleOutput out(fds[1]);
    constexpr size_t kBytes = 4 << 20;
    for (size_t i = 0; i < kBytes; ++i) out.put('x');
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    // What the pipe took plus the buffer; the rest was dropped.
    EXPECT_GE(out.dropped(), kBytes - ConsoleOutput::kCapacity - (1 << 20));
    EXPECT_FALSE(out.drain(std::chrono::milliseconds(200)));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3) + ConsoleOutput::kDrainTimeout);
  ::close(fds[0]);
  ::close(fds[1]);
}

// Firecracker's serial rate limiter: bytes beyond the token bucket are dropped silently and
// counted apart from those a full output lost; the bucket refills with time.
TEST(ConsoleOutput, RateLimiterPassesTheBucketAndCountsTheRest) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::chrono::nanoseconds now{0};
  {
    virtio::TokenBucketConfig bucket{.size = 1000, .one_time_burst = 24, .refill_time_ms = 1000};
    ConsoleOutput out(fds[1], bucket, [&] { return now; });
    for (int i = 0; i < 5000; ++i) out.put('a');
    now += std::chrono::milliseconds(500);  // half the bucket back
    for (int i = 0; i < 1000; ++i) out.put('b');
    ASSERT_TRUE(out.drain(std::chrono::seconds(5)));
    EXPECT_EQ(out.rate_limited(), 5000u - 1024 + 1000 - 500);
    EXPECT_EQ(out.dropped(), 0u);
  }
  std::string got(4096, '\0');
  ssize_t n = ::read(fds[0], got.data(), got.size());
  ASSERT_EQ(n, 1524);
  EXPECT_EQ(got.substr(0, 1024), std::string(1024, 'a'));
  EXPECT_EQ(got.substr(1024, 500), std::string(500, 'b'));
  ::close(fds[0]);
  ::close(fds[1]);
}

// A reader that keeps up gets every byte, in order, by the time the output is drained.
TEST(ConsoleOutput, ReaderThatKeepsUpGetsEveryByteInOrder) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string got;
  std::thread reader([&] {
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) got.append(buf, static_cast<size_t>(n));
  });
  std::string sent;
  {
    ConsoleOutput out(fds[1]);
    for (int i = 0; i < 1000000; ++i) {
      sent.push_back(static_cast<char>('a' + i % 26));
      out.put(static_cast<uint8_t>(sent.back()));
      if (i % 10000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(out.drain(std::chrono::seconds(10)));
    EXPECT_EQ(out.dropped(), 0u) << "the reader reads as fast as the writer writes";
  }
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

// The vCPU writing the UART's data register never waits for the host's output.
TEST(Serial, GuestOutputNobodyReadsDoesNotStallTheVcpu) {
  SerialHarness h;  // nothing reads h.pipefd[0]
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < (2 << 20); ++i) h.out(0, 'x');
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_GT(h.console->dropped(), 0u);
}

TEST(Serial, ThreInterruptOnEnableAndAfterWrite) {
  SerialHarness h;
  EXPECT_EQ(h.in(2) & 0x0f, 0x01);  // nothing pending
  h.out(1, 0x02);                   // enable THRE interrupt
  EXPECT_EQ(h.irqs, 1);
  EXPECT_EQ(h.in(2) & 0x0f, 0x02);  // THRE pending; reading IIR clears it
  EXPECT_EQ(h.in(2) & 0x0f, 0x01);
  h.out(0, 'x');
  EXPECT_EQ(h.irqs, 2);
  EXPECT_EQ(h.in(2) & 0x0f, 0x02);
}

TEST(Serial, ReceivesInputWithDataReadyAndInterrupt) {
  SerialHarness h;
  h.out(1, 0x01);  // RX data interrupt
  const uint8_t input[] = {'a', 'b'};
  EXPECT_EQ(h.serial->enqueue_input(input), 2u);
  EXPECT_EQ(h.irqs, 1);
  EXPECT_EQ(h.in(5) & 0x01, 0x01);
  EXPECT_EQ(h.in(2) & 0x0f, 0x04);
  EXPECT_EQ(h.in(0), 'a');
  EXPECT_EQ(h.in(0), 'b');
  EXPECT_EQ(h.in(5) & 0x01, 0x00);
  EXPECT_EQ(h.in(2) & 0x0f, 0x01);
}

TEST(Serial, FifoControlClearsReceiveFifo) {
  SerialHarness h;
  const uint8_t input[] = {'a', 'b'};
  h.serial->enqueue_input(input);
  h.out(2, 0x01);  // enable FIFOs only: input stays
  EXPECT_EQ(h.in(5) & 0x01, 0x01);
  h.out(2, 0x03);  // clear RX FIFO
  EXPECT_EQ(h.in(5) & 0x01, 0x00);
}

TEST(Serial, InputIsBounded) {
  SerialHarness h;
  std::vector<uint8_t> big(Serial::kRxCapacity + 100, 'z');
  EXPECT_EQ(h.serial->enqueue_input(big), Serial::kRxCapacity);
  EXPECT_EQ(h.in(5) & 0x02, 0x02);  // overrun reported once
  EXPECT_EQ(h.in(5) & 0x02, 0x00);
}

TEST(Serial, DivisorLatchAndScratch) {
  SerialHarness h;
  h.out(3, 0x80);  // DLAB
  h.out(0, 0x01);
  h.out(1, 0x00);
  EXPECT_EQ(h.in(0), 0x01);
  h.out(3, 0x03);
  h.out(7, 0x5a);
  EXPECT_EQ(h.in(7), 0x5a);
  char c;
  EXPECT_EQ(h.irqs, 0);
  h.out(4, 0x10);  // loopback: a written byte comes back as input, not output
  h.out(0, 'L');
  EXPECT_EQ(h.in(0), 'L');
  (void)c;
}

TEST(I8042, ResetCommandEndsVm) {
  int resets = 0;
  I8042 kbd([&] { ++resets; });
  uint8_t status;
  kbd.read(4, std::span<uint8_t>(&status, 1));
  EXPECT_EQ(status & 0x02, 0);  // input buffer empty: Linux's kb_wait passes
  uint8_t other = 0xaa;
  kbd.write(4, std::span<const uint8_t>(&other, 1));
  EXPECT_EQ(resets, 0);
  uint8_t reset = 0xfe;
  kbd.write(0, std::span<const uint8_t>(&reset, 1));  // data port: not a command
  EXPECT_EQ(resets, 0);
  kbd.write(4, std::span<const uint8_t>(&reset, 1));
  EXPECT_EQ(resets, 1);
}

struct KbdHarness {
  int resets = 0, irqs = 0;
  I8042 kbd{[this] { ++resets; }, [this] { ++irqs; }};
  uint8_t in(uint64_t off) {
    uint8_t v;
    kbd.read(off, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out(uint64_t off, uint8_t v) { kbd.write(off, std::span<const uint8_t>(&v, 1)); }
};

// The sequence Linux's i8042 driver uses at probe time answers at once.
TEST(I8042, AnswersTheLinuxProbe) {
  KbdHarness h;
  EXPECT_EQ(h.in(4) & 0x01, 0);  // output buffer empty
  h.out(4, 0x20);                 // read command byte
  EXPECT_EQ(h.in(4) & 0x01, 1);
  uint8_t ctr = h.in(0);
  EXPECT_EQ(h.in(4) & 0x01, 0);
  h.out(4, 0x60);  // write command byte: interrupts off
  h.out(0, static_cast<uint8_t>(ctr & ~0x01));
  h.out(4, 0x20);
  EXPECT_EQ(h.in(0), ctr & ~0x01);
  h.out(4, 0xaa);  // controller self test
  EXPECT_EQ(h.in(0), 0x55);
  h.out(4, 0xab);  // keyboard port test
  EXPECT_EQ(h.in(0), 0x00);
  EXPECT_EQ(h.irqs, 1);  // only the first reply, sent before the driver turned interrupts off
}

TEST(I8042, KeyboardCommandsAreAcknowledgedWithInterrupts) {
  KbdHarness h;
  h.out(0, 0xf2);  // identify
  EXPECT_EQ(h.irqs, 1);
  EXPECT_EQ(h.in(0), 0xfa);
  EXPECT_EQ(h.irqs, 2);  // one pulse per byte still to read
  EXPECT_EQ(h.in(0), 0xab);
  EXPECT_EQ(h.in(0), 0x83);
  h.out(0, 0xed);  // set LEDs, then its argument: two ACKs
  h.out(0, 0x07);
  EXPECT_EQ(h.in(0), 0xfa);
  EXPECT_EQ(h.in(0), 0xfa);
  EXPECT_EQ(h.in(4) & 0x01, 0);
  h.out(0, 0xff);  // reset: ACK then self-test passed
  EXPECT_EQ(h.in(0), 0xfa);
  EXPECT_EQ(h.in(0), 0xaa);
}

TEST(I8042, OutputIsBounded) {
  KbdHarness h;
  for (int i = 0; i < 1000; ++i) h.out(4, 0x20);
  int n = 0;
  while (h.in(4) & 0x01) {
    h.in(0);
    ++n;
  }
  EXPECT_LE(n, 32);
  EXPECT_EQ(h.resets, 0);
}

// Linux's AUX (mouse) probe learns at once that there is none: the loopback byte
// comes back without the AUX status bit, and the AUX test reports an error.
TEST(I8042, NoAuxPortIsReportedPromptly) {
  KbdHarness h;
  EXPECT_NE(h.in(4) & 0x10, 0);  // not keylocked
  h.out(4, 0xd3);  // AUX loopback
  h.out(0, 0x5a);
  ASSERT_EQ(h.in(4) & 0x01, 1);   // answered, no timeout
  EXPECT_EQ(h.in(4) & 0x20, 0);   // ...but not as AUX data
  EXPECT_EQ(h.in(0), 0x5a);
  h.out(4, 0xa9);  // AUX interface test
  uint8_t result = h.in(0);
  EXPECT_TRUE(result >= 0x01 && result <= 0x03) << int(result);
}

// Port enable/disable commands show in the command byte, as Linux checks.
TEST(I8042, PortDisableBitsFollowCommands) {
  KbdHarness h;
  auto ctr = [&] {
    h.out(4, 0x20);
    return h.in(0);
  };
  h.out(4, 0xa7);
  EXPECT_NE(ctr() & 0x20, 0);
  h.out(4, 0xa8);
  EXPECT_EQ(ctr() & 0x20, 0);
  h.out(4, 0xad);
  EXPECT_NE(ctr() & 0x10, 0);
  h.out(4, 0xae);
  EXPECT_EQ(ctr() & 0x10, 0);
}

std::vector<uint8_t> drain(KbdHarness& h) {
  std::vector<uint8_t> bytes;
  while (h.in(4) & 0x01) bytes.push_back(h.in(0));
  return bytes;
}

// Linux leaves translation on (command byte bit 6): set 1 codes, one IRQ per byte.
TEST(I8042, CtrlAltDelInSet1WhenTranslating) {
  KbdHarness h;
  ASSERT_TRUE(h.kbd.press_ctrl_alt_del());
  EXPECT_EQ(h.irqs, 1);
  std::vector<uint8_t> expected = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
  EXPECT_EQ(drain(h), expected);
  EXPECT_EQ(h.irqs, 8);
  EXPECT_EQ(h.resets, 0);
}

TEST(I8042, CtrlAltDelInSet2WithoutTranslation) {
  KbdHarness h;
  h.out(4, 0x60);  // command byte: interrupts on, no translation
  h.out(0, 0x05);
  ASSERT_TRUE(h.kbd.press_ctrl_alt_del());
  std::vector<uint8_t> expected = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
  EXPECT_EQ(drain(h), expected);
}

// A guest that never reads the keyboard cannot make the queue grow.
TEST(I8042, CtrlAltDelRefusedWhenTheGuestDoesNotRead) {
  KbdHarness h;
  int accepted = 0;
  for (int i = 0; i < 10; ++i) accepted += h.kbd.press_ctrl_alt_del() ? 1 : 0;
  EXPECT_EQ(accepted, 4);  // 4 x 8 bytes fill the 32-byte queue
  EXPECT_EQ(drain(h).size(), 32u);
}

TEST(BootMarker, OnlyTheMagicByteAtOffsetZero) {
  int marks = 0;
  BootMarker m([&] { ++marks; });
  uint8_t wrong = 12, magic = BootMarker::kMagic;
  m.write(0, std::span<const uint8_t>(&wrong, 1));
  m.write(1, std::span<const uint8_t>(&magic, 1));
  EXPECT_EQ(marks, 0);
  m.write(0, std::span<const uint8_t>(&magic, 1));
  EXPECT_EQ(marks, 1);
}

}  // namespace
}  // namespace ember
