// virtio-vsock pure logic: packet header checks, the connection state machine and
// credit accounting (including a hostile guest), and the CONNECT line parser.
#include <gtest/gtest.h>

#include <utility>

#include "virtio/vsock/connection.h"
#include "virtio/vsock/host_protocol.h"
#include "virtio/vsock/packet.h"

namespace ember::virtio::vsock {
namespace {

constexpr uint64_t kCid = 3;

PacketHeader guest_packet(uint16_t op, uint32_t len = 0, uint32_t flags = 0, uint32_t buf_alloc = 65536,
                          uint32_t fwd_cnt = 0) {
  // The host's view of the same connection, turned around.
  PacketHeader h = make_header(kCid, 5000, 1234, op, flags, len);
  h.src_cid = kCid, h.dst_cid = kHostCid, h.src_port = 1234, h.dst_port = 5000;
  h.buf_alloc = buf_alloc;
  h.fwd_cnt = fwd_cnt;
  return h;
}

TEST(VsockPacket, AcceptsWellFormedPackets) {
  EXPECT_TRUE(validate_tx(guest_packet(kOpRequest), kCid, 0).ok());
  EXPECT_TRUE(validate_tx(guest_packet(kOpRw, 100), kCid, 100).ok());
  EXPECT_TRUE(validate_tx(guest_packet(kOpRw, 100), kCid, 4096).ok());  // longer buffer is fine
}

TEST(VsockPacket, RejectsHostileHeaders) {
  PacketHeader h = guest_packet(kOpRw, 200);
  EXPECT_EQ(validate_tx(h, kCid, 100).error(), PacketError::LenMismatch);
  h.len = kMaxPayload + 1;
  EXPECT_EQ(validate_tx(h, kCid, kMaxPayload + 1).error(), PacketError::LenTooLarge);
  h = guest_packet(kOpShutdown, 10);
  EXPECT_EQ(validate_tx(h, kCid, 10).error(), PacketError::PayloadNotRw);
  h = guest_packet(kOpRw);
  h.src_cid = 4;
  EXPECT_EQ(validate_tx(h, kCid, 0).error(), PacketError::WrongSrcCid);
  h = guest_packet(kOpRw);
  h.dst_cid = 1;
  EXPECT_EQ(validate_tx(h, kCid, 0).error(), PacketError::WrongDstCid);
  h = guest_packet(kOpRw);
  h.type = 2;  // SEQPACKET, not negotiated
  EXPECT_EQ(validate_tx(h, kCid, 0).error(), PacketError::BadType);
  EXPECT_EQ(validate_tx(guest_packet(0), kCid, 0).error(), PacketError::UnknownOp);
  EXPECT_EQ(validate_tx(guest_packet(8), kCid, 0).error(), PacketError::UnknownOp);
  EXPECT_FALSE(answer_with_rst(PacketError::WrongSrcCid));
  EXPECT_FALSE(answer_with_rst(PacketError::TooShort));
  EXPECT_TRUE(answer_with_rst(PacketError::UnknownOp));
  EXPECT_TRUE(answer_with_rst(PacketError::LenMismatch));
}

TEST(VsockConnection, HostInitiatedHandshake) {
  Connection c(1024, 5000, 4096, Connection::State::Connecting);
  EXPECT_FALSE(c.wants_host_data());
  EXPECT_TRUE(c.on_packet(guest_packet(kOpRw, 10)).reset);  // data before RESPONSE

  Connection d(1024, 5000, 4096, Connection::State::Connecting);
  Reaction r = d.on_packet(guest_packet(kOpResponse));
  EXPECT_TRUE(r.established);
  EXPECT_EQ(d.state(), Connection::State::Established);
  EXPECT_TRUE(d.wants_host_data());
  EXPECT_TRUE(d.on_packet(guest_packet(kOpResponse)).reset);  // a second RESPONSE
}

TEST(VsockConnection, GuestRefusesOurRequest) {
  Connection c(1024, 5000, 4096, Connection::State::Connecting);
  Reaction r = c.on_packet(guest_packet(kOpRst));
  EXPECT_TRUE(r.drop);
  EXPECT_FALSE(r.reset);
}

TEST(VsockConnection, DuplicateRequestResets) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  Reaction r = c.on_packet(guest_packet(kOpRequest));
  EXPECT_TRUE(r.reset);
  EXPECT_STRNE(r.why, "");
}

TEST(VsockConnection, SendCreditFollowsPeerCounters) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  c.on_packet(guest_packet(kOpCreditUpdate, 0, 0, /*buf_alloc=*/1000, /*fwd_cnt=*/0));
  EXPECT_EQ(c.send_credit(), 1000u);
  c.on_sent(600);
  EXPECT_EQ(c.send_credit(), 400u);
  c.on_sent(400);
  EXPECT_EQ(c.send_credit(), 0u);
  EXPECT_FALSE(c.wants_host_data());  // no credit: stop reading the host socket
  c.on_packet(guest_packet(kOpCreditUpdate, 0, 0, 1000, 700));
  EXPECT_EQ(c.send_credit(), 700u);
  // A guest claiming it consumed more than we sent gets no credit, not a wrap.
  c.on_packet(guest_packet(kOpCreditUpdate, 0, 0, 1000, 5000));
  EXPECT_EQ(c.send_credit(), 0u);
}

TEST(VsockConnection, CountersWrapLikeTheWire) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  c.on_sent(0xfffffff0u);
  c.on_packet(guest_packet(kOpCreditUpdate, 0, 0, 1000, 0xfffffff0u));
  c.on_sent(0x20);  // tx_cnt wraps past zero
  EXPECT_EQ(c.send_credit(), 1000u - 0x20);
}

TEST(VsockConnection, GuestDataBoundedByOurBufAlloc) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  Reaction r = c.on_packet(guest_packet(kOpRw, 4000));
  EXPECT_TRUE(r.forward_data);
  EXPECT_EQ(c.buffered(), 4000u);
  r = c.on_packet(guest_packet(kOpRw, 97));  // 4097 > buf_alloc: credit overrun
  EXPECT_TRUE(r.reset);
  Connection d(5000, 1234, 4096, Connection::State::Established);
  d.on_packet(guest_packet(kOpRw, 4000));
  d.on_forwarded(3000);
  EXPECT_EQ(d.buffered(), 1000u);
  EXPECT_FALSE(d.on_packet(guest_packet(kOpRw, 3096)).reset);  // exactly full again
}

TEST(VsockConnection, CreditUpdateWhenForwardedOrRequested) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  PacketHeader h{};
  c.stamp(h);
  EXPECT_EQ(h.buf_alloc, 4096u);
  EXPECT_EQ(h.fwd_cnt, 0u);
  EXPECT_FALSE(c.credit_update_due());
  c.on_packet(guest_packet(kOpRw, 2000));
  c.on_forwarded(500);
  EXPECT_FALSE(c.credit_update_due());  // below a quarter of buf_alloc
  c.on_forwarded(1000);
  EXPECT_TRUE(c.credit_update_due());
  c.stamp(h);
  EXPECT_EQ(h.fwd_cnt, 1500u);
  EXPECT_FALSE(c.credit_update_due());
  Reaction r = c.on_packet(guest_packet(kOpCreditRequest));
  EXPECT_TRUE(r.credit_update);
  EXPECT_TRUE(c.credit_update_due());
  c.stamp(h);
  EXPECT_FALSE(c.credit_update_due());
}

TEST(VsockConnection, ShutdownBothWays) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  c.on_packet(guest_packet(kOpRw, 100));
  c.on_packet(guest_packet(kOpShutdown, 0, kShutdownSend));
  EXPECT_FALSE(c.host_write_done());  // 100 bytes still to forward
  EXPECT_TRUE(c.on_packet(guest_packet(kOpRw, 1)).reset);  // data after SHUTDOWN(SEND)

  Connection d(5000, 1234, 4096, Connection::State::Established);
  d.on_packet(guest_packet(kOpRw, 100));
  d.on_packet(guest_packet(kOpShutdown, 0, kShutdownSend));
  d.on_forwarded(100);
  EXPECT_TRUE(d.host_write_done());
  EXPECT_FALSE(d.finished());  // the host may still send
  EXPECT_TRUE(d.wants_host_data());
  d.on_host_eof();
  EXPECT_FALSE(d.wants_host_data());
  EXPECT_TRUE(d.finished());

  Connection e(5000, 1234, 4096, Connection::State::Established);
  e.on_packet(guest_packet(kOpShutdown, 0, kShutdownBoth));
  EXPECT_FALSE(e.wants_host_data());
  EXPECT_TRUE(e.finished());
}

TEST(VsockConnection, UnknownFlagsBitsIgnored) {
  Connection c(5000, 1234, 4096, Connection::State::Established);
  c.on_packet(guest_packet(kOpShutdown, 0, 0xfffffffc));
  EXPECT_EQ(c.guest_shutdown(), 0u);
}

ConnectLineParser::Status feed(ConnectLineParser& p, const std::string& text) {
  ConnectLineParser::Status s = ConnectLineParser::Status::NeedMore;
  for (char c : text) s = p.feed(c);
  return s;
}

TEST(VsockConnectLine, ParsesWholeAndSplitLines) {
  ConnectLineParser p;
  EXPECT_EQ(feed(p, "CONNECT 5000\n"), ConnectLineParser::Status::Done);
  EXPECT_EQ(p.port(), 5000u);
  ConnectLineParser q;
  EXPECT_EQ(feed(q, "CONN"), ConnectLineParser::Status::NeedMore);
  EXPECT_EQ(feed(q, "ECT 4294967294"), ConnectLineParser::Status::NeedMore);
  EXPECT_EQ(feed(q, "\r\n"), ConnectLineParser::Status::Done);
  EXPECT_EQ(q.port(), 4294967294u);
  EXPECT_EQ(ok_line(1024), "OK 1024\n");
}

TEST(VsockConnectLine, RefusesGarbage) {
  for (const char* bad : {"GET / HTTP/1.0\n", "connect 5000\n", "CONNECT\n", "CONNECT \n", "CONNECT 50a0\n",
                          "CONNECT -1\n", "CONNECT 4294967295\n", "CONNECT 99999999999\n", "CONNECT 5000 6\n"}) {
    ConnectLineParser p;
    EXPECT_EQ(feed(p, bad), ConnectLineParser::Status::Invalid) << bad;
    EXPECT_FALSE(p.error().empty());
  }
  ConnectLineParser early;  // refused at the first wrong byte, before any newline
  EXPECT_EQ(feed(early, "X"), ConnectLineParser::Status::Invalid);
  ConnectLineParser endless;
  EXPECT_EQ(feed(endless, "CONNECT " + std::string(100, '1')), ConnectLineParser::Status::Invalid);
}

}  // namespace
}  // namespace ember::virtio::vsock
