// virtio-net on a real tap in a private network namespace: opening and
// configuring the tap, an ARP request out and the kernel's reply back, and a
// TX header the tap refuses. Needs root (CAP_NET_ADMIN) and /dev/net/tun; the
// tests say so and skip otherwise (the e2e tests cover the tap in any case).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <net/if.h>  // before linux/if_tun.h
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>

#include <climits>
#include <cstdlib>

#include "base/util/error.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/net/net_device.h"
#include "virtio/net/net_header.h"
#include "virtio/net/tap.h"

namespace ember::virtio::net {
namespace {

using test::Buffer;

// The calling thread in a new network namespace with tap `name` up at 169.254.30.1/24.
class TapNamespace {
 public:
  explicit TapNamespace(const char* name) {
    original_.reset(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) return;
    // A missing tool is the machine's setup, not a reason to skip: fail naming it.
    if (std::system("command -v ip >/dev/null") != 0) {
      ADD_FAILURE() << "host tool 'ip' not found in PATH (Debian package iproute2; tools/setup.sh installs it)";
      return;
    }
    if (::unshare(CLONE_NEWNET) != 0) return;
    // No IPv6: its router and multicast chatter would use up the test's RX buffers.
    std::string cmd = std::string("echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; ") +
                      "ip link set lo up && ip tuntap add dev " + name + " mode tap && ip addr add " +
                      "169.254.30.1/24 dev " + name + " && ip link set " + name + " up";
    ready_ = std::system(cmd.c_str()) == 0;
  }
  ~TapNamespace() { ::setns(original_.get(), CLONE_NEWNET); }
  bool ready() const { return ready_; }

  // Once a tap's fd is open it has carrier, but the kernel turns the link on (operstate UP,
  // a real queue discipline instead of the no-op one) from delayed work, up to a second
  // later. A reply sent before that is dropped: wait for it, as a guest retrying ARP would.
  static bool wait_until_up(const char* name) {
    std::string cmd = std::string("ip -o link show dev ") + name + " | grep -q 'state UP'";
    for (int i = 0; i < 300; ++i) {
      if (std::system(cmd.c_str()) == 0) return true;
      ::poll(nullptr, 0, 10);
    }
    return false;
  }

 private:
  UniqueFd original_;
  bool ready_ = false;
};

TEST(NetTap, MissingTapIsAnErrorNamingIt) {
  TapNamespace ns("tapunit0");
  if (!ns.ready()) GTEST_SKIP() << "needs root and /dev/net/tun";
  try {
    open_tap("nosuchtap7");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'nosuchtap7' does not exist"), std::string::npos) << e.what();
  }
  EXPECT_THROW(open_tap("lo"), Error);  // exists, but is no tap
  {
    // An earlier user of the (persistent) tap left a small send buffer, which would make
    // writes wait: ember lifts it, as the event thread's own writes rely on.
    UniqueFd earlier = open_tap("tapunit0");
    int small = 4096;
    ASSERT_EQ(::ioctl(earlier.get(), TUNSETSNDBUF, &small), 0);
  }
  UniqueFd fd = open_tap("tapunit0");
  int sndbuf = 0;
  ASSERT_EQ(::ioctl(fd.get(), TUNGETSNDBUF, &sndbuf), 0);
  EXPECT_EQ(sndbuf, INT_MAX);
  EXPECT_EQ(set_tap_offloads(fd.get(), tap_offload_flags(offered_features())), 0);
}

TEST(NetTap, ArpRequestOutAndTheKernelsReplyBack) {
  TapNamespace ns("tapunit1");
  if (!ns.ready()) GTEST_SKIP() << "needs root and /dev/net/tun";
  GuestMemory memory = test::small_guest_memory(8);
  test::VirtioDriver rx{memory, 16, 0x10000, 0x200000}, tx{memory, 16, 0x40000, 0x400000};
  UniqueFd irqfd{::eventfd(0, EFD_NONBLOCK)};
  Interrupt interrupt{irqfd.get()};
  IoUringRing ring{64};
  NetDeviceOptions options;
  options.id = "eth0";
  options.mac = {0x06, 0, 0, 0, 0, 2};
  options.queue_size = 16;
  options.tap_writes_never_block = true;  // as ember runs it
  NetDevice device(options, open_tap("tapunit1"), ring);
  ring.seal();
  ASSERT_TRUE(TapNamespace::wait_until_up("tapunit1"));
  std::vector<SplitQueue> queues;
  queues.push_back(*SplitQueue::create(memory, rx.config(), 16, {true, true}));
  queues.push_back(*SplitQueue::create(memory, tx.config(), 16, {true, true}));
  uint64_t acked = offered_features() | bit(kFeatureVersion1);
  device.activate(queues, interrupt, acked);
  std::vector<Buffer> rx_buffers;
  for (int i = 0; i < 8; ++i) {
    rx_buffers.push_back(rx.alloc(2048));
    rx.add({}, {rx_buffers.back()});
  }
  device.process_queue(kRxQueue);

  // ARP "who has 169.254.30.1, tell 169.254.30.2" from the guest's MAC.
  const uint8_t arp[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x06, 0, 0, 0, 0, 2, 0x08, 0x06,  // ethernet
                         0, 1, 0x08, 0, 6, 4, 0, 1,                                           // request
                         0x06, 0, 0, 0, 0, 2, 169, 254, 30, 2,                                // sender
                         0, 0, 0, 0, 0, 0, 169, 254, 30, 1};                                  // target
  Buffer packet = tx.alloc(kNetHeaderSize + sizeof(arp));
  std::memcpy(tx.bytes(packet).data() + kNetHeaderSize, arp, sizeof(arp));
  tx.add({packet}, {});
  // A GSO header on a 60-byte frame with no TCP in it: the tap refuses it.
  NetHeader bogus{};
  bogus.gso_type = kGsoTcpV4;
  bogus.gso_size = 1;
  bogus.hdr_len = 9000;
  Buffer bad = tx.alloc(kNetHeaderSize + 60);
  std::memcpy(tx.bytes(bad).data(), &bogus, sizeof(bogus));
  tx.add({bad}, {});
  device.process_queue(kTxQueue);
  EXPECT_EQ(tx.used_idx(), 2) << "small frames are written at once, without an io_uring round trip";

  auto arp_reply_seen = [&] {
    for (uint16_t i = 0; i < rx.used_idx(); ++i) {
      auto used = rx.used(i);
      auto bytes = rx.bytes(rx_buffers.at(used.id));
      if (used.len >= kNetHeaderSize + 42 && bytes[kNetHeaderSize + 12] == 0x08 &&
          bytes[kNetHeaderSize + 13] == 0x06 && bytes[kNetHeaderSize + 21] == 2) {
        return true;
      }
    }
    return false;
  };
  for (int i = 0; i < 200 && !(arp_reply_seen() && tx.used_idx() == 2); ++i) {
    pollfd p{ring.event_fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    ring.reap();
  }
  EXPECT_TRUE(arp_reply_seen());
  EXPECT_EQ(tx.used_idx(), 2);
  uint64_t tx_packets = 0, tx_errors = 0;
  device.report_metrics([&](std::string_view n, uint64_t v) {
    if (n == "tx_packets_count") tx_packets = v;
    if (n == "tap_write_fails") tx_errors = v;
  });
  EXPECT_EQ(tx_packets, 1u);
  EXPECT_EQ(tx_errors, 1u);
  device.reset();
}

}  // namespace
}  // namespace ember::virtio::net
