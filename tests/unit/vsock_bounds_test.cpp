// virtio-vsock under a hostile guest or careless host clients: every buffer and
// list the device keeps stays bounded, descriptors stay within budget, silent
// peers time out, and what a client can make ember log is rate-limited.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "base/util/log.h"
#include "tests/unit/vsock_harness.h"

namespace ember::virtio::vsock {
namespace {

using namespace vsock_test;
using namespace std::chrono_literals;

// A guest connection to the host listener at <uds>_5000, accepted by the "host".
UniqueFd open_guest_connection(Harness& t, const UniqueFd& listener, uint32_t guest_port = 1234) {
  t.give_rx(1);
  t.send(t.packet(kOpRequest, guest_port, 5000));
  auto got = t.received();
  EXPECT_TRUE(got.size() == 1 && got[0].h.op == kOpResponse);
  return UniqueFd(::accept(listener.get(), nullptr, nullptr));
}

// Drives the loop until `done` or about two seconds pass.
template <typename F>
bool run_until(Harness& t, F done) {
  for (int i = 0; i < 200 && !done(); ++i) t.loop.run_once(10);
  return done();
}

TEST(VsockBounds, SlowHostReaderKeepsPendingWithinBufAlloc) {
  constexpr uint32_t kBufAlloc = 256 * 1024;  // the default
  Harness t([](VsockDeviceOptions& o) { o.buf_alloc = kBufAlloc; });
  UniqueFd listener = unix_listen(t.uds + "_5000");
  UniqueFd host = open_guest_connection(t, listener);
  ASSERT_TRUE(host.valid());
  t.give_rx(8);
  // The guest keeps its credit window full; the host reads less per round than
  // the guest could send, so the device's buffer is rarely empty.
  const std::string chunk(kMaxPayload, 'x');
  uint32_t sent = 0, fwd_cnt = 0;
  size_t host_read = 0, most_held = 0;
  char buf[16 * 1024];
  for (int round = 0; round < 8000 && host_read < (8u << 20); ++round) {
    while (kBufAlloc - (sent - fwd_cnt) >= chunk.size()) {
      t.send(t.packet(kOpRw, 1234, 5000, kMaxPayload), chunk);
      sent += kMaxPayload;
    }
    ssize_t n = ::recv(host.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) host_read += static_cast<size_t>(n);
    t.loop.run_once(0);
    auto got = t.received();
    for (const Packet& p : got) {
      ASSERT_EQ(p.h.op, kOpCreditUpdate);
      fwd_cnt = p.h.fwd_cnt;
    }
    t.give_rx(static_cast<int>(got.size()));
    most_held = std::max(most_held, t.device->backlog().pending_bytes);
  }
  EXPECT_GE(host_read, 8u << 20);
  EXPECT_LE(most_held, size_t{kBufAlloc} + kMaxPayload);
  EXPECT_EQ(t.device->connection_count(), 1u);
}

TEST(VsockBounds, RequestRstLoopWithoutRxBuffersKeepsListsSmall) {
  Harness t;  // the guest never posts an rx buffer
  UniqueFd listener = unix_listen(t.uds + "_5000");
  for (int i = 0; i < 10000; ++i) {
    t.send(t.packet(kOpRequest, 1234, 5000));
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
    ASSERT_TRUE(host.valid());
    t.send(t.packet(kOpRst, 1234, 5000));
  }
  EXPECT_EQ(t.device->connection_count(), 0u);
  VsockDevice::Backlog b = t.device->backlog();
  EXPECT_EQ(b.owing_links, 0u);
  EXPECT_EQ(b.loose_packets, 0u);
}

TEST(VsockBounds, StarvedLinksForgottenWhenTheyClose) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  for (int i = 0; i < 2000; ++i) {
    // One rx buffer without a notification: the RESPONSE takes it, and host
    // data then waits for more.
    Buffer b = t.rx_pool[0];
    t.rx_buffers[t.rx.add({}, {b})] = b;
    t.send(t.packet(kOpRequest, 1234, 5000));
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
    ASSERT_TRUE(host.valid());
    ASSERT_EQ(::write(host.get(), "x", 1), 1);
    t.loop.run_once(0);
    t.send(t.packet(kOpRst, 1234, 5000));
  }
  EXPECT_EQ(t.device->connection_count(), 0u);
  EXPECT_LE(t.device->backlog().starved_links, 1u);
  EXPECT_EQ(t.device->backlog().owing_links, 0u);
}

TEST(VsockBounds, UnknownConnectionRstsBounded) {
  constexpr uint32_t kMaxLoose = 256;  // the device's, with no live links
  Harness t;  // no rx buffers: every RST owed waits
  for (uint32_t i = 0; i < 5000; ++i) t.send(t.packet(kOpRw, 1, i, 0));
  EXPECT_LE(t.device->backlog().loose_packets, kMaxLoose);
  EXPECT_EQ(t.metric("control_dropped"), 5000u - kMaxLoose);
}

// Lowers RLIMIT_NOFILE's soft limit for one test.
class FdLimit {
 public:
  explicit FdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = soft;
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0);
  }
  ~FdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

int lowest_free_fd() {
  UniqueFd probe(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return probe.get();
}

TEST(VsockBounds, ConnectionsLeaveDescriptorsForTheRestOfEmber) {
  // The device reads the limit when it is built (its thread may not ask later): lower it
  // first, leaving room for the harness's own descriptors and about 40 connections.
  FdLimit limit(static_cast<rlim_t>(lowest_free_fd() + 20 + 40 + kFdReserve));
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  ASSERT_EQ(::fcntl(listener.get(), F_SETFL, O_NONBLOCK), 0);
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  const int kRoom = static_cast<int>(now.rlim_cur) - kFdReserve - lowest_free_fd();  // for connections
  ASSERT_GT(kRoom, 10);
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    t.give_rx(1);
    t.send(t.packet(kOpRequest, 2000 + static_cast<uint32_t>(i), 5000));
    for (const Packet& p : t.received()) refused += p.h.op == kOpRst;
    // The host closes its end at once: the device's socket stays, one descriptor each.
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
  }
  EXPECT_GE(refused, 100 - kRoom);
  EXPECT_LE(t.device->connection_count(), static_cast<size_t>(kRoom));
  // A host client beyond the budget is closed as soon as it is accepted.
  UniqueFd client = unix_connect(t.uds);
  EXPECT_TRUE(run_until(t, [&] { return peer_closed(client.get(), 0); }));
  // The rest of ember can still open files.
  std::vector<UniqueFd> others;
  for (int i = 0; i < kFdReserve / 2; ++i) {
    others.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(others.back().valid()) << "descriptor " << i << ": " << std::strerror(errno);
  }
}

TEST(VsockBounds, HeaderOnlyRxBuffersDoNotEndTheConnection) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  UniqueFd host = open_guest_connection(t, listener);
  ASSERT_TRUE(host.valid());
  for (int i = 0; i < 2; ++i) {
    Buffer header_only = t.rx.alloc(kHeaderSize);
    t.rx_buffers[t.rx.add({}, {header_only})] = header_only;
  }
  t.device->process_queue(kRxQueue);
  ASSERT_EQ(::write(host.get(), "data", 4), 4);
  t.loop.run_once(200);
  std::vector<Packet> got = t.received();
  t.give_rx(1);
  t.loop.run_once(200);
  for (const Packet& p : t.received()) got.push_back(p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRw);
  EXPECT_EQ(got[0].data, "data");
  EXPECT_EQ(t.device->connection_count(), 1u);
}

TEST(VsockBounds, SilentHostClientTimesOut) {
  Harness t([](VsockDeviceOptions& o) { o.handshake_timeout = 50ms; });
  UniqueFd host = unix_connect(t.uds);
  ASSERT_EQ(::write(host.get(), "CONN", 4), 4);  // and never the rest of the line
  t.loop.run_once(200);
  EXPECT_EQ(t.device->connection_count(), 1u);
  EXPECT_TRUE(run_until(t, [&] { return t.device->connection_count() == 0; }));
  EXPECT_TRUE(peer_closed(host.get(), 0));
}

TEST(VsockBounds, UnansweredRequestTimesOutWithRst) {
  Harness t([](VsockDeviceOptions& o) { o.handshake_timeout = 50ms; });
  t.give_rx(4);
  UniqueFd host = unix_connect(t.uds);
  ASSERT_EQ(::write(host.get(), "CONNECT 80\n", 11), 11);
  ASSERT_TRUE(run_until(t, [&] { return t.rx.used_idx() == 1; }));
  std::vector<Packet> got = t.received();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].h.op, kOpRequest);
  uint32_t host_port = got[0].h.src_port;
  // The guest never answers.
  EXPECT_TRUE(run_until(t, [&] { return t.device->connection_count() == 0; }));
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRst);
  EXPECT_EQ(got[0].h.src_port, host_port);
  EXPECT_EQ(got[0].h.dst_port, 80u);
  EXPECT_TRUE(peer_closed(host.get(), 0));  // without an "OK" line
}

TEST(VsockBounds, BadConnectLinesLogRateLimited) {
  namespace fs = std::filesystem;
  fs::path file = fs::temp_directory_path() / ("ember-vsock-log-" + std::to_string(::getpid()));
  log::LoggerConfig saved = log::current_config();
  log::configure({file.string(), log::Level::Warn, false, false});
  {
    Harness t;
    for (int i = 0; i < 200; ++i) {
      UniqueFd host = unix_connect(t.uds);
      ASSERT_EQ(::write(host.get(), "HELLO\n", 6), 6);
      t.loop.run_once(200);  // accept
      t.loop.run_once(200);  // the line, refused
      EXPECT_TRUE(peer_closed(host.get(), 200));
    }
  }
  log::LoggerConfig back = saved;
  back.log_path.clear();
  log::configure(back);
  std::ifstream in(file);
  size_t lines = static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
  fs::remove(file);
  // At most a burst per second (10) and a "suppressed" line, over a test of a few seconds.
  // (Earlier tests may have used this second's burst, so there may be none.)
  EXPECT_LE(lines, 50u);
}

}  // namespace
}  // namespace ember::virtio::vsock
