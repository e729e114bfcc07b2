// virtio-vsock (virtio 1.2 section 5.10) with Firecracker's host side ("hybrid
// vsock"): host processes reach guest ports through the Unix socket at uds_path
// ("CONNECT <port>\n"), and guest connections to the host's port P reach the
// process listening at <uds_path>_P. Runs on the VM's event thread.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event_loop.h"
#include "base/util/unique_fd.h"
#include "virtio/virtio_device.h"
#include "virtio/vsock/connection.h"
#include "virtio/vsock/host_protocol.h"
#include "virtio/vsock/pending_bytes.h"

namespace ember::virtio::vsock {

struct VsockDeviceOptions {
  uint64_t guest_cid = 3;
  std::string uds_path;
  uint32_t buf_alloc = 256 * 1024;  // per connection: guest data the VMM may hold
  size_t max_connections = 1024;  // more are refused; RLIMIT_NOFILE may allow fewer (kFdReserve)
  uint16_t queue_size = 256;
  // A host client must send its CONNECT line, and the guest answer our REQUEST,
  // within this (Firecracker's 2 s); else the host stream is closed and the guest gets RST.
  std::chrono::milliseconds handshake_timeout{2000};
  // After a restore, host connections wait for the guest to take the TRANSPORT_RESET event
  // (see VsockDevice), at most this long. Linux takes it within tens of ms, but a guest
  // resuming slowly (a loaded host, a sanitized build in the emulated host) may take over
  // 1 s, the old bound (the likeliest cause of one sanitized FaaS endurance failure): a
  // connection let through before it did is reset by the guest once it takes the event.
  // Meanwhile each held connection still ends at handshake_timeout, so clients retry.
  std::chrono::milliseconds reset_ack_timeout{10000};
};

// Descriptors kept free for the rest of ember: a connection whose socket would
// leave fewer is refused (RST to the guest, close to a host client).
constexpr int kFdReserve = 64;

class VsockDevice final : public VirtioDevice {
 public:
  // Listens on uds_path (throws Error if it is in use) and watches it on `loop`.
  VsockDevice(const VsockDeviceOptions& options, EventLoop& loop);
  ~VsockDevice() override;  // closes every connection and removes uds_path

  uint32_t device_type() const override { return kDeviceTypeVsock; }
  uint64_t device_features() const override { return 0; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t acked_features) override;
  void reset() override;
  // Returns the rx buffer held for host data (empty, length 0): afterwards no chain is held.
  void drain() override;
  void process_queue(uint16_t index) override;
  // The guest CID, which must equal the configured one. Connections are not carried
  // over: a restored device has none and, once active, puts one TRANSPORT_RESET event
  // (5.10.6.6) on the event queue, as soon as the driver gave it a buffer there, so the
  // guest resets the sockets it had. Host connections made before the guest took that
  // event wait (their REQUEST is held) until it did, which the driver shows by giving the
  // event queue a new buffer (and notifying it); at most reset_ack_timeout. Else a guest
  // that finds the REQUEST and the event in one interrupt (Linux handles rx first) would
  // accept the new connection and then reset it with the old ones.
  void save_state(snapshot::StateWriter& out) const override;
  void restore_state(snapshot::StateReader& in) override;
  void report_metrics(const MetricSink& sink) const override;

  size_t connection_count() const { return links_.size(); }
  // What the device holds on behalf of the guest and host clients; each stays
  // under a bound however the guest or a client behaves.
  struct Backlog {
    size_t pending_bytes = 0;  // storage for guest data not yet written to host sockets
    size_t owing_links = 0;    // links queued to send control packets
    size_t starved_links = 0;  // links waiting for rx buffers
    size_t loose_packets = 0;  // RSTs queued for no live link
    size_t held_links = 0;     // host connections waiting for the guest to take a reset
  };
  Backlog backlog() const;

 private:
  using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC, as the timerfd

  // One host Unix stream and, once the CONNECT line is read, its vsock connection.
  struct Link {
    uint64_t id = 0;
    UniqueFd fd;
    std::optional<Connection> conn;
    ConnectLineParser parser;
    std::string greeting;          // "OK <port>\n" not yet written
    PendingBytes pending;          // guest data not yet written to the host
    bool shut_wr = false;
    bool in_rx_list = false;
    bool starved = false;          // waits for rx buffers
    bool held = false;             // its REQUEST waits for the guest to take a transport reset
    std::optional<Clock::time_point> deadline;  // for the CONNECT line or the guest's RESPONSE
    // Control packets owed to the guest.
    bool owe_request = false, owe_response = false, owe_shutdown = false, owe_credit = false;
  };
  Link* find(uint64_t id);
  static uint64_t key(uint32_t host_port, uint32_t guest_port) { return (uint64_t{host_port} << 32) | guest_port; }

  // Host side.
  void on_accept();
  bool admit(int fd);
  void on_link_event(uint64_t id, uint32_t events);
  void read_connect_line(Link& link);
  void read_host(Link& link);
  void flush_to_host(Link& link);
  void update_interest(Link& link);
  uint32_t allocate_host_port();
  Link& add_link(UniqueFd fd);
  void establish(Link& link, uint32_t host_port, uint32_t guest_port, Connection::State state);
  // Drops the link; `rst` tells the guest (5.10.6.6; also the normal end after
  // both sides shut down); `failed` counts it as reset rather than closed.
  void close_link(Link& link, bool rst, bool failed = true);
  // Handshake timeouts: one timerfd armed for the earliest deadline.
  void set_deadline(Link& link);
  void clear_deadline(Link& link);
  void arm_timer();
  void on_timer();
  void expire(Link& link);

  // Guest side.
  void handle_tx(DescriptorChain& chain);
  void on_guest_request(const PacketHeader& h);
  void forward_to_host(Link& link, ChainReader payload, uint32_t len);
  void send_loose(const PacketHeader& h);
  void owe(Link& link);
  void pump_rx();
  bool write_control(Link& link, DescriptorChain& chain);
  // A spare chain, else the rx queue's next; none there marks rx starved (host reads stop
  // until the driver adds buffers) unless `starve_if_none` is false.
  std::optional<DescriptorChain> pop_rx(bool starve_if_none = true);
  void finish_rx(DescriptorChain& chain, PacketHeader h, uint32_t payload);
  void refuse_rx(DescriptorChain& chain, const char* why);
  void after_change(Link& link);
  void signal_if_needed();
  void send_transport_reset();
  // activate() starts the wait whenever a reset is owed, so it also covers a reset still
  // waiting for an event buffer; once it ends, nothing is held.
  bool holds_host_requests() const { return reset_ack_deadline_.has_value(); }
  void start_reset_wait();
  // The guest took the reset (or reset_ack_timeout passed): held REQUESTs go out.
  void end_reset_wait(const char* why);

  VsockDeviceOptions options_;
  EventLoop& loop_;
  UniqueFd listener_;
  ino_t listener_inode_ = 0;
  bool listener_paused_ = false;
  UniqueFd timer_;
  rlim_t fd_limit_;  // RLIMIT_NOFILE at construction
  bool leaves_fd_reserve(int fd) const;

  // Event thread.
  std::span<SplitQueue> queues_;
  Interrupt* interrupt_ = nullptr;
  bool active_ = false;
  // Popped, then not needed; taken again before the queue. At most kPacketsPerEvent: only
  // one host read's batch (or one control packet) gives chains back, after taking them here.
  std::vector<DescriptorChain> spare_rx_;
  // One host read's rx buffers, and the iovecs of their payload parts (reused, no allocation
  // per read).
  struct RxSlot {
    DescriptorChain chain;
    ChainWriter header;  // the chain's first kHeaderSize bytes
    size_t room;         // payload bytes this read may put in it
  };
  std::vector<RxSlot> rx_batch_;
  std::vector<iovec> rx_iov_;
  bool rx_starved_ = false;
  bool owe_transport_reset_ = false;  // restored: the guest must drop its connections
  std::optional<Clock::time_point> reset_ack_deadline_;  // set while host REQUESTs are held
  uint16_t reset_event_avail_ = 0;  // the event queue's avail.idx when the reset went out
  std::vector<uint64_t> held_requests_;  // ids of live links only, each once: at most max_connections
  std::unordered_map<uint64_t, std::unique_ptr<Link>> links_;
  std::unordered_map<uint64_t, uint64_t> by_key_;  // key(host, guest port) -> link id
  std::unordered_map<uint32_t, uint32_t> host_ports_;  // host port -> live connections
  // Ids of live links only (close_link removes them), each at most once.
  std::deque<uint64_t> rx_list_;     // links owing control packets
  std::vector<uint64_t> starved_;    // links waiting for rx buffers
  std::deque<PacketHeader> loose_;   // RSTs not tied to a live link
  // (deadline, link id): links in a handshake, at most one entry each; id 0 (no link has
  // it) is the end of the wait for the guest to take a transport reset.
  std::set<std::pair<Clock::time_point, uint64_t>> deadlines_;
  uint64_t next_id_ = 1;
  uint32_t next_host_port_ = 1024;

  struct Counters {
    std::atomic<uint64_t> opened{0}, closed{0}, reset{0}, rx_packets{0}, tx_packets{0}, rx_bytes{0},
        tx_bytes{0}, errors{0}, dropped{0};
  } mutable counters_;
};

}  // namespace ember::virtio::vsock
