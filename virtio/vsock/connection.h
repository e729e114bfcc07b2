// One vsock stream connection as the device sees it: its state, both peers'
// shutdown flags and the credit accounting of virtio 1.2 section 5.10.6.3.
// Pure logic, no I/O: the device asks it what a guest packet means and when
// it may read from or must write to the host socket.
#pragma once

#include <cstdint>

#include "virtio/vsock/packet.h"

namespace ember::virtio::vsock {

// What the device must do about one packet from the guest.
struct Reaction {
  bool reset = false;          // answer RST and drop the connection
  bool drop = false;           // the guest reset it: drop without answering
  bool established = false;    // the guest accepted our REQUEST
  bool forward_data = false;   // RW: forward `len` payload bytes to the host
  bool credit_update = false;  // answer with CREDIT_UPDATE
  const char* why = "";        // for a reset: what the guest did wrong
};

class Connection {
 public:
  enum class State {
    Connecting,   // host-initiated: REQUEST sent, waiting for RESPONSE
    Established,
  };

  Connection(uint32_t host_port, uint32_t guest_port, uint32_t buf_alloc, State state)
      : host_port_(host_port), guest_port_(guest_port), buf_alloc_(buf_alloc), state_(state) {}

  uint32_t host_port() const { return host_port_; }
  uint32_t guest_port() const { return guest_port_; }
  State state() const { return state_; }

  // A packet from the guest for this connection, already validated.
  Reaction on_packet(const PacketHeader& header);
  // Every packet carries the sender's credit (5.10.6.3); on_packet applies it
  // too, this is for the REQUEST that creates a connection.
  void on_peer_credit(const PacketHeader& header) {
    peer_buf_alloc_ = header.buf_alloc;
    peer_fwd_cnt_ = header.fwd_cnt;
  }

  // Host to guest: how many bytes the guest can take now (its buf_alloc minus
  // what is in flight), and what was sent.
  uint32_t send_credit() const;
  void on_sent(uint32_t bytes) { tx_cnt_ += bytes; }

  // Guest to host: bytes received but not yet written to the host socket,
  // which the guest's credit bounds by our buf_alloc.
  uint32_t buffered() const { return rx_cnt_ - fwd_cnt_; }
  void on_forwarded(uint32_t bytes) { fwd_cnt_ += bytes; }
  // Our fwd_cnt moved far enough since the guest last heard it (or it asked).
  bool credit_update_due() const;
  // Fills our buf_alloc and fwd_cnt into a header going to the guest.
  void stamp(PacketHeader& header);

  // The host process closed its sending side (read returned 0).
  void on_host_eof() { host_eof_ = true; }
  bool host_eof() const { return host_eof_; }
  uint32_t guest_shutdown() const { return guest_shutdown_; }

  // Whether the device may read more from the host socket for the guest.
  bool wants_host_data() const;
  // The guest will send nothing more and all of it reached the host: the host
  // socket's write side can be shut down.
  bool host_write_done() const { return (guest_shutdown_ & kShutdownSend) && buffered() == 0; }
  // Neither side has anything more to say: RST the guest and close (5.10.6.6).
  bool finished() const;

 private:
  Reaction reset(const char* why);

  uint32_t host_port_;
  uint32_t guest_port_;
  uint32_t buf_alloc_;  // ours
  State state_;

  // 5.10.6.3, all counters wrapping u32 as on the wire.
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;  // bytes we sent to the guest
  uint32_t rx_cnt_ = 0;  // bytes the guest sent us
  uint32_t fwd_cnt_ = 0;  // of those, written to the host socket
  uint32_t advertised_fwd_cnt_ = 0;
  bool credit_requested_ = false;

  uint32_t guest_shutdown_ = 0;  // kShutdownRcv / kShutdownSend as the guest sent them
  bool host_eof_ = false;
};

}  // namespace ember::virtio::vsock
