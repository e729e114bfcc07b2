#include "virtio/net/net_device.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>

#include "base/util/error.h"
#include "base/util/log.h"
#include "virtio/guest_warning.h"
#include "virtio/net/net_header.h"
#include "virtio/net/tap.h"
#include "virtio/spec.h"

namespace ember::virtio::net {

namespace {

// Consecutive failed tap reads after which RX stops until the driver next adds
// buffers, so a broken tap cannot make the event thread spin.
constexpr unsigned kMaxRxReadFailures = 16;

// Packets read from the tap at once, after a read completed, before one interrupt tells the
// guest of them all; bounded (32 GSO frames are 2 MiB) so TX and other devices get the event
// thread in between. Large frames too: a bulk download's 64 KiB frames one interrupt each
// cost the guest about five times the interrupts of frames taken in groups, and their
// time was QEMU's only with groups (perf/net/NOTES.md, 2026-12-03).
constexpr unsigned kRxBatch = 32;
// TX frames the event thread writes to the tap itself in one pass over the TX queue
// (NetDeviceOptions::tap_writes_never_block, with tx_now_bytes bounding their bytes); the rest
// of a guest that keeps the queue full then goes through io_uring, whose completions resume
// TX, so RX and the other devices get the event thread in between. TSO frames (up to 64 KiB)
// too: through io_uring each cost a hand-off to an io-wq worker and back on Linux 6.1, and a
// bulk upload's time then spread over three times the range of QEMU's (perf/net/NOTES.md,
// 2026-12-03).
constexpr unsigned kTxNowBatch = 256;

}  // namespace

NetDevice::NetDevice(NetDeviceOptions options, UniqueFd tap, IoUringRing& ring)
    : options_(std::move(options)),
      tap_(std::move(tap)),
      ring_(ring),
      rx_limiter_(options_.rx_rate_limiter, options_.clock),
      tx_limiter_(options_.tx_rate_limiter, options_.clock) {
  nowait_reads_ = options_.nowait_reads;
  if (options_.loop) {
    std::string name = "net '" + options_.id + "'";
    rx_timer_ = std::make_unique<ThrottleTimer>(*options_.loop, [this] { process_queue(kRxQueue); }, name);
    tx_timer_ = std::make_unique<ThrottleTimer>(*options_.loop, [this] { process_queue(kTxQueue); }, name);
  } else if (rx_limiter_.enabled() || tx_limiter_.enabled()) {
    fail("net '", options_.id, "': a rate limiter needs the event loop");
  }
  ring_.add_file(tap_.get());
  if (!options_.set_offloads) options_.set_offloads = set_tap_offloads;
  std::copy(options_.mac.begin(), options_.mac.end(), config_.begin());
  rx_read_.device = this;
  rx_packet_.resize(kMaxPacket);
  rx_iov_ = {rx_packet_.data(), rx_packet_.size()};
  tx_slots_ = std::vector<TxSlot>(std::max<uint32_t>(options_.max_tx_in_flight, 1));
  for (TxSlot& slot : tx_slots_) {
    slot.device = this;
    tx_free_.push_back(&slot);
  }
  ring_.on_batch_end([this] {
    if (!interrupt_ || resetting_) return;
    if (tx_throttled_ && !tx_free_.empty()) {
      process_tx();
      ring_.submit();
    }
    signal_if_needed();
  });
}

NetDevice::~NetDevice() {
  // The ring and the queues may already be gone (the MMIO bus outlives them): forget
  // the chains without touching either. The ring's teardown cancels the read.
  for (DescriptorChain& chain : rx_chains_) chain.abandon();
  for (TxSlot& slot : tx_slots_) slot.chain.abandon();
  if (tx_held_) tx_held_->abandon();
  const Counters& c = counters_;
  log::info(cat("net '", options_.id, "': rx ", c.rx_packets.load(), " packets (", c.rx_gso.load(), " GSO), ",
                c.rx_bytes.load(), " bytes; tx ", c.tx_packets.load(), " packets (", c.tx_tso.load(), " TSO), ",
                c.tx_bytes.load(), " bytes; errors rx ", c.rx_errors.load(), " tx ",
                c.tx_errors.load() + c.tx_malformed.load()));
}

uint64_t NetDevice::device_features() const { return offered_features(); }

void NetDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  if (offset >= config_.size()) return;  // the transport zero-filled `data`
  size_t n = std::min<size_t>(data.size(), config_.size() - offset);
  std::memcpy(data.data(), config_.data() + offset, n);
}

void NetDevice::write_config(uint64_t offset, std::span<const uint8_t>) {
  // 5.1.4: the MAC is writable only by legacy drivers, which ember does not serve.
  warn_guest(cat("net '", options_.id, "': write to config offset ", offset, " ignored"));
}

void NetDevice::activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t acked_features) {
  queues_ = queues;
  interrupt_ = &interrupt;
  acked_ = acked_features;
  resetting_ = false;
  unsigned offloads = tap_offload_flags(acked_);
  if (int err = options_.set_offloads(tap_.get(), offloads)) {
    // The tap then hands over plain, fully checksummed frames, which every driver takes.
    warn_limited(cat("net '", options_.id, "': TUNSETOFFLOAD ", hex(offloads), ": ", errno_text(err)));
  }
  // Once at info level: a guest looping on reset and activation only repeats it at debug.
  std::string what = cat("net '", options_.id, "': driver acked features ", hex(acked_), ", tap offloads ", hex(offloads));
  if (activations_++ == 0) log::info(what);
  else log::debug(what);
}

void NetDevice::stop_io() {
  resetting_ = true;
  if (rx_reading_) ring_.cancel(&rx_read_);
  cancel_tx();
  ring_.wait_until([this] { return !rx_reading_; });
  // The driver owns its rings again: held buffers are simply forgotten (2.4).
  for (DescriptorChain& chain : rx_chains_) chain.abandon();
  rx_chains_.clear();
  rx_chain_bytes_ = 0;
  rx_length_ = 0;
  rx_paid_ = rx_waits_for_limiter_ = false;
  // The timers are left to expire into an idle device: this may run on the main
  // thread, which cannot arm them.
  if (tx_held_) tx_held_->abandon();
  tx_held_.reset();
}

void NetDevice::cancel_tx() {
  // A TX write waits while the tap (or whatever stands in for it) takes nothing: a
  // reset or a pause must not wait for the host.
  for (TxSlot& slot : tx_slots_) {
    if (std::find(tx_free_.begin(), tx_free_.end(), &slot) == tx_free_.end()) ring_.cancel(&slot);
  }
  ring_.wait_until([this] { return tx_free_.size() == tx_slots_.size(); });
}

void NetDevice::drain() {
  if (!interrupt_) return;
  // Not throttled while cancelling, or the batch-end hook would send more.
  bool throttled = std::exchange(tx_throttled_, false);
  cancel_tx();
  tx_throttled_ = throttled;
  // The RX read in flight fills rx_packet_, host memory: it may go on.
  for (DescriptorChain& chain : rx_chains_) chain.complete(0);
  rx_chains_.clear();
  rx_chain_bytes_ = 0;
  signal_if_needed();
}

void NetDevice::save_state(snapshot::StateWriter& out) const {
  out.bytes(std::span<const uint8_t>(config_.data(), options_.mac.size()));
}

void NetDevice::restore_state(snapshot::StateReader& in) {
  std::vector<uint8_t> mac = in.bytes("mac", options_.mac.size());
  if (mac.size() != options_.mac.size()) in.invalid("mac", cat(mac.size(), " bytes, not 6"));
  std::copy(mac.begin(), mac.end(), config_.begin());
}

void NetDevice::reset() {
  stop_io();
  if (int err = options_.set_offloads(tap_.get(), 0)) {
    warn_limited(cat("net '", options_.id, "': TUNSETOFFLOAD 0: ", errno_text(err)));
  }
  queues_ = {};
  interrupt_ = nullptr;
  acked_ = 0;
  tx_throttled_ = false;
  rx_read_failures_ = 0;
}

void NetDevice::process_queue(uint16_t index) {
  if (!interrupt_ || index >= queues_.size()) return;
  in_batch_ = true;
  if (index == kRxQueue) {
    // New buffers (or the RX limiter's timer): finish the packet that waited, then read the next.
    if (rx_length_) forward_rx();
    rx_read_failures_ = 0;
    read_rx();
  } else {
    process_tx();
  }
  in_batch_ = false;
  ring_.submit();
  signal_if_needed();
}

void NetDevice::start_rx_read() {
  if (!may_read_rx()) return;
  if (!ring_.readv(tap_.get(), &rx_iov_, 1, 0, &rx_read_)) {
    // Retried when the driver next adds RX buffers.
    ++counters_.rx_errors;
    warn_limited(cat("net '", options_.id, "': io_uring submission queue full, RX paused"));
    return;
  }
  rx_reading_ = true;
}

void NetDevice::on_rx_read(int32_t result) {
  rx_reading_ = false;
  if (resetting_ || !interrupt_ || result == -ECANCELED) return;
  if (result < static_cast<int32_t>(kNetHeaderSize)) {
    // Failed, or a frame without the header the tap always prepends (0: end of file, which a
    // read returns at once, again and again): nothing to deliver. Counted either way, so that
    // a tap that keeps doing it pauses RX instead of making the event thread spin.
    ++counters_.rx_errors;
    warn_limited(cat("net '", options_.id, "': ",
                     result < 0 ? cat("read from tap failed: ", errno_text(-result))
                                : cat("read of ", result, " bytes from the tap, shorter than the header")));
    if (++rx_read_failures_ >= kMaxRxReadFailures) {
      warn_limited(cat("net '", options_.id, "': ", rx_read_failures_, " tap reads failed in a row; RX paused"));
      return;
    }
    start_rx_read();
    return;
  }
  rx_read_failures_ = 0;
  if (take_rx_packet(static_cast<size_t>(result))) read_rx();
}

bool NetDevice::take_rx_packet(size_t length) {
  rx_length_ = length;
  rx_paid_ = false;
  // Otherwise no busy loop and no queue of packets: the tap keeps (or drops) the rest
  // until the driver adds buffers and notifies the RX queue, or the limiter's timer fires.
  return forward_rx();
}

void NetDevice::read_rx() {
  // What the tap already holds is read now, without waiting, each packet handed to the guest
  // before the next is read: one wake-up and one interrupt for the lot instead of an io_uring
  // round trip each. Then one io_uring read waits for more. "Without waiting" is RWF_NOWAIT;
  // a tap that refuses it (Linux 6.1's) is made O_NONBLOCK for the batch instead (no io_uring
  // read is in flight meanwhile, and the next one needs the tap blocking again to wait).
  bool nonblocking = false;
  bool waiting = false;  // a packet waits for buffers or the limiter: no read until then
  for (unsigned i = 0; i < kRxBatch && may_read_rx(); ++i) {
    ssize_t n = -1;
    if (nowait_reads_) {
      n = ::preadv2(tap_.get(), &rx_iov_, 1, -1, RWF_NOWAIT);
      if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) nowait_reads_ = false;
    }
    if (!nowait_reads_) {
      if (!nonblocking) {
        // Most completions find the tap empty (a download paced by the guest's ACKs): one
        // poll then, not the fcntl pair and a read that fails.
        pollfd pending{tap_.get(), POLLIN, 0};
        if (::poll(&pending, 1, 0) != 1 || !(pending.revents & POLLIN) || !set_tap_nonblocking(true)) break;
        nonblocking = true;
      }
      n = ::readv(tap_.get(), &rx_iov_, 1);
    }
    // EAGAIN (empty), failures and reads shorter than the header (end of file) alike: the
    // io_uring read that follows reports and counts a failure.
    if (n < static_cast<ssize_t>(kNetHeaderSize)) break;
    if (!take_rx_packet(static_cast<size_t>(n))) {
      waiting = true;
      break;
    }
  }
  if (nonblocking) set_tap_nonblocking(false);
  if (!waiting) start_rx_read();
}

bool NetDevice::set_tap_nonblocking(bool on) {
  if (tap_flags_ < 0) tap_flags_ = ::fcntl(tap_.get(), F_GETFL);
  if (tap_flags_ < 0 || ::fcntl(tap_.get(), F_SETFL, on ? tap_flags_ | O_NONBLOCK : tap_flags_) < 0) {
    ++counters_.rx_errors;
    warn_limited(cat("net '", options_.id, "': cannot switch the tap's O_NONBLOCK: ", errno_text()));
    return false;
  }
  return true;
}

bool NetDevice::forward_rx() {
  if (!rx_paid_) {
    Nanos wait = rx_limiter_.consume(rx_length_, 1);
    if (wait.count() > 0) {
      if (!rx_waits_for_limiter_) ++counters_.rx_rate_limited;
      rx_waits_for_limiter_ = true;
      rx_timer_->arm(wait);
      return false;
    }
    rx_paid_ = true;
    rx_waits_for_limiter_ = false;
  }
  if (deliver_rx()) return true;
  ++counters_.rx_no_buffer;
  return false;
}

void NetDevice::drop_rx(std::atomic<uint64_t>& counter, const char* why) {
  ++counter;
  warn_limited(cat("net '", options_.id, "': RX packet of ", rx_length_, " bytes dropped: ", why));
  rx_length_ = 0;
}

bool NetDevice::deliver_rx() {
  SplitQueue& queue = queues_[kRxQueue];
  bool merge = (acked_ & bit(kFeatureMrgRxbuf)) != 0;
  // 5.1.6.3: without MRG_RXBUF the whole packet goes into one chain.
  size_t needed = merge ? rx_length_ : 1;
  for (;;) {
    while (!rx_chains_.empty() && rx_chains_.front().writer().remaining() < kNetHeaderSize) {
      ++counters_.rx_errors;
      warn_guest(cat("net '", options_.id, "': RX buffer of ", rx_chains_.front().writer().remaining(),
                     " bytes cannot hold the ", kNetHeaderSize, "-byte header"));
      rx_chain_bytes_ -= rx_chains_.front().writer().remaining();
      rx_chains_.front().complete(0);
      rx_chains_.pop_front();
    }
    if (!rx_chains_.empty() && rx_chain_bytes_ >= needed) break;
    if (rx_chains_.size() >= queue.size()) {
      drop_rx(counters_.rx_dropped, "the driver's RX buffers together are too small");
      return true;
    }
    std::optional<DescriptorChain> chain = queue.pop();
    if (!chain) return false;
    rx_chain_bytes_ += chain->writer().remaining();
    rx_chains_.push_back(std::move(*chain));
  }
  if (!merge && rx_chains_.front().writer().remaining() < rx_length_) {
    drop_rx(counters_.rx_dropped, "RX buffer too small (no VIRTIO_NET_F_MRG_RXBUF)");
    return true;
  }
  uint16_t count = 0;
  for (size_t bytes = 0; bytes < rx_length_; ++count) bytes += rx_chains_[count].writer().remaining();
  NetHeader header;
  std::memcpy(&header, rx_packet_.data(), kNetHeaderSize);
  if (const char* why = prepare_rx_header(header, acked_, count)) {
    drop_rx(counters_.rx_errors, why);
    return true;
  }
  std::memcpy(rx_packet_.data(), &header, kNetHeaderSize);
  size_t offset = 0;
  for (uint16_t i = 0; i < count; ++i) {
    DescriptorChain chain = std::move(rx_chains_.front());
    rx_chains_.pop_front();
    ChainWriter writer = chain.writer();
    rx_chain_bytes_ -= writer.remaining();
    size_t n = writer.write(std::span<const uint8_t>(rx_packet_.data() + offset, rx_length_ - offset));
    offset += n;
    chain.complete_unpublished(static_cast<uint32_t>(n));
  }
  // The driver must see every buffer of the packet at once (it reads num_buffers
  // entries in a row).
  queue.publish_used();
  ++counters_.rx_packets;
  if (header.gso_type != kGsoNone) ++counters_.rx_gso;
  counters_.rx_bytes += rx_length_ - kNetHeaderSize;
  rx_length_ = 0;
  return true;
}

void NetDevice::process_tx() {
  SplitQueue& queue = queues_[kTxQueue];
  tx_now_budget_ = kTxNowBatch;
  tx_now_bytes_ = options_.tx_now_bytes;
  while (!tx_free_.empty()) {
    bool was_held = tx_held_.has_value();
    std::optional<DescriptorChain> chain = was_held ? std::move(tx_held_) : queue.pop();
    tx_held_.reset();
    if (!chain) {
      tx_throttled_ = false;
      return;
    }
    Nanos wait = tx_limiter_.consume(chain->reader().remaining(), 1);
    if (wait.count() > 0) {
      if (!was_held) ++counters_.tx_rate_limited;
      tx_held_ = std::move(chain);
      tx_throttled_ = false;  // the limiter's timer resumes TX, not a completion
      tx_timer_->arm(wait);
      return;
    }
    send(std::move(*chain));
  }
  // Resumed from the batch-end hook when a packet completes.
  if (!tx_throttled_) ++counters_.tx_throttled;
  tx_throttled_ = true;
}

void NetDevice::send(DescriptorChain chain) {
  ChainReader reader = chain.reader();
  size_t total = reader.remaining();
  NetHeader header{};
  const char* why = nullptr;
  if (total < kNetHeaderSize || !reader.read_obj(header)) {
    why = "shorter than the 12-byte header";
  } else if (total > kMaxPacket) {
    why = "longer than 65562 bytes";
  } else {
    // The guest may change the header after this check; the tap checks it again
    // (and everything else) when it takes the packet.
    why = check_tx_header(header, acked_);
  }
  if (why) {
    ++counters_.tx_malformed;
    warn_guest(cat("net '", options_.id, "': TX packet of ", total, " bytes rejected: ", why));
    chain.complete(0);
    return;
  }
  bool tso = header.gso_type != kGsoNone;
  if (write_tx_now(chain, total, tso)) return;
  TxSlot& slot = *tx_free_.back();
  tx_free_.pop_back();
  slot.iov.clear();
  slot.tso = tso;
  chain.reader().append_iovecs(slot.iov);
  slot.chain = std::move(chain);
  if (!ring_.writev(tap_.get(), slot.iov.data(), static_cast<unsigned>(slot.iov.size()), 0, &slot)) {
    on_tx_done(slot, -EBUSY);
  }
}

bool NetDevice::write_tx_now(DescriptorChain& chain, size_t bytes, bool tso) {
  // Frames reach the tap in the guest's order: none may overtake a write still in flight.
  if (!options_.tap_writes_never_block || tx_free_.size() != tx_slots_.size() || tx_now_budget_ == 0 ||
      bytes > tx_now_bytes_) {
    return false;
  }
  --tx_now_budget_;
  tx_now_bytes_ -= bytes;
  tx_now_iov_.clear();
  chain.reader().append_iovecs(tx_now_iov_);
  ssize_t n = ::writev(tap_.get(), tx_now_iov_.data(), static_cast<int>(tx_now_iov_.size()));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;  // io_uring waits instead
  count_tx(n < 0 ? -errno : static_cast<int32_t>(n), tso);
  chain.complete(0);  // 5.1.6.2: TX buffers come back with nothing written
  return true;
}

void NetDevice::count_tx(int32_t result, bool tso) {
  if (result < 0) {
    ++counters_.tx_errors;
    warn_limited(cat("net '", options_.id, "': tap refused a TX packet: ", errno_text(-result)));
  } else {
    ++counters_.tx_packets;
    if (tso) ++counters_.tx_tso;
    counters_.tx_bytes += static_cast<uint64_t>(std::max<int32_t>(result - int32_t{kNetHeaderSize}, 0));
  }
}

void NetDevice::on_tx_done(TxSlot& slot, int32_t result) {
  count_tx(result, slot.tso);
  // 5.1.6.2: TX buffers come back with nothing written.
  if (resetting_) slot.chain.abandon();
  else slot.chain.complete(0);
  tx_free_.push_back(&slot);
}

void NetDevice::signal_if_needed() {
  if (in_batch_ || !interrupt_) return;
  bool any = false;
  for (SplitQueue& q : queues_) any |= q.needs_interrupt();
  if (any) interrupt_->signal_used();
}

void NetDevice::report_metrics(const MetricSink& sink) const {
  const Counters& c = counters_;
  sink("rx_packets_count", c.rx_packets.load(std::memory_order_relaxed));
  sink("rx_bytes_count", c.rx_bytes.load(std::memory_order_relaxed));
  sink("rx_gso_packets", c.rx_gso.load(std::memory_order_relaxed));
  sink("rx_fails", c.rx_errors.load(std::memory_order_relaxed));
  sink("rx_dropped", c.rx_dropped.load(std::memory_order_relaxed));
  sink("no_rx_avail_buffer", c.rx_no_buffer.load(std::memory_order_relaxed));
  sink("tx_packets_count", c.tx_packets.load(std::memory_order_relaxed));
  sink("tx_bytes_count", c.tx_bytes.load(std::memory_order_relaxed));
  sink("tx_tso_packets", c.tx_tso.load(std::memory_order_relaxed));
  sink("tap_write_fails", c.tx_errors.load(std::memory_order_relaxed));
  sink("tx_malformed_frames", c.tx_malformed.load(std::memory_order_relaxed));
  sink("tx_throttled", c.tx_throttled.load(std::memory_order_relaxed));
  sink("rx_rate_limiter_throttled", c.rx_rate_limited.load(std::memory_order_relaxed));
  sink("tx_rate_limiter_throttled", c.tx_rate_limited.load(std::memory_order_relaxed));
}

void NetDevice::update_rate_limiters(const RateLimiterConfig& rx, const RateLimiterConfig& tx) {
  if (!rx_timer_) fail("net '", options_.id, "': a rate limiter needs the event loop");
  rx_limiter_.update(rx);
  tx_limiter_.update(tx);
  // Whatever waits may fit now, or must wait a different time: decided on the event thread.
  if (rx_waits_for_limiter_) rx_timer_->expire_now();
  if (tx_held_) tx_timer_->expire_now();
}

std::string NetDevice::describe_state() const {
  return cat("tx in flight ", tx_slots_.size() - tx_free_.size(), " of ", tx_slots_.size(),
             tx_throttled_ ? " (throttled)" : "", ", rx read ", rx_reading_ ? "pending" : "not pending",
             rx_waits_for_limiter_ ? ", rx packet waiting for the rate limiter " : ", rx packet waiting for buffers ",
             rx_length_, " bytes, tx packet waiting for the rate limiter ", tx_held_ ? "yes" : "no",
             ", rx chains held ", rx_chains_.size(), " (", rx_chain_bytes_, " bytes), rx read failures ",
             rx_read_failures_, ", tap ", tap_readiness(), "; rx packets ", counters_.rx_packets.load(),
             ", tx packets ", counters_.tx_packets.load(), ", rx errors ", counters_.rx_errors.load(),
             ", tx errors ", counters_.tx_errors.load());
}

std::string NetDevice::tap_readiness() const {
  // Whether a frame waits in the tap: with an RX read pending, one waiting there would mean a
  // lost completion; none, that the host sent nothing. The tap is not read here.
  pollfd p{tap_.get(), POLLIN, 0};
  int n = ::poll(&p, 1, 0);
  if (n < 0) return cat("poll failed: ", errno_text());
  return n == 0 ? "empty" : cat("readable (revents ", hex(static_cast<uint32_t>(p.revents)), ")");
}

}  // namespace ember::virtio::net
