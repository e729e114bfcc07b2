// virtio-vsock device driven through real virtqueues with Unix sockets on the
// host side: both connection directions, data both ways, credit, shutdown, and
// hostile packets (each answered per spec and counted).
#include <gtest/gtest.h>

#include <set>

#include "tests/unit/vsock_harness.h"

namespace ember::virtio::vsock {
namespace {

using namespace vsock_test;

TEST(VsockDevice, ConfigSpaceHoldsGuestCid) {
  Harness t;
  uint64_t cid = 0;
  t.device->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&cid), 8));
  EXPECT_EQ(cid, kCid);
  EXPECT_EQ(t.device->device_type(), 19u);
  EXPECT_EQ(t.device->queue_max_sizes().size(), 3u);
}

TEST(VsockDevice, GuestConnectsToHostListener) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  t.give_rx(8);
  t.send(t.packet(kOpRequest, 1234, 5000));
  auto got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpResponse);
  EXPECT_EQ(got[0].h.src_port, 5000u);
  EXPECT_EQ(got[0].h.dst_port, 1234u);
  EXPECT_EQ(got[0].h.dst_cid, kCid);
  EXPECT_EQ(got[0].h.buf_alloc, 8192u);
  UniqueFd host(::accept(listener.get(), nullptr, nullptr));
  ASSERT_TRUE(host.valid());

  t.send(t.packet(kOpRw, 1234, 5000, 5), "hello");
  EXPECT_EQ(read_some(host.get()), "hello");
  ASSERT_EQ(::write(host.get(), "world", 5), 5);
  t.loop.run_once(200);
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRw);
  EXPECT_EQ(got[0].data, "world");

  // Host half-closes: the guest hears SHUTDOWN(SEND); then the guest's own
  // SHUTDOWN ends the connection with RST.
  ::shutdown(host.get(), SHUT_WR);
  t.loop.run_once(200);
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpShutdown);
  EXPECT_EQ(got[0].h.flags, kShutdownSend);
  t.send(t.packet(kOpShutdown, 1234, 5000, 0, kShutdownBoth));
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRst);
  EXPECT_EQ(read_some(host.get()), "");  // EOF
  EXPECT_EQ(t.device->connection_count(), 0u);
  EXPECT_EQ(t.metric("conns_added"), 1u);
}

TEST(VsockDevice, GuestConnectWithoutListenerGetsRst) {
  Harness t;
  t.give_rx(4);
  t.send(t.packet(kOpRequest, 1234, 6000));
  auto got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRst);
}

TEST(VsockDevice, HostConnectsToGuestPort) {
  Harness t;
  t.give_rx(8);
  UniqueFd host = unix_connect(t.uds);
  ASSERT_EQ(::write(host.get(), "CONNECT 80\n", 11), 11);
  t.loop.run_once(200);  // accept
  t.loop.run_once(200);  // the line
  auto got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpRequest);
  EXPECT_EQ(got[0].h.dst_port, 80u);
  uint32_t host_port = got[0].h.src_port;
  EXPECT_GE(host_port, 1024u);
  t.send(t.packet(kOpResponse, 80, host_port));
  t.loop.run_once(200);
  EXPECT_EQ(read_some(host.get()), "OK " + std::to_string(host_port) + "\n");
  t.send(t.packet(kOpRw, 80, host_port, 3), "abc");
  EXPECT_EQ(read_some(host.get()), "abc");
  // The guest resets: the host socket closes.
  t.send(t.packet(kOpRst, 80, host_port));
  EXPECT_EQ(read_some(host.get()), "");
  EXPECT_EQ(t.device->connection_count(), 0u);
}

TEST(VsockDevice, HostGarbageLineClosesConnection) {
  Harness t;
  UniqueFd host = unix_connect(t.uds);
  ASSERT_EQ(::write(host.get(), "HELLO\n", 6), 6);
  t.loop.run_once(200);
  t.loop.run_once(200);
  EXPECT_EQ(read_some(host.get()), "");
  EXPECT_EQ(t.device->connection_count(), 0u);
}

TEST(VsockDevice, HostDataWaitsForGuestCredit) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  t.give_rx(8);
  PacketHeader req = t.packet(kOpRequest, 1234, 5000);
  req.buf_alloc = 6;  // the guest can take 6 bytes
  t.send(req);
  t.received();
  UniqueFd host(::accept(listener.get(), nullptr, nullptr));
  ASSERT_EQ(::write(host.get(), "0123456789", 10), 10);
  t.loop.run_once(200);
  auto got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "012345");
  t.loop.run_once(50);
  EXPECT_TRUE(t.received().empty());  // no credit, nothing more read
  t.grant_credit(1234, 5000, 6, 6);
  t.loop.run_once(200);
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "6789");
}

// One host read fills several rx buffers (4 KiB each here, as Linux gives): the bytes arrive
// whole and in order, split at the buffers' sizes and at the guest's credit, and the buffers
// the read did not need carry the next packets.
TEST(VsockDevice, HostDataSplitsOverSeveralBuffersInOrder) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  t.give_rx(8);
  PacketHeader req = t.packet(kOpRequest, 1234, 5000);
  req.buf_alloc = 9000;  // room for two full buffers and 808 bytes of a third
  t.send(req);
  ASSERT_EQ(t.received().size(), 1u);  // RESPONSE
  UniqueFd host(::accept(listener.get(), nullptr, nullptr));
  std::string sent(12000, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + (i * 7) % 26);
  ASSERT_EQ(::write(host.get(), sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
  t.loop.run_once(200);
  auto got = t.received();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].h.len, 4096u);
  EXPECT_EQ(got[1].h.len, 4096u);
  EXPECT_EQ(got[2].h.len, 808u);
  EXPECT_EQ(got[0].data + got[1].data + got[2].data, sent.substr(0, 9000));
  t.loop.run_once(50);
  EXPECT_TRUE(t.received().empty());  // the credit is spent
  t.grant_credit(1234, 5000, 9000, 9000);
  t.loop.run_once(200);
  got = t.received();
  // The credit bounds this read to three buffers too (4096 + 4096 + 808 bytes of room); it
  // fills one and leaves two spare, which carry the SHUTDOWN below.
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, sent.substr(9000));
  ::shutdown(host.get(), SHUT_WR);
  t.loop.run_once(200);
  got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpShutdown);
  EXPECT_EQ(t.rx_returned_empty, 0u);  // none went back unused
  EXPECT_EQ(t.metric("rx_bytes_count"), sent.size());
  t.device->drain();  // as the VM pauses: the spare left goes back empty
  EXPECT_TRUE(t.received().empty());
  EXPECT_EQ(t.rx_returned_empty, 1u);
}

TEST(VsockDevice, CreditRequestAnsweredAndOverrunReset) {
  Harness t;
  UniqueFd listener = unix_listen(t.uds + "_5000");
  t.give_rx(8);
  t.send(t.packet(kOpRequest, 1234, 5000));
  t.received();
  UniqueFd host(::accept(listener.get(), nullptr, nullptr));
  t.send(t.packet(kOpCreditRequest, 1234, 5000));
  auto got = t.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].h.op, kOpCreditUpdate);
  EXPECT_EQ(got[0].h.buf_alloc, 8192u);
  // More than the buf_alloc we advertised in one packet: RST.
  std::string chunk(8193, 'x');
  t.send(t.packet(kOpRw, 1234, 5000, 8193), chunk);
  EXPECT_EQ(t.device->connection_count(), 0u);
  got = t.received();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().h.op, kOpRst);
  EXPECT_GE(t.metric("conns_killed"), 1u);
}

TEST(VsockDevice, HostilePacketsAnsweredAndCounted) {
  Harness t;
  t.give_rx(16);
  // Unknown connection: RST.
  t.send(t.packet(kOpRw, 1, 2, 3), "abc");
  // Wrong source CID: dropped without an answer.
  PacketHeader h = t.packet(kOpRequest, 1, 2);
  h.src_cid = 99;
  t.send(h);
  // Unknown op and bad type: RST.
  t.send(t.packet(42, 1, 2));
  h = t.packet(kOpRequest, 1, 2);
  h.type = 7;
  t.send(h);
  // len larger than the buffer.
  h = t.packet(kOpRw, 1, 2, 1000);
  t.send(h, "short");
  // A chain shorter than a header.
  Buffer small = t.tx.alloc(10);
  t.tx.add({small}, {});
  t.device->process_queue(kTxQueue);
  // RST for an unknown connection is not answered (no RST storms).
  t.send(t.packet(kOpRst, 1, 2));
  auto got = t.received();
  ASSERT_EQ(got.size(), 4u);
  for (auto& p : got) EXPECT_EQ(p.h.op, kOpRst);
  EXPECT_EQ(t.metric("errors"), 6u);
  EXPECT_EQ(t.tx.used_idx(), 7);  // every tx chain went back
}

TEST(VsockDevice, HundredsOfHostConnectionsGetUniquePorts) {
  // The guest never answers these REQUESTs: a loaded machine must not time them out.
  Harness t([](VsockDeviceOptions& o) { o.handshake_timeout = std::chrono::minutes(1); });
  constexpr int kConnections = 300;
  std::vector<UniqueFd> hosts;
  for (int i = 0; i < kConnections; ++i) {
    hosts.push_back(unix_connect(t.uds));
    std::string line = "CONNECT " + std::to_string(9000 + i) + "\n";
    ASSERT_EQ(::write(hosts.back().get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
    t.loop.run_once(0);  // accept, so the listen backlog never fills
  }
  std::set<uint32_t> host_ports, guest_ports;
  for (int round = 0; round < 200 && guest_ports.size() < kConnections; ++round) {
    t.give_rx(16);
    t.loop.run_once(10);
    for (const Packet& p : t.received()) {
      EXPECT_EQ(p.h.op, kOpRequest);
      EXPECT_GE(p.h.src_port, 1024u);
      host_ports.insert(p.h.src_port);
      guest_ports.insert(p.h.dst_port);
    }
  }
  EXPECT_EQ(guest_ports.size(), static_cast<size_t>(kConnections));
  EXPECT_EQ(host_ports.size(), static_cast<size_t>(kConnections));
  EXPECT_EQ(t.device->connection_count(), static_cast<size_t>(kConnections));
}

TEST(VsockDevice, ControlPacketsWaitForRxBuffers) {
  Harness t;
  for (int i = 0; i < 5; ++i) t.send(t.packet(kOpRw, 1, static_cast<uint32_t>(i), 0));
  EXPECT_TRUE(t.received().empty());
  t.give_rx(3);
  EXPECT_EQ(t.received().size(), 3u);
  t.give_rx(3);
  EXPECT_EQ(t.received().size(), 2u);
}

}  // namespace
}  // namespace ember::virtio::vsock
