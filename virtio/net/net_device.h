// virtio-net (virtio 1.2 section 5.1) on a host tap: one RX and one TX queue,
// both driven through the VM's shared io_uring, with checksum/TSO offloads
// passed through to the tap and mergeable RX buffers.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/util/unique_fd.h"
#include "virtio/io_uring_ring.h"
#include "virtio/rate_limiter.h"
#include "virtio/throttle_timer.h"
#include "virtio/virtio_device.h"

namespace ember::virtio::net {

constexpr uint32_t kDeviceTypeNet = 1;
constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;

struct NetDeviceOptions {
  std::string id;  // log and metrics name
  std::array<uint8_t, 6> mac{};
  uint16_t queue_size = 256;
  // TX packets handed to the tap and not yet completed, at most.
  uint32_t max_tx_in_flight = 64;
  // TUNSETOFFLOAD (returns 0 or errno); tests replace it when the "tap" is a socket.
  std::function<int(int fd, unsigned flags)> set_offloads;
  // Frames wait while these limiters have no room for them; each costs one op and its
  // bytes as the tap sees them (the 12-byte virtio-net header included). A throttled RX
  // frame stays read, and the tap is not read again until it went to the guest.
  RateLimiterConfig rx_rate_limiter;
  RateLimiterConfig tx_rate_limiter;
  EventLoop* loop = nullptr;  // for the limiters' timers; without it, no limiter
  RateLimiter::Clock clock;   // tests inject one; empty: the steady clock
  // Batches of RX reads use RWF_NOWAIT until the tap refuses it once, then O_NONBLOCK around
  // each batch. False starts with the latter (tests: their "tap" is a socket, which takes both).
  bool nowait_reads = true;
  // The tap never makes a writer wait (open_tap() sets its send buffer unlimited): TX frames
  // (a bounded number and bytes per pass) are then written by the event thread itself when no
  // io_uring write is in flight,
  // instead of each costing an io_uring round trip (on Linux 6.1 a hand-off to an io-wq
  // worker, as the tap refuses non-blocking attempts). False for stand-ins that can block
  // (a socket whose peer stops reading): every frame goes through io_uring.
  bool tap_writes_never_block = false;
  // Of those, at most these bytes per pass over the TX queue (TSO frames are up to 64 KiB):
  // the rest of the pass goes through io_uring, so RX and the other devices get the event thread.
  size_t tx_now_bytes = 1 << 20;
};

class NetDevice final : public VirtioDevice {
 public:
  // `tap` carries frames with a 12-byte virtio_net_hdr_v1 (see open_tap()).
  NetDevice(NetDeviceOptions options, UniqueFd tap, IoUringRing& ring);
  ~NetDevice() override;

  uint32_t device_type() const override { return kDeviceTypeNet; }
  uint64_t device_features() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  std::vector<uint16_t> queue_max_sizes() const override { return {options_.queue_size, options_.queue_size}; }
  void activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t acked_features) override;
  void reset() override;
  // Cancels TX writes still in flight (those packets are dropped, their buffers returned)
  // and returns the RX buffers held for a packet not yet delivered empty (length 0: a
  // short frame the driver drops, then refills): afterwards the device holds no chain.
  void drain() override;
  void process_queue(uint16_t index) override;
  // The MAC the guest read: a restored device keeps it, whatever its options said (a
  // generated MAC differs per process). The negotiated features come back through
  // activate(), which sets the new tap's offloads to match.
  void save_state(snapshot::StateWriter& out) const override;
  void restore_state(snapshot::StateReader& in) override;
  void report_metrics(const MetricSink& sink) const override;
  std::string describe_state() const override;
  // PATCH /network-interfaces: the buckets each update names are replaced
  // (RateLimiterConfig). Event thread, or any thread while it is parked.
  void update_rate_limiters(const RateLimiterConfig& rx, const RateLimiterConfig& tx);

 private:
  struct RxRead final : RingCompletion {
    NetDevice* device = nullptr;
    void on_ring_complete(int32_t result) override { device->on_rx_read(result); }
  };
  struct TxSlot final : RingCompletion {
    NetDevice* device = nullptr;
    DescriptorChain chain;
    std::vector<iovec> iov;
    bool tso = false;
    void on_ring_complete(int32_t result) override { device->on_tx_done(*this, result); }
  };
  struct Counters {
    std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, rx_gso{0}, rx_errors{0}, rx_dropped{0}, rx_no_buffer{0};
    std::atomic<uint64_t> tx_packets{0}, tx_bytes{0}, tx_tso{0}, tx_errors{0}, tx_malformed{0}, tx_throttled{0};
    std::atomic<uint64_t> rx_rate_limited{0}, tx_rate_limited{0};  // frames a rate limiter held back
  };

  // No read in flight, no packet waiting, an active device: the tap may be read.
  bool may_read_rx() const { return !rx_reading_ && !rx_length_ && !resetting_ && interrupt_; }
  void start_rx_read();
  void on_rx_read(int32_t result);
  // Reads the packets the tap holds now (a bounded batch, each handed to the guest before
  // the next is read), then starts an io_uring read.
  void read_rx();
  // Takes a packet of `length` bytes (at least the header) read into rx_packet_; false when it
  // waits for RX buffers or the limiter (no read until then).
  bool take_rx_packet(size_t length);
  // The tap as poll(2) sees it now: "empty" or "readable", for the hang report.
  std::string tap_readiness() const;
  // O_NONBLOCK on or off on the tap, for a batch of reads of a tap that refuses RWF_NOWAIT.
  bool set_tap_nonblocking(bool on);
  // Hands the packet read from the tap to the guest once the RX limiter and the driver's
  // buffers allow; true when it is gone (delivered or dropped), false when it waits.
  bool forward_rx();
  // Copies the pending packet into the driver's RX chains; false when it has to
  // wait for more buffers.
  bool deliver_rx();
  // Pops RX chains until those held can take `bytes`; false when the ring ran dry.
  bool gather_rx_chains(size_t bytes);
  void drop_rx(std::atomic<uint64_t>& counter, const char* why);
  void process_tx();
  void send(DescriptorChain chain);
  // Writes a frame of `bytes` to the tap now; false when it has to go through io_uring instead.
  bool write_tx_now(DescriptorChain& chain, size_t bytes, bool tso);
  void count_tx(int32_t result, bool tso);
  void on_tx_done(TxSlot& slot, int32_t result);
  // Cancels the RX read and waits for everything this device has in the ring.
  void stop_io();
  // Cancels every TX write in flight and waits for them (part of stop_io and drain).
  void cancel_tx();
  void signal_if_needed();

  NetDeviceOptions options_;
  UniqueFd tap_;
  IoUringRing& ring_;
  std::array<uint8_t, 8> config_{};  // 5.1.4: mac, then status (not offered: 0)
  Counters counters_;

  // Event thread.
  std::span<SplitQueue> queues_;
  Interrupt* interrupt_ = nullptr;
  uint64_t acked_ = 0;
  bool resetting_ = false;
  bool in_batch_ = false;
  // RX: one read in flight into rx_packet_, one packet waiting for buffers at most.
  RxRead rx_read_;
  std::vector<uint8_t> rx_packet_;
  iovec rx_iov_{};
  size_t rx_length_ = 0;  // bytes of a packet waiting for RX buffers, 0 if none
  bool rx_reading_ = false;
  bool nowait_reads_ = true;  // the tap takes RWF_NOWAIT reads (false once it refused one)
  int tap_flags_ = -1;        // the tap's file status flags (F_GETFL), read once when needed
  unsigned rx_read_failures_ = 0;  // consecutive
  uint64_t activations_ = 0;
  std::deque<DescriptorChain> rx_chains_;  // popped, not yet used
  size_t rx_chain_bytes_ = 0;              // their writable bytes
  // TX: slots never move (the ring points at them).
  std::vector<TxSlot> tx_slots_;
  std::vector<TxSlot*> tx_free_;
  std::vector<iovec> tx_now_iov_;  // write_tx_now's, kept to reuse its allocation
  unsigned tx_now_budget_ = 0;     // frames write_tx_now may still write in this pass
  size_t tx_now_bytes_ = 0;        // and their bytes
  bool tx_throttled_ = false;
  // Rate limiting: a frame the limiter held back is the first one handled next.
  RateLimiter rx_limiter_;
  RateLimiter tx_limiter_;
  std::unique_ptr<ThrottleTimer> rx_timer_;  // with options.loop
  std::unique_ptr<ThrottleTimer> tx_timer_;
  bool rx_paid_ = false;                     // the waiting RX packet was charged
  bool rx_waits_for_limiter_ = false;
  std::optional<DescriptorChain> tx_held_;
};

}  // namespace ember::virtio::net
