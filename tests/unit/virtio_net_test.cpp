// virtio-net with a SOCK_SEQPACKET socket standing in for the tap (one message
// per frame, like a tap fd): TX and RX through io_uring, mergeable RX buffers,
// RX stalling and resuming with the driver's buffers, and chains a guest got wrong.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <functional>
#include <linux/if_tun.h>

#include <map>

#include "tests/unit/child_process.h"
#include "tests/unit/fake_clock.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/net/mac_address.h"
#include "virtio/net/net_device.h"
#include "virtio/net/net_header.h"
#include "virtio/spec.h"

namespace ember::virtio::net {
namespace {

using test::Buffer;

constexpr uint64_t kAllOffloads = bit(kFeatureCsum) | bit(kFeatureGuestCsum) | bit(kFeatureGuestTso4) |
                                  bit(kFeatureGuestTso6) | bit(kFeatureHostTso4) | bit(kFeatureHostTso6) |
                                  bit(kFeatureMrgRxbuf) | bit(kFeatureMac) | bit(kFeatureVersion1);

struct NetHarness {
  GuestMemory memory = test::small_guest_memory(16);
  test::VirtioDriver rx{memory, 64, 0x10000, 0x200000};
  test::VirtioDriver tx{memory, 64, 0x80000, 0x800000};
  UniqueFd irqfd{::eventfd(0, EFD_NONBLOCK)};
  Interrupt interrupt{irqfd.get()};
  UniqueFd peer;  // the "host side" of the tap
  int device_tap_fd = -1;  // the device's side (it owns it)
  EventLoop loop;  // runs the rate limiters' timers when a test drives it (run_loop)
  IoUringRing ring{64};
  std::unique_ptr<NetDevice> device;
  std::vector<SplitQueue> queues;
  std::map<uint16_t, Buffer> rx_buffers;  // by head
  unsigned offloads = ~0u;

  explicit NetHarness(uint64_t acked = kAllOffloads, int device_sndbuf = 0,
                      const std::function<void(NetDeviceOptions&)>& tweak = {}) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    peer.reset(fds[1]);
    if (device_sndbuf) ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &device_sndbuf, sizeof(device_sndbuf));
    NetDeviceOptions options;
    options.id = "eth0";
    options.mac = {0x06, 1, 2, 3, 4, 5};
    options.queue_size = 64;
    options.max_tx_in_flight = 4;
    options.set_offloads = [this](int, unsigned flags) {
      offloads = flags;
      return 0;
    };
    options.loop = &loop;
    if (tweak) tweak(options);
    device_tap_fd = fds[0];
    device = std::make_unique<NetDevice>(options, UniqueFd(fds[0]), ring);
    ring.seal();
    loop.add(ring.event_fd(), [this] { ring.reap(); });
    queues.push_back(*SplitQueue::create(memory, rx.config(), 64, {true, true}));
    queues.push_back(*SplitQueue::create(memory, tx.config(), 64, {true, true}));
    device->activate(queues, interrupt, acked);
    // As the transport does right after activation.
    device->process_queue(kRxQueue);
    device->process_queue(kTxQueue);
  }
  ~NetHarness() { device->reset(); }

  // Runs the event thread's part until `done` or a second passes.
  void pump(const std::function<bool()>& done) {
    for (int i = 0; i < 200 && !done(); ++i) {
      pollfd p{ring.event_fd(), POLLIN, 0};
      ::poll(&p, 1, 5);
      ring.reap();
    }
  }
  void add_rx(uint32_t len, unsigned count = 1) {
    for (unsigned i = 0; i < count; ++i) {
      Buffer b = rx.alloc(len, 0xaa);
      rx_buffers[rx.add({}, {b})] = b;
    }
  }
  // A frame as the tap delivers it: header then `payload` bytes of a pattern.
  static std::vector<uint8_t> frame(size_t payload, NetHeader header = {}) {
    std::vector<uint8_t> f(kNetHeaderSize + payload);
    std::memcpy(f.data(), &header, kNetHeaderSize);
    for (size_t i = 0; i < payload; ++i) f[kNetHeaderSize + i] = static_cast<uint8_t>(i * 7 + 1);
    return f;
  }
  void host_sends(const std::vector<uint8_t>& f) {
    ASSERT_EQ(::send(peer.get(), f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  }
  // The bytes of used RX entries [first, first + count), concatenated.
  std::vector<uint8_t> received(uint16_t first, uint16_t count) {
    std::vector<uint8_t> out;
    for (uint16_t i = first; i < first + count; ++i) {
      auto used = rx.used(i);
      auto bytes = rx.bytes(rx_buffers.at(static_cast<uint16_t>(used.id)));
      out.insert(out.end(), bytes.begin(), bytes.begin() + used.len);
    }
    return out;
  }
  uint64_t metric(const std::string& name) {
    uint64_t value = ~0ull;
    device->report_metrics([&](std::string_view n, uint64_t v) {
      if (n == name) value = v;
    });
    return value;
  }
  // Adds a TX chain holding `bytes`, without notifying; returns the head.
  uint16_t add_tx(const std::vector<uint8_t>& bytes) {
    Buffer b = tx.alloc(static_cast<uint32_t>(bytes.size()));
    std::memcpy(tx.bytes(b).data(), bytes.data(), bytes.size());
    return tx.add({b}, {});
  }
  // Adds `count` TX chains, frames of 100, 101, ... payload bytes, without notifying.
  std::vector<std::vector<uint8_t>> queue_tx(int count) {
    std::vector<std::vector<uint8_t>> frames;
    for (int i = 0; i < count; ++i) {
      frames.push_back(frame(100 + i));
      add_tx(frames.back());
    }
    return frames;
  }
  // Sends a TX chain holding `bytes`; returns the head.
  uint16_t guest_sends(const std::vector<uint8_t>& bytes) {
    uint16_t head = add_tx(bytes);
    device->process_queue(kTxQueue);
    return head;
  }
  std::vector<uint8_t> host_receives() {
    std::vector<uint8_t> buf(kMaxPacket + 16);
    pollfd p{peer.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return {};
    ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
  }
};

NetHeader header_at(const std::vector<uint8_t>& bytes) {
  NetHeader h{};
  std::memcpy(&h, bytes.data(), kNetHeaderSize);
  return h;
}

TEST(NetHeader, OffloadsFollowTheGuestFeaturesTheDriverAcked) {
  EXPECT_EQ(tap_offload_flags(0), 0u);
  EXPECT_EQ(tap_offload_flags(bit(kFeatureGuestTso4)), 0u);  // TSO needs CSUM
  EXPECT_EQ(tap_offload_flags(bit(kFeatureGuestCsum)), unsigned{TUN_F_CSUM});
  EXPECT_EQ(tap_offload_flags(kAllOffloads), unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6});
  EXPECT_EQ(tap_offload_flags(kAllOffloads | bit(kFeatureGuestEcn)),
            unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN});
  uint64_t offered = offered_features();
  for (uint32_t f : {kFeatureCsum, kFeatureGuestCsum, kFeatureGuestTso4, kFeatureGuestTso6, kFeatureHostTso4,
                     kFeatureHostTso6, kFeatureMrgRxbuf, kFeatureMac}) {
    EXPECT_TRUE(offered & bit(f)) << f;
  }
}

TEST(NetHeader, TxHeadersMustStayWithinTheNegotiatedOffloads) {
  NetHeader h{};
  EXPECT_EQ(check_tx_header(h, 0), nullptr);
  h.flags = kHeaderNeedsCsum;
  EXPECT_NE(check_tx_header(h, 0), nullptr);
  EXPECT_EQ(check_tx_header(h, bit(kFeatureCsum)), nullptr);
  h.gso_type = kGsoTcpV4;
  h.gso_size = 1448;
  EXPECT_NE(check_tx_header(h, bit(kFeatureCsum)), nullptr);
  EXPECT_EQ(check_tx_header(h, bit(kFeatureCsum) | bit(kFeatureHostTso4)), nullptr);
  h.gso_type = kGsoTcpV4 | kGsoEcn;
  EXPECT_NE(check_tx_header(h, bit(kFeatureCsum) | bit(kFeatureHostTso4)), nullptr);
  h.gso_type = kGsoUdp;
  EXPECT_NE(check_tx_header(h, kAllOffloads), nullptr);
  h.gso_type = kGsoTcpV6;
  h.gso_size = 0;
  EXPECT_NE(check_tx_header(h, kAllOffloads), nullptr);
  h = NetHeader{};
  h.flags = 0x80;
  EXPECT_NE(check_tx_header(h, kAllOffloads), nullptr);
}

TEST(NetHeader, RxHeadersAreFittedToTheDriver) {
  NetHeader h{};
  h.flags = kHeaderDataValid;
  EXPECT_EQ(prepare_rx_header(h, 0, 1), nullptr);
  EXPECT_EQ(h.flags, 0);  // 5.1.6.3.1: no flags without GUEST_CSUM
  EXPECT_EQ(h.num_buffers, 1);
  h.flags = kHeaderNeedsCsum;
  EXPECT_NE(prepare_rx_header(h, 0, 1), nullptr);
  EXPECT_EQ(prepare_rx_header(h, kAllOffloads, 3), nullptr);
  EXPECT_EQ(h.num_buffers, 3);
  h.gso_type = kGsoTcpV4;
  EXPECT_NE(prepare_rx_header(h, bit(kFeatureGuestCsum), 1), nullptr);
}

TEST(NetMac, GeneratedAddressesAreLocalUnicastAndDifferPerInterface) {
  MacAddress a = generate_mac(0), b = generate_mac(1);
  EXPECT_EQ(a[0] & 3, 2);  // locally administered, unicast
  EXPECT_NE(a, b);
  EXPECT_EQ(format_mac({0x06, 0xab, 0, 1, 2, 0xff}), "06:ab:00:01:02:ff");
}

TEST(NetDevice, ConfigSpaceHoldsTheMacAndOffloadsAreSetOnActivation) {
  NetHarness h;
  uint8_t mac[6] = {};
  h.device->read_config(0, mac);
  EXPECT_EQ(mac[0], 0x06);
  EXPECT_EQ(mac[5], 5);
  EXPECT_EQ(h.device->device_type(), 1u);
  EXPECT_EQ(h.device->queue_max_sizes().size(), 2u);
  EXPECT_EQ(h.offloads, unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6});
  h.device->reset();
  EXPECT_EQ(h.offloads, 0u);
  h.device->activate(h.queues, h.interrupt, kAllOffloads);
}

TEST(NetDevice, TxPacketsReachTheTapWholeAndComeBackEmpty) {
  NetHarness h;
  NetHeader hdr{};
  hdr.flags = kHeaderNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 16;
  auto f = NetHarness::frame(1000, hdr);
  h.guest_sends(f);
  h.pump([&] { return h.tx.used_idx() == 1; });
  ASSERT_EQ(h.tx.used_idx(), 1);
  EXPECT_EQ(h.tx.used(0).len, 0u);
  EXPECT_EQ(h.host_receives(), f);
  EXPECT_EQ(h.metric("tx_packets_count"), 1u);
  EXPECT_EQ(h.metric("tx_bytes_count"), 1000u);
  EXPECT_GT(h.interrupt.raised(), 0u);
}

TEST(NetDevice, ManyTxPacketsBeyondTheInFlightLimitAllArriveInOrder) {
  NetHarness h;
  std::vector<std::vector<uint8_t>> frames = h.queue_tx(20);
  h.device->process_queue(kTxQueue);
  h.pump([&] { return h.tx.used_idx() == 20; });
  ASSERT_EQ(h.tx.used_idx(), 20);
  for (auto& f : frames) EXPECT_EQ(h.host_receives(), f);
  EXPECT_GE(h.metric("tx_throttled"), 1u);
}

// A real tap never makes a writer wait (NetDeviceOptions::tap_writes_never_block); the
// socket standing in for it here has room for these frames.
void tap_never_blocks(NetDeviceOptions& o) { o.tap_writes_never_block = true; }

// Frames of every size are written at once, TSO-sized ones too, until a pass over the queue
// has written tx_now_bytes; the rest of that pass goes through the ring, in order.
TEST(NetDevice, TxFramesAreWrittenAtOnceWithinAPassBudgetAndTheRestThroughTheRing) {
  NetHarness h(kAllOffloads, 0, [](NetDeviceOptions& o) {
    tap_never_blocks(o);
    o.tx_now_bytes = 10000;
  });
  auto small = NetHarness::frame(100);
  h.guest_sends(small);
  EXPECT_EQ(h.tx.used_idx(), 1) << "written and returned before any io_uring completion";
  EXPECT_EQ(h.host_receives(), small);
  EXPECT_EQ(h.metric("tx_packets_count"), 1u);
  EXPECT_EQ(h.metric("tx_bytes_count"), 100u);
  EXPECT_GT(h.interrupt.raised(), 0u);
  auto large = NetHarness::frame(9000);
  h.guest_sends(large);
  EXPECT_EQ(h.tx.used_idx(), 2) << "a large frame within the budget is written at once too";
  EXPECT_EQ(h.host_receives(), large);
  // One pass of 4000 + 4000 + 4000 + 100 bytes: the third goes beyond 10000, so it and the
  // one behind it wait for the ring.
  std::vector<std::vector<uint8_t>> frames = {NetHarness::frame(4000), NetHarness::frame(4001),
                                              NetHarness::frame(4002), NetHarness::frame(100)};
  for (auto& f : frames) h.add_tx(f);
  h.device->process_queue(kTxQueue);  // one notification: one pass over the queue
  EXPECT_EQ(h.tx.used_idx(), 4) << "two written at once";
  h.pump([&] { return h.tx.used_idx() == 6; });
  ASSERT_EQ(h.tx.used_idx(), 6);
  for (auto& f : frames) EXPECT_EQ(h.host_receives(), f);
}

TEST(NetDevice, TxFramesNeverOvertakeAWriteInFlight) {
  NetHarness h(kAllOffloads, 0, [](NetDeviceOptions& o) {
    tap_never_blocks(o);
    o.tx_now_bytes = 4000;
  });
  // The first is written at once; the second is beyond the pass's budget and goes through
  // the ring; the small ones behind it must wait for it.
  std::vector<std::vector<uint8_t>> frames = {NetHarness::frame(3000), NetHarness::frame(5000),
                                              NetHarness::frame(100), NetHarness::frame(101)};
  for (auto& f : frames) h.add_tx(f);
  h.device->process_queue(kTxQueue);  // one notification: one pass over the queue
  EXPECT_EQ(h.tx.used_idx(), 1);
  h.pump([&] { return h.tx.used_idx() == 4; });
  ASSERT_EQ(h.tx.used_idx(), 4);
  for (auto& f : frames) EXPECT_EQ(h.host_receives().size(), f.size());
  // Then, nothing in flight, frames go at once again.
  h.guest_sends(NetHarness::frame(60));
  EXPECT_EQ(h.tx.used_idx(), 5);
}

TEST(NetDevice, MalformedTxChainsAreCountedAndCompleted) {
  NetHarness h(kAllOffloads & ~bit(kFeatureHostTso4));
  h.guest_sends(std::vector<uint8_t>(5, 0));  // shorter than the header
  NetHeader gso{};
  gso.gso_type = kGsoTcpV4;  // HOST_TSO4 not acked
  gso.gso_size = 1448;
  h.guest_sends(NetHarness::frame(3000, gso));
  h.guest_sends(std::vector<uint8_t>(kMaxPacket + 1, 0));  // too long
  Buffer w = h.tx.alloc(64);  // only device-writable: no header at all
  h.tx.add({}, {w});
  h.device->process_queue(kTxQueue);
  EXPECT_EQ(h.tx.used_idx(), 4);
  EXPECT_EQ(h.metric("tx_malformed_frames"), 4u);
  EXPECT_EQ(h.metric("tx_packets_count"), 0u);
  pollfd p{h.peer.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 50), 0);
}

TEST(NetDevice, TxTheTapRefusesCountsAnErrorAndCompletes) {
  NetHarness h(kAllOffloads, 4096);  // the socket refuses messages above its send buffer
  h.guest_sends(NetHarness::frame(20000));
  h.pump([&] { return h.tx.used_idx() == 1; });
  ASSERT_EQ(h.tx.used_idx(), 1);
  EXPECT_EQ(h.metric("tap_write_fails"), 1u);
  h.guest_sends(NetHarness::frame(100));
  h.pump([&] { return h.tx.used_idx() == 2; });
  EXPECT_EQ(h.metric("tx_packets_count"), 1u);
}

// Found by mmio_transport_fuzz: with the host not reading, TX writes stay in flight and
// the reset (a guest reboot, the VM's stop) waited for them forever.
TEST(NetDevice, ResetDoesNotWaitForTxTheHostNeverTakes) {
  int rc = test::run_in_child(
      [] {
        NetHarness h(kAllOffloads, 4096);
        for (int i = 0; i < 16; ++i) h.guest_sends(NetHarness::frame(1500));
        h.pump([] { return false; });  // a second of the host taking what fits, then nothing
        if (h.tx.used_idx() == 16) return 3;  // nothing stuck: the test would show nothing
        h.device->reset();
        return 0;
      },
      5000);
  EXPECT_EQ(rc, 0);
}

TEST(NetDevice, RxPacketFitsOneBufferWithNumBuffersOne) {
  NetHarness h;
  h.add_rx(1526, 4);
  h.device->process_queue(kRxQueue);
  auto f = NetHarness::frame(100);
  h.host_sends(f);
  h.pump([&] { return h.rx.used_idx() == 1; });
  ASSERT_EQ(h.rx.used_idx(), 1);
  auto got = h.received(0, 1);
  ASSERT_EQ(got.size(), f.size());
  EXPECT_EQ(header_at(got).num_buffers, 1);
  EXPECT_TRUE(std::equal(got.begin() + kNetHeaderSize, got.end(), f.begin() + kNetHeaderSize));
  EXPECT_EQ(h.metric("rx_packets_count"), 1u);
  EXPECT_EQ(h.metric("rx_bytes_count"), 100u);
}

TEST(NetDevice, LargeRxPacketSpreadsOverMergeableBuffers) {
  NetHarness h;
  h.add_rx(1526, 60);
  h.device->process_queue(kRxQueue);
  NetHeader hdr{};
  hdr.flags = kHeaderNeedsCsum;
  hdr.gso_type = kGsoTcpV4;
  hdr.gso_size = 1448;
  auto f = NetHarness::frame(kMaxFrame, hdr);
  h.host_sends(f);
  uint16_t expected = static_cast<uint16_t>((f.size() + 1525) / 1526);  // 43
  h.pump([&] { return h.rx.used_idx() == expected; });
  ASSERT_EQ(h.rx.used_idx(), expected);
  auto got = h.received(0, expected);
  ASSERT_EQ(got.size(), f.size());
  EXPECT_EQ(header_at(got).num_buffers, expected);
  EXPECT_EQ(header_at(got).gso_type, kGsoTcpV4);
  EXPECT_TRUE(std::equal(got.begin() + kNetHeaderSize, got.end(), f.begin() + kNetHeaderSize));
}

// A tap at end of file (here the stand-in's: a read returns 0 at once, every time) does not
// make the event thread spin: each empty read counts as a failure, and after 16 in a row RX
// pauses until the driver next adds buffers.
TEST(NetDevice, RxPausesAfterATapKeepsReturningNothing) {
  NetHarness h;
  h.add_rx(1526, 4);
  h.device->process_queue(kRxQueue);
  h.peer.reset();
  h.pump([&] { return h.metric("rx_fails") >= 16; });
  h.pump([] { return false; });  // more time: nothing further happens
  EXPECT_EQ(h.metric("rx_fails"), 16u);
  EXPECT_NE(h.device->describe_state().find("rx read not pending"), std::string::npos);
  h.device->process_queue(kRxQueue);  // the driver's next notification tries again
  h.pump([&] { return h.metric("rx_fails") >= 32; });
  h.pump([] { return false; });
  EXPECT_EQ(h.metric("rx_fails"), 32u);
  EXPECT_EQ(h.rx.used_idx(), 0);
}

// The hang report says whether a frame waits in the tap: with an RX read pending, "readable"
// there would mean a lost completion, "empty" that the host sent nothing.
TEST(NetDevice, StateReportSaysWhetherTheTapHoldsAFrame) {
  NetHarness h;
  std::string state = h.device->describe_state();
  EXPECT_NE(state.find("rx read pending"), std::string::npos) << state;
  EXPECT_NE(state.find("tap empty"), std::string::npos) << state;
  h.host_sends(NetHarness::frame(100));  // no RX buffers: read, then it waits for them
  h.pump([&] { return h.metric("no_rx_avail_buffer") > 0; });
  h.host_sends(NetHarness::frame(100));  // stays in the tap
  state = h.device->describe_state();
  EXPECT_NE(state.find("rx packet waiting for buffers 112 bytes"), std::string::npos) << state;
  EXPECT_NE(state.find("tap readable"), std::string::npos) << state;
}

TEST(NetDevice, RxStallsWithoutBuffersAndResumesWhenTheDriverAddsSome) {
  NetHarness h;
  auto a = NetHarness::frame(3000), b = NetHarness::frame(50);
  h.host_sends(a);
  h.host_sends(b);
  h.pump([&] { return h.metric("no_rx_avail_buffer") > 0; });
  EXPECT_EQ(h.rx.used_idx(), 0);
  EXPECT_EQ(h.metric("no_rx_avail_buffer"), 1u);
  // One buffer is not enough for the 3000-byte packet: it is held, not used.
  h.add_rx(2048);
  h.device->process_queue(kRxQueue);
  EXPECT_EQ(h.rx.used_idx(), 0);
  h.add_rx(2048, 2);
  h.device->process_queue(kRxQueue);
  h.pump([&] { return h.rx.used_idx() == 3; });
  ASSERT_EQ(h.rx.used_idx(), 3);
  EXPECT_EQ(header_at(h.received(0, 2)).num_buffers, 2);
  EXPECT_EQ(h.received(0, 2).size(), a.size());
  EXPECT_EQ(h.received(2, 1).size(), b.size());
  EXPECT_EQ(h.metric("rx_packets_count"), 2u);
}

// Packets already in the tap when buffers arrive go to the guest at once, read without
// waiting and without an io_uring round trip each, in order, with one interrupt; a batch is
// bounded (32 reads) and the rest follow through the ring. Without waiting: RWF_NOWAIT, or
// O_NONBLOCK set around the batch (a tap that refuses RWF_NOWAIT: Linux 6.1's), and cleared
// again, since the io_uring read that follows must wait.
class RxBatch : public testing::TestWithParam<bool> {};

TEST_P(RxBatch, PacketsTheTapHoldsAreReadAtOnceInBoundedBatches) {
  NetHarness h(kAllOffloads, 0, [](NetDeviceOptions& o) { o.nowait_reads = GetParam(); });
  int device_fd = h.device_tap_fd;
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 40; ++i) frames.push_back(NetHarness::frame(200 + i));
  h.host_sends(frames[0]);
  h.pump([&] { return h.metric("no_rx_avail_buffer") > 0; });  // read by the ring, waits for buffers
  for (int i = 1; i < 40; ++i) h.host_sends(frames[i]);
  h.add_rx(1526, 60);
  uint64_t interrupts = h.interrupt.raised();
  h.device->process_queue(kRxQueue);
  EXPECT_EQ(h.rx.used_idx(), 1 + 32) << "the waiting packet and one batch, before the ring ran";
  EXPECT_EQ(h.interrupt.raised(), interrupts + 1);
  EXPECT_EQ(::fcntl(device_fd, F_GETFL) & O_NONBLOCK, 0) << "the tap is left blocking for the io_uring read";
  h.pump([&] { return h.rx.used_idx() == 40; });
  ASSERT_EQ(h.rx.used_idx(), 40);
  for (uint16_t i = 0; i < 40; ++i) {
    auto got = h.received(i, 1);
    ASSERT_EQ(got.size(), frames[i].size()) << i;
    EXPECT_EQ(header_at(got).num_buffers, 1) << i;
    EXPECT_TRUE(std::equal(got.begin() + kNetHeaderSize, got.end(), frames[i].begin() + kNetHeaderSize)) << i;
  }
  EXPECT_EQ(h.metric("rx_packets_count"), 40u);
  EXPECT_EQ(h.metric("rx_fails"), 0u);
}
// Large frames (TCP with GSO) are batched too: a bulk download's frames one interrupt each
// cost the guest about five times the interrupts (perf/net/NOTES.md, 2026-12-03). Large and small
// frames alike arrive whole, in order, with one interrupt.
TEST_P(RxBatch, LargeFramesAreReadInTheBatchToo) {
  NetHarness h(kAllOffloads, 0, [](NetDeviceOptions& o) { o.nowait_reads = GetParam(); });
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 8; ++i) frames.push_back(NetHarness::frame(i < 4 ? 20000 + i : 100 + i));
  h.host_sends(frames[0]);
  h.pump([&] { return h.metric("no_rx_avail_buffer") > 0; });
  for (int i = 1; i < 8; ++i) h.host_sends(frames[i]);
  h.add_rx(20100, 8);
  uint64_t interrupts = h.interrupt.raised();
  h.device->process_queue(kRxQueue);
  ASSERT_EQ(h.rx.used_idx(), 8) << "the waiting frame and the seven behind it, before the ring ran";
  EXPECT_EQ(h.interrupt.raised(), interrupts + 1);
  for (uint16_t i = 0; i < 8; ++i) {
    auto got = h.received(i, 1);
    ASSERT_EQ(got.size(), frames[i].size()) << i;
    EXPECT_TRUE(std::equal(got.begin() + kNetHeaderSize, got.end(), frames[i].begin() + kNetHeaderSize)) << i;
  }
  EXPECT_EQ(h.metric("rx_packets_count"), 8u);
}

INSTANTIATE_TEST_SUITE_P(NetDevice, RxBatch, testing::Bool(),
                         [](const auto& info) { return info.param ? "WithNowaitReads" : "WithNonblockingTap"; });

TEST(NetDevice, RxBufferTooShortForTheHeaderIsReturnedEmpty) {
  NetHarness h;
  h.add_rx(4);
  h.add_rx(1526);
  h.device->process_queue(kRxQueue);
  h.host_sends(NetHarness::frame(60));
  h.pump([&] { return h.rx.used_idx() == 2; });
  ASSERT_EQ(h.rx.used_idx(), 2);
  EXPECT_EQ(h.rx.used(0).len, 0u);
  EXPECT_EQ(h.rx.used(1).len, kNetHeaderSize + 60);
  EXPECT_EQ(h.metric("rx_fails"), 1u);
}

TEST(NetDevice, WithoutMergeableBuffersATooSmallBufferDropsThePacketAndIsKept) {
  NetHarness h(kAllOffloads & ~bit(kFeatureMrgRxbuf));
  h.add_rx(1000);
  h.device->process_queue(kRxQueue);
  h.host_sends(NetHarness::frame(2000));
  h.host_sends(NetHarness::frame(500));
  h.pump([&] { return h.rx.used_idx() == 1; });
  ASSERT_EQ(h.rx.used_idx(), 1);
  EXPECT_EQ(h.rx.used(0).len, kNetHeaderSize + 500);
  EXPECT_EQ(h.metric("rx_dropped"), 1u);
}

TEST(NetDevice, RxOffloadsTheDriverRefusedAreDroppedAndFlagsCleared) {
  NetHarness h(bit(kFeatureMrgRxbuf) | bit(kFeatureVersion1));
  h.add_rx(1526, 2);
  h.device->process_queue(kRxQueue);
  NetHeader gso{};
  gso.gso_type = kGsoTcpV4;
  h.host_sends(NetHarness::frame(100, gso));
  NetHeader valid{};
  valid.flags = kHeaderDataValid;
  h.host_sends(NetHarness::frame(100, valid));
  h.pump([&] { return h.rx.used_idx() == 1; });
  ASSERT_EQ(h.rx.used_idx(), 1);
  EXPECT_EQ(header_at(h.received(0, 1)).flags, 0);
  EXPECT_EQ(h.metric("rx_fails"), 1u);
}

TEST(NetDevice, BuffersTooSmallTogetherDropThePacketInsteadOfWaitingForever) {
  NetHarness h;
  h.add_rx(16, 64);  // the whole queue: 1 KiB in total
  h.device->process_queue(kRxQueue);
  h.host_sends(NetHarness::frame(5000));
  h.host_sends(NetHarness::frame(10));
  h.pump([&] { return h.rx.used_idx() == 2; });
  EXPECT_EQ(h.metric("rx_dropped"), 1u);
  ASSERT_EQ(h.rx.used_idx(), 2);
  EXPECT_EQ(header_at(h.received(0, 2)).num_buffers, 2);
}

TEST(NetDevice, ResetWithAReadInFlightReturnsAndRxWorksAfterReactivation) {
  NetHarness h;
  h.add_rx(1526, 2);
  h.device->process_queue(kRxQueue);
  h.device->reset();  // cancels the pending read; held buffers are forgotten
  h.device->activate(h.queues, h.interrupt, kAllOffloads);
  h.device->process_queue(kRxQueue);
  h.host_sends(NetHarness::frame(42));
  h.pump([&] { return h.rx.used_idx() == 1; });
  EXPECT_EQ(h.rx.used_idx(), 1);
}

// Rate limiting: a fake clock decides the tokens; the loop's timerfd (a few real ms
// here) decides when the device looks again.
using std::chrono::milliseconds;
using test::FakeClock;
using test::run_loop;

TEST(NetRateLimit, TxFramesWaitForTheLimiterInOrder) {
  FakeClock clock;
  NetHarness h(kAllOffloads, 0, [&](NetDeviceOptions& o) {
    o.tx_rate_limiter.ops = TokenBucketConfig{1, 0, 20};  // a frame per 20 ms
    o.clock = clock.get();
  });
  std::vector<std::vector<uint8_t>> frames = h.queue_tx(3);
  h.device->process_queue(kTxQueue);
  h.pump([&] { return h.tx.used_idx() == 1; });
  EXPECT_EQ(h.host_receives(), frames[0]);
  EXPECT_EQ(h.metric("tx_rate_limiter_throttled"), 1u);
  run_loop(h.loop, 50);  // the timer, with no time passed for the limiter
  h.device->process_queue(kTxQueue);  // nor does a notification help
  EXPECT_EQ(h.tx.used_idx(), 1);
  for (int i = 1; i < 3; ++i) {
    clock.now += milliseconds(20);
    run_loop(h.loop, 1000, [&] { return h.tx.used_idx() == i + 1; });
    EXPECT_EQ(h.tx.used_idx(), i + 1);
    EXPECT_EQ(h.host_receives(), frames[i]);
  }
  EXPECT_EQ(h.metric("tx_rate_limiter_throttled"), 2u);
  EXPECT_EQ(h.metric("tx_packets_count"), 3u);
}

TEST(NetRateLimit, ThrottledRxStopsReadingTheTapUntilTheTimer) {
  FakeClock clock;
  NetHarness h(kAllOffloads, 0, [&](NetDeviceOptions& o) {
    o.rx_rate_limiter.bandwidth = TokenBucketConfig{200, 0, 20};  // 200 bytes per 20 ms
    o.clock = clock.get();
  });
  h.add_rx(1526, 4);
  h.device->process_queue(kRxQueue);
  std::vector<std::vector<uint8_t>> frames = {NetHarness::frame(150), NetHarness::frame(151), NetHarness::frame(152)};
  for (auto& f : frames) h.host_sends(f);
  h.pump([&] { return h.rx.used_idx() == 1; });
  h.pump([&] { return h.metric("rx_rate_limiter_throttled") == 1; });
  EXPECT_EQ(h.metric("rx_rate_limiter_throttled"), 1u);
  EXPECT_NE(h.device->describe_state().find("rx packet waiting for the rate limiter 163 bytes"), std::string::npos)
      << h.device->describe_state();
  h.device->process_queue(kRxQueue);  // more buffers do not get it past the limiter
  EXPECT_EQ(h.rx.used_idx(), 1);
  for (uint16_t i = 1; i < 3; ++i) {
    clock.now += milliseconds(20);
    run_loop(h.loop, 1000, [&] { return h.rx.used_idx() == i + 1; });
    ASSERT_EQ(h.rx.used_idx(), i + 1);
  }
  for (uint16_t i = 0; i < 3; ++i) {
    auto got = h.received(i, 1);
    ASSERT_EQ(got.size(), frames[i].size()) << i;
    EXPECT_TRUE(std::equal(got.begin() + kNetHeaderSize, got.end(), frames[i].begin() + kNetHeaderSize)) << i;
  }
  EXPECT_EQ(h.metric("rx_packets_count"), 3u);
}

TEST(NetRateLimit, UpdateReleasesWhatWaits) {
  FakeClock clock;
  NetHarness h(kAllOffloads, 0, [&](NetDeviceOptions& o) {
    o.tx_rate_limiter.ops = TokenBucketConfig{1, 0, 3'600'000};
    o.clock = clock.get();
  });
  h.queue_tx(3);
  h.device->process_queue(kTxQueue);
  h.pump([&] { return h.tx.used_idx() == 1; });
  EXPECT_EQ(h.tx.used_idx(), 1);
  RateLimiterConfig off;
  off.ops = TokenBucketConfig{};
  h.device->update_rate_limiters({}, off);
  run_loop(h.loop, 1000, [&] { return h.tx.used_idx() == 3; });
  EXPECT_EQ(h.tx.used_idx(), 3);
}

}  // namespace
}  // namespace ember::virtio::net
