#include "virtio/vsock/vsock_device.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "base/util/error.h"
#include "base/util/log.h"
#include "virtio/guest_warning.h"
#include "virtio/vsock/unix_socket.h"

namespace ember::virtio::vsock {

namespace {
// Packets one host event may move before others get a turn.
constexpr int kPacketsPerEvent = 16;
// RSTs owed to the guest for unknown connections beyond live links: more are dropped.
constexpr size_t kMaxLoose = 256;

// RLIMIT_NOFILE, read once at construction: the event thread's seccomp filter does not
// let it ask later, and nothing in ember changes it (the jailer sets it before exec).
rlim_t descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return RLIM_INFINITY;
  return limit.rlim_cur;
}
}  // namespace

VsockDevice::VsockDevice(const VsockDeviceOptions& options, EventLoop& loop)
    : options_(options), loop_(loop), fd_limit_(descriptor_limit()) {
  timer_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_.valid()) fail("vsock '", options.uds_path, "': cannot create a timerfd: ", errno_text());
  listener_ = listen_unix(options.uds_path, &listener_inode_);
  loop_.add(listener_.get(), [this] { on_accept(); });
  loop_.add(timer_.get(), [this] { on_timer(); });
}

VsockDevice::~VsockDevice() {
  reset();
  loop_.remove(timer_.get());
  loop_.remove(listener_.get());
  unlink_if_same(options_.uds_path, listener_inode_);
}

void VsockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // 5.10.4: le64 guest_cid.
  uint8_t config[8];
  std::memcpy(config, &options_.guest_cid, 8);
  if (offset >= sizeof(config)) return;
  std::memcpy(data.data(), config + offset, std::min<size_t>(data.size(), sizeof(config) - offset));
}

void VsockDevice::write_config(uint64_t offset, std::span<const uint8_t>) {
  warn_guest(cat("vsock: write to read-only config offset ", offset, " ignored"));
}

std::vector<uint16_t> VsockDevice::queue_max_sizes() const {
  return {options_.queue_size, options_.queue_size, options_.queue_size};
}

void VsockDevice::activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t) {
  queues_ = queues;
  interrupt_ = &interrupt;
  active_ = true;
  rx_starved_ = false;
  if (owe_transport_reset_) start_reset_wait();
  send_transport_reset();
}

void VsockDevice::drain() {
  if (spare_rx_.empty()) return;
  for (DescriptorChain& chain : spare_rx_) chain.complete(0);
  spare_rx_.clear();
  signal_if_needed();
}

void VsockDevice::save_state(snapshot::StateWriter& out) const { out.u64(options_.guest_cid); }

void VsockDevice::restore_state(snapshot::StateReader& in) {
  uint64_t cid = in.u64("guest cid");
  if (cid != options_.guest_cid) {
    in.invalid("guest cid", cat("the guest had CID ", cid, ", but this device is configured with ", options_.guest_cid));
  }
  owe_transport_reset_ = true;
}

void VsockDevice::send_transport_reset() {
  if (!owe_transport_reset_ || !active_) return;
  auto chain = queues_[kEventQueue].pop();
  if (!chain) return;  // the driver fills the event queue at probe; else at its next notification
  // 5.10.6.6: struct virtio_vsock_event { le32 id; }, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0.
  uint32_t event = kEventTransportReset;
  bool fits = chain->writer().write_obj(event);
  chain->complete(fits ? sizeof(event) : 0);
  if (!fits) {
    warn_guest("vsock: event buffer smaller than an event");
    return signal_if_needed();
  }
  owe_transport_reset_ = false;
  // Linux gives the buffer back right after handling the event: ask to be told (with
  // EVENT_IDX the driver notifies only when asked), which ends the wait for it.
  reset_event_avail_ = queues_[kEventQueue].avail_idx();
  queues_[kEventQueue].request_notification();
  signal_if_needed();
}

void VsockDevice::start_reset_wait() {
  reset_ack_deadline_ = Clock::now() + options_.reset_ack_timeout;
  deadlines_.emplace(*reset_ack_deadline_, 0);
  arm_timer();
}

void VsockDevice::end_reset_wait(const char* why) {
  if (!reset_ack_deadline_) return;
  Clock::time_point started = *reset_ack_deadline_ - options_.reset_ack_timeout;
  deadlines_.erase({*reset_ack_deadline_, 0});
  reset_ack_deadline_.reset();
  arm_timer();
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log::debug(cat("vsock: ", why, " after ", waited.count(), " ms; ", held_requests_.size(),
                 " held host connection(s) go ahead"));
  for (uint64_t id : held_requests_) {
    Link* link = find(id);
    if (!link) continue;  // not expected: close_link removes the id
    link->held = false;
    if (link->owe_request) owe(*link);
  }
  held_requests_.clear();
}

void VsockDevice::reset() {
  // The transport's teardown calls this on the main thread, whose seccomp filter has no
  // timerfd_settime: forget every deadline without re-arming the timer (a later expiry
  // finds none due).
  for (auto& [id, link] : links_) link->deadline.reset();
  deadlines_.clear();
  reset_ack_deadline_.reset();
  held_requests_.clear();
  // The driver gave up its buffers: every connection ends without telling it.
  std::vector<Link*> all;
  for (auto& [id, link] : links_) all.push_back(link.get());
  for (Link* link : all) close_link(*link, false, false);
  for (DescriptorChain& chain : spare_rx_) chain.abandon();
  spare_rx_.clear();
  loose_.clear();
  rx_list_.clear();
  starved_.clear();
  queues_ = {};
  interrupt_ = nullptr;
  active_ = false;
  owe_transport_reset_ = false;  // a new driver has no sockets to reset
}

void VsockDevice::process_queue(uint16_t index) {
  if (!active_) return;
  if (index == kTxQueue) {
    while (auto chain = queues_[kTxQueue].pop()) {
      handle_tx(*chain);
      chain->complete(0);
    }
  } else if (index == kRxQueue) {
    rx_starved_ = false;
    std::vector<uint64_t> waiting;
    waiting.swap(starved_);
    for (uint64_t id : waiting) {
      if (Link* link = find(id)) {
        link->starved = false;
        update_interest(*link);
      }
    }
  }
  // The event queue only carries TRANSPORT_RESET, after a restore. A new buffer there once
  // it went out is the driver giving one back: it has taken the reset. (The transport also
  // calls this for every queue once activated, notification or not.)
  if (index == kEventQueue) {
    if (owe_transport_reset_) send_transport_reset();
    else if (reset_ack_deadline_ && queues_[kEventQueue].avail_idx() != reset_event_avail_) {
      end_reset_wait("the guest took the transport reset");
    }
  }
  pump_rx();
  signal_if_needed();
}

void VsockDevice::report_metrics(const MetricSink& sink) const {
  sink("conns_added", counters_.opened.load(std::memory_order_relaxed));
  sink("conns_removed", counters_.closed.load(std::memory_order_relaxed));
  sink("conns_killed", counters_.reset.load(std::memory_order_relaxed));
  sink("rx_packets_count", counters_.rx_packets.load(std::memory_order_relaxed));
  sink("tx_packets_count", counters_.tx_packets.load(std::memory_order_relaxed));
  sink("rx_bytes_count", counters_.rx_bytes.load(std::memory_order_relaxed));
  sink("tx_bytes_count", counters_.tx_bytes.load(std::memory_order_relaxed));
  sink("errors", counters_.errors.load(std::memory_order_relaxed));
  sink("control_dropped", counters_.dropped.load(std::memory_order_relaxed));
}

VsockDevice::Backlog VsockDevice::backlog() const {
  Backlog b;
  for (const auto& [id, link] : links_) b.pending_bytes += link->pending.capacity();
  b.owing_links = rx_list_.size();
  b.starved_links = starved_.size();
  b.loose_packets = loose_.size();
  b.held_links = held_requests_.size();
  return b;
}

VsockDevice::Link* VsockDevice::find(uint64_t id) {
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : it->second.get();
}

// ---- host side ----

void VsockDevice::on_accept() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of fds: stop accepting until a connection ends, or the loop spins.
        warn_limited(cat("vsock: cannot accept on '", options_.uds_path, "': ", errno_text()));
        loop_.modify(listener_.get(), 0);
        listener_paused_ = true;
      }
      return;
    }
    if (!active_ || !admit(fd.get())) continue;  // closes it
    Link& link = add_link(std::move(fd));
    set_deadline(link);  // for the CONNECT line
    update_interest(link);
  }
}

// The kernel hands out the lowest free descriptor, so a new socket numbered
// within kFdReserve of RLIMIT_NOFILE means fewer than kFdReserve are left for the
// rest of ember (drives, taps, the API, logs), whatever opened the others.
bool VsockDevice::leaves_fd_reserve(int fd) const {
  return fd_limit_ == RLIM_INFINITY || static_cast<rlim_t>(fd) + kFdReserve < fd_limit_;
}

// Whether one more connection fits: below max_connections and, on socket `fd`
// (-1: not opened yet), leaving kFdReserve descriptors. Warns when it does not.
bool VsockDevice::admit(int fd) {
  const char* why = nullptr;
  if (links_.size() >= options_.max_connections) {
    why = "max_connections reached";
  } else if (fd >= 0 && !leaves_fd_reserve(fd)) {
    why = "too few file descriptors left (RLIMIT_NOFILE)";
  }
  if (!why) return true;
  warn_limited(cat("vsock: connection on '", options_.uds_path, "' refused: ", why, ", ", links_.size(), " open"));
  return false;
}

VsockDevice::Link& VsockDevice::add_link(UniqueFd fd) {
  auto link = std::make_unique<Link>();
  link->id = next_id_++;
  link->fd = std::move(fd);
  Link& ref = *link;
  uint64_t id = link->id;
  links_.emplace(id, std::move(link));
  if (!loop_.watch(ref.fd.get(), 0, [this, id](uint32_t events) { on_link_event(id, events); })) {
    warn_limited(cat("vsock: cannot watch a connection: ", errno_text()));
  }
  return ref;
}

void VsockDevice::on_link_event(uint64_t id, uint32_t events) {
  Link* link = find(id);
  if (!link) return;
  if (!link->conn) {
    read_connect_line(*link);
  } else {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) flush_to_host(*link);
    if (!(link = find(id))) return signal_if_needed();
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_host(*link);
    if ((link = find(id)) && link->greeting.empty()) after_change(*link);
    if ((link = find(id))) update_interest(*link);
  }
  pump_rx();
  signal_if_needed();
}

void VsockDevice::read_connect_line(Link& link) {
  // Byte by byte: whatever follows the line stays in the socket for the guest.
  for (;;) {
    char c;
    ssize_t n = ::recv(link.fd.get(), &c, 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return close_link(link, false);
    auto status = link.parser.feed(c);
    if (status == ConnectLineParser::Status::NeedMore) continue;
    if (status == ConnectLineParser::Status::Invalid) {
      warn_limited(cat("vsock: host connection on '", options_.uds_path, "': ", link.parser.error()));
      return close_link(link, false);
    }
    establish(link, allocate_host_port(), link.parser.port(), Connection::State::Connecting);
    set_deadline(link);  // now for the guest's RESPONSE
    link.owe_request = true;
    if (holds_host_requests()) {
      link.held = true;
      held_requests_.push_back(link.id);
    } else {
      owe(link);
    }
    update_interest(link);  // nothing more from the host until the guest accepts
    return;
  }
}

uint32_t VsockDevice::allocate_host_port() {
  // Unique among live connections; links_ is bounded, so this ends.
  for (;;) {
    uint32_t port = next_host_port_;
    next_host_port_ = next_host_port_ >= 0xfffffffe ? 1024 : next_host_port_ + 1;
    if (!host_ports_.count(port)) return port;
  }
}

void VsockDevice::establish(Link& link, uint32_t host_port, uint32_t guest_port, Connection::State state) {
  link.conn.emplace(host_port, guest_port, options_.buf_alloc, state);
  by_key_[key(host_port, guest_port)] = link.id;
  host_ports_[host_port]++;
  counters_.opened.fetch_add(1, std::memory_order_relaxed);
}

void VsockDevice::read_host(Link& link) {
  Connection& conn = *link.conn;
  if (link.owe_response) return;  // the guest must see RESPONSE before data
  // One readv fills up to kPacketsPerEvent rx buffers (4 KiB each from Linux), instead of one
  // readv per buffer: where syscalls are dear (a nested or emulated host) they were most of
  // the cost of moving host data to the guest.
  rx_batch_.clear();
  rx_iov_.clear();
  size_t credit = conn.wants_host_data() ? conn.send_credit() : 0;
  while (credit > 0 && rx_batch_.size() < kPacketsPerEvent) {
    // Only a read that finds no buffer at all starves: one that got some has buffers to fill.
    auto chain = pop_rx(rx_batch_.empty());
    if (!chain) break;
    ChainWriter header = chain->writer();
    if (header.remaining() < kHeaderSize) {
      refuse_rx(*chain, "vsock: rx buffer smaller than a packet header");
      continue;
    }
    if (header.remaining() == kHeaderSize) {
      // readv() with no room at all would return 0, which means the host closed.
      refuse_rx(*chain, "vsock: rx buffer without room for data");
      continue;
    }
    ChainWriter payload = header.split_at(kHeaderSize);
    size_t room = std::min<size_t>({credit, kMaxPayload, payload.remaining()});
    payload.split_at(room);
    payload.append_iovecs(rx_iov_);
    credit -= room;
    rx_batch_.push_back(RxSlot{std::move(*chain), header, room});
  }
  if (rx_batch_.empty()) return;
  // Past IOV_MAX (a guest's many-segment chains) the read fills a prefix; the split below follows
  // the same order, so it stays right.
  ssize_t n = ::readv(link.fd.get(), rx_iov_.data(), static_cast<int>(std::min<size_t>(rx_iov_.size(), IOV_MAX)));
  int read_errno = n < 0 ? errno : 0;
  size_t left = n > 0 ? static_cast<size_t>(n) : 0;
  for (RxSlot& slot : rx_batch_) {
    size_t bytes = std::min(left, slot.room);
    if (bytes == 0) {
      spare_rx_.push_back(std::move(slot.chain));  // unused: the next packet takes it
      continue;
    }
    left -= bytes;
    PacketHeader h = make_header(options_.guest_cid, conn.host_port(), conn.guest_port(), kOpRw, 0,
                                 static_cast<uint32_t>(bytes));
    conn.stamp(h);
    conn.on_sent(static_cast<uint32_t>(bytes));
    slot.header.write_obj(h);
    slot.chain.complete(static_cast<uint32_t>(kHeaderSize + bytes));
    counters_.rx_packets.fetch_add(1, std::memory_order_relaxed);
    counters_.rx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  rx_batch_.clear();
  if (n < 0 && read_errno != EAGAIN && read_errno != EINTR) return close_link(link, true);
  if (n == 0) {
    // The host closed its sending side: so does the guest's peer (5.10.6.5).
    conn.on_host_eof();
    link.owe_shutdown = true;
    owe(link);
  }
}

void VsockDevice::flush_to_host(Link& link) {
  if (!link.greeting.empty()) {
    ssize_t n = ::send(link.fd.get(), link.greeting.data(), link.greeting.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return close_link(link, true);
    if (n > 0) link.greeting.erase(0, static_cast<size_t>(n));
    if (!link.greeting.empty()) return;
  }
  if (!link.pending.empty()) {
    std::span<const uint8_t> bytes = link.pending.front();
    ssize_t n = ::send(link.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return close_link(link, true);
    if (n > 0) {
      link.pending.consume(static_cast<size_t>(n));
      link.conn->on_forwarded(static_cast<uint32_t>(n));
    }
  }
  after_change(link);
}

// After data moved or flags changed: half-close the host side, end the
// connection when both sides are done, or tell the guest about new credit.
void VsockDevice::after_change(Link& link) {
  Connection& conn = *link.conn;
  if (!link.greeting.empty()) return;
  if (conn.host_write_done() && !link.shut_wr) {
    ::shutdown(link.fd.get(), SHUT_WR);
    link.shut_wr = true;
  }
  if (conn.finished()) return close_link(link, true, false);
  if (conn.credit_update_due() && conn.guest_shutdown() == 0) {
    link.owe_credit = true;
    owe(link);
  }
}

void VsockDevice::update_interest(Link& link) {
  uint32_t events = 0;
  if (!link.conn) {
    events = EPOLLIN;
  } else {
    if (!link.greeting.empty() || !link.pending.empty()) events |= EPOLLOUT;
    if (link.greeting.empty() && !link.owe_response && link.conn->wants_host_data()) {
      if (!rx_starved_) {
        events |= EPOLLIN;
      } else if (!link.starved) {
        link.starved = true;
        starved_.push_back(link.id);
      }
    }
  }
  loop_.modify(link.fd.get(), events);
}

void VsockDevice::close_link(Link& link, bool rst, bool failed) {
  if (link.conn) {
    Connection& conn = *link.conn;
    if (rst) send_loose(make_header(options_.guest_cid, conn.host_port(), conn.guest_port(), kOpRst));
    by_key_.erase(key(conn.host_port(), conn.guest_port()));
    auto it = host_ports_.find(conn.host_port());
    if (it != host_ports_.end() && --it->second == 0) host_ports_.erase(it);
    (failed ? counters_.reset : counters_.closed).fetch_add(1, std::memory_order_relaxed);
  }
  // Else a guest that never posts rx buffers grows these by one id per connection.
  if (link.in_rx_list) std::erase(rx_list_, link.id);
  if (link.starved) std::erase(starved_, link.id);
  if (link.held) std::erase(held_requests_, link.id);
  clear_deadline(link);
  loop_.remove(link.fd.get());
  links_.erase(link.id);  // closes the socket
  if (listener_paused_) {
    listener_paused_ = false;
    loop_.modify(listener_.get(), EPOLLIN);
  }
}

// ---- handshake timeouts ----

void VsockDevice::set_deadline(Link& link) {
  clear_deadline(link);
  link.deadline = Clock::now() + options_.handshake_timeout;
  deadlines_.emplace(*link.deadline, link.id);
  arm_timer();
}

void VsockDevice::clear_deadline(Link& link) {
  if (!link.deadline) return;
  deadlines_.erase({*link.deadline, link.id});
  link.deadline.reset();
  arm_timer();
}

void VsockDevice::arm_timer() {
  itimerspec spec{};  // all zero: disarmed
  if (!deadlines_.empty()) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadlines_.begin()->first.time_since_epoch());
    spec.it_value.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;  // 0 would disarm
  }
  if (::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    warn_limited(cat("vsock: cannot arm the handshake timer: ", errno_text()));
  }
}

void VsockDevice::on_timer() {
  uint64_t expirations;
  while (::read(timer_.get(), &expirations, sizeof(expirations)) > 0) {
  }
  Clock::time_point now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t id = deadlines_.begin()->second;
    if (id == 0) {
      warn_limited(cat("vsock: the guest did not take the transport reset within ", options_.reset_ack_timeout.count(),
                       " ms of the restore: host connections go ahead, and the guest may reset them"));
      end_reset_wait("the guest did not take the transport reset in time");
      continue;
    }
    deadlines_.erase(deadlines_.begin());
    if (Link* link = find(id)) {
      link->deadline.reset();
      expire(*link);
    }
  }
  arm_timer();
  pump_rx();
  signal_if_needed();
}

// A host client that never finished its CONNECT line, or a REQUEST the guest
// never answered: either would hold a connection (and a descriptor) forever.
void VsockDevice::expire(Link& link) {
  if (!link.conn) {
    warn_limited(cat("vsock: host connection on '", options_.uds_path, "': no CONNECT line in time"));
    return close_link(link, false);
  }
  warn_guest(cat("vsock: no answer to our REQUEST for port ", link.conn->guest_port(), " in time"));
  // An RST for a REQUEST still queued would name a connection the guest never saw.
  close_link(link, !link.owe_request);
}

// ---- guest side ----

void VsockDevice::handle_tx(DescriptorChain& chain) {
  ChainReader reader = chain.reader();
  PacketHeader h{};
  Result<void, PacketError> valid = Failure{PacketError::TooShort};
  if (reader.read_obj(h)) valid = validate_tx(h, options_.guest_cid, reader.remaining());
  counters_.tx_packets.fetch_add(1, std::memory_order_relaxed);
  bool named = valid || valid.error() != PacketError::TooShort;  // a header to look the connection up by
  auto it = named ? by_key_.find(key(h.dst_port, h.src_port)) : by_key_.end();
  Link* link = it == by_key_.end() ? nullptr : find(it->second);
  if (!valid) {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    warn_guest(cat("vsock: tx packet op ", h.op, " from port ", h.src_port, " to ", h.dst_port, ": ",
                   describe(valid.error())));
    if (!answer_with_rst(valid.error())) return;
    if (link) return close_link(*link, true);
    if (h.op != kOpRst) send_loose(make_header(options_.guest_cid, h.dst_port, h.src_port, kOpRst));
    return;
  }
  if (!link) {
    if (h.op == kOpRequest) return on_guest_request(h);
    if (h.op == kOpRst) return;
    // 5.10.6.6 (no such connection): answer RST.
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    return send_loose(make_header(options_.guest_cid, h.dst_port, h.src_port, kOpRst));
  }
  uint64_t id = link->id;  // close_link() below may end it
  Reaction r = link->conn->on_packet(h);
  if (r.drop) return close_link(*link, false, false);
  if (r.reset) {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    warn_guest(cat("vsock: connection ", h.src_port, "->", h.dst_port, ": ", r.why));
    return close_link(*link, true);
  }
  if (r.established) {
    clear_deadline(*link);
    link->greeting = ok_line(link->conn->host_port());
  }
  if (r.forward_data) forward_to_host(*link, reader, h.len);
  if (r.credit_update) {
    link->owe_credit = true;
    owe(*link);
  }
  if (!(link = find(id))) return;
  if (link->conn->guest_shutdown() & kShutdownRcv) ::shutdown(link->fd.get(), SHUT_RD);
  if (link->greeting.empty()) after_change(*link);
  if ((link = find(id))) update_interest(*link);
}

void VsockDevice::on_guest_request(const PacketHeader& h) {
  PacketHeader rst = make_header(options_.guest_cid, h.dst_port, h.src_port, kOpRst);
  if (!admit(-1)) return send_loose(rst);
  UniqueFd fd = connect_unix(options_.uds_path + "_" + std::to_string(h.dst_port));
  if (!fd.valid()) return send_loose(rst);  // nobody listens there
  if (!admit(fd.get())) return send_loose(rst);
  Link& link = add_link(std::move(fd));
  establish(link, h.dst_port, h.src_port, Connection::State::Established);
  link.conn->on_peer_credit(h);
  link.owe_response = true;
  owe(link);
  update_interest(link);
}

void VsockDevice::forward_to_host(Link& link, ChainReader payload, uint32_t len) {
  payload.split_at(len);
  counters_.tx_bytes.fetch_add(len, std::memory_order_relaxed);
  size_t written = 0;
  if (link.greeting.empty() && link.pending.empty()) {
    // Straight from guest memory when nothing is queued before it.
    std::vector<iovec> iov;
    payload.append_iovecs(iov);
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    ssize_t n = ::sendmsg(link.fd.get(), &msg, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return close_link(link, true);
    if (n > 0) written = static_cast<size_t>(n);
    link.conn->on_forwarded(static_cast<uint32_t>(written));
  }
  payload.skip(written);
  // The rest waits; the guest's credit bounds it by buf_alloc.
  link.pending.append(payload, options_.buf_alloc);
}

void VsockDevice::send_loose(const PacketHeader& h) {
  if (loose_.size() >= kMaxLoose + links_.size()) {
    counters_.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  loose_.push_back(h);
}

void VsockDevice::owe(Link& link) {
  if (link.in_rx_list) return;
  link.in_rx_list = true;
  rx_list_.push_back(link.id);
}

std::optional<DescriptorChain> VsockDevice::pop_rx(bool starve_if_none) {
  if (!spare_rx_.empty()) {
    std::optional<DescriptorChain> chain = std::move(spare_rx_.back());
    spare_rx_.pop_back();
    return chain;
  }
  if (!active_) return std::nullopt;
  auto chain = queues_[kRxQueue].pop();
  if (!chain && starve_if_none) rx_starved_ = true;
  return chain;
}

void VsockDevice::finish_rx(DescriptorChain& chain, PacketHeader h, uint32_t payload) {
  ChainWriter writer = chain.writer();
  if (!writer.write_obj(h)) return refuse_rx(chain, "vsock: rx buffer smaller than a packet header");
  chain.complete(static_cast<uint32_t>(kHeaderSize + payload));
  counters_.rx_packets.fetch_add(1, std::memory_order_relaxed);
}

// An rx buffer the device cannot use goes back empty: the guest's error, which
// costs it the buffer but not the connection.
void VsockDevice::refuse_rx(DescriptorChain& chain, const char* why) {
  warn_guest(why);
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  chain.complete(0);
}

// Control packets first, in the order they became due.
void VsockDevice::pump_rx() {
  while (!loose_.empty() || !rx_list_.empty()) {
    auto chain = pop_rx();
    if (!chain) return;
    if (!loose_.empty()) {
      finish_rx(*chain, loose_.front(), 0);
      loose_.pop_front();
      continue;
    }
    Link* link = find(rx_list_.front());
    rx_list_.pop_front();
    if (!link || !write_control(*link, *chain)) {
      spare_rx_.push_back(std::move(*chain));
      continue;
    }
    if (link->owe_request || link->owe_response || link->owe_shutdown || link->owe_credit) {
      rx_list_.push_back(link->id);
    } else {
      link->in_rx_list = false;
    }
    update_interest(*link);  // a RESPONSE sent lets host data follow
  }
}

bool VsockDevice::write_control(Link& link, DescriptorChain& chain) {
  Connection& conn = *link.conn;
  auto send = [&](uint16_t op, uint32_t flags) {
    PacketHeader h = make_header(options_.guest_cid, conn.host_port(), conn.guest_port(), op, flags);
    conn.stamp(h);
    finish_rx(chain, h, 0);
    return true;
  };
  if (std::exchange(link.owe_request, false)) return send(kOpRequest, 0);
  if (std::exchange(link.owe_response, false)) return send(kOpResponse, 0);
  if (std::exchange(link.owe_shutdown, false)) return send(kOpShutdown, kShutdownSend);
  if (std::exchange(link.owe_credit, false)) return send(kOpCreditUpdate, 0);
  link.in_rx_list = false;
  return false;
}

void VsockDevice::signal_if_needed() {
  if (!interrupt_) return;
  bool any = false;
  for (SplitQueue& q : queues_) any |= q.needs_interrupt();
  if (any) interrupt_->signal_used();
}

}  // namespace ember::virtio::vsock
