#include "virtio/vsock/connection.h"

namespace ember::virtio::vsock {

Reaction Connection::reset(const char* why) {
  Reaction r;
  r.reset = true;
  r.why = why;
  return r;
}

Reaction Connection::on_packet(const PacketHeader& h) {
  on_peer_credit(h);
  Reaction r;
  if (h.op == kOpRst) {
    r.drop = true;
    return r;
  }
  if (state_ == State::Connecting) {
    if (h.op != kOpResponse) return reset("packet other than RESPONSE or RST to a pending REQUEST");
    state_ = State::Established;
    r.established = true;
    return r;
  }
  switch (h.op) {
    case kOpRequest: return reset("duplicate REQUEST for an established connection");
    case kOpResponse: return reset("RESPONSE on an established connection");
    case kOpShutdown:
      guest_shutdown_ |= h.flags & kShutdownBoth;
      return r;
    case kOpRw:
      if (guest_shutdown_ & kShutdownSend) return reset("data after SHUTDOWN(SEND)");
      if (h.len > buf_alloc_ - buffered()) return reset("data beyond the credit we gave");
      rx_cnt_ += h.len;
      r.forward_data = h.len > 0;
      return r;
    case kOpCreditUpdate: return r;
    case kOpCreditRequest:
      credit_requested_ = true;
      r.credit_update = true;
      return r;
    default: return reset("unknown op");
  }
}

uint32_t Connection::send_credit() const {
  uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;
  // A guest claiming to have consumed more than we sent only stalls itself.
  return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

bool Connection::credit_update_due() const {
  return credit_requested_ || fwd_cnt_ - advertised_fwd_cnt_ >= buf_alloc_ / 4;
}

void Connection::stamp(PacketHeader& header) {
  header.buf_alloc = buf_alloc_;
  header.fwd_cnt = fwd_cnt_;
  advertised_fwd_cnt_ = fwd_cnt_;
  credit_requested_ = false;
}

bool Connection::wants_host_data() const {
  return state_ == State::Established && !host_eof_ && !(guest_shutdown_ & kShutdownRcv) && send_credit() > 0;
}

bool Connection::finished() const {
  if (state_ != State::Established || !host_write_done()) return false;
  return host_eof_ || (guest_shutdown_ & kShutdownRcv);
}

}  // namespace ember::virtio::vsock
