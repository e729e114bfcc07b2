#include "virtio/blk/block_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/log.h"
#include "virtio/guest_warning.h"
#include "virtio/spec.h"

namespace ember::virtio::blk {

namespace {

// `st` is of a regular file or a block device (open_backing_file).
uint64_t backing_size(int fd, const std::string& path, const struct stat& st) {
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) < 0) fail("cannot get the size of '", path, "': ", errno_text());
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

// The guest sees whole sectors only.
uint64_t sectors_of(const std::string& id, uint64_t bytes) {
  if (bytes % kSectorSize) {
    log::warn(cat("drive '", id, "': size ", bytes, " is not a multiple of 512; the last ", bytes % kSectorSize,
                  " bytes are not visible to the guest"));
  }
  return bytes / kSectorSize;
}

// What a request costs in bytes: its data, for reads and writes.
uint64_t data_bytes(const BlockRequest& request) {
  if (request.type == kTypeIn) return request.read_buffer.remaining();
  if (request.type == kTypeOut) return request.write_payload.remaining();
  return 0;
}

const char* request_name(uint32_t type) {
  switch (type) {
    case kTypeIn: return "read";
    case kTypeOut: return "write";
    case kTypeFlush: return "flush";
    case kTypeDiscard: return "discard";
    case kTypeWriteZeroes: return "write zeroes";
    default: return "request";
  }
}

// O_DIRECT takes only aligned memory, offsets and lengths (kDirectAlignment).
bool direct_aligned(uint64_t offset, uint64_t length, const std::vector<iovec>& iov) {
  auto aligned = [](uint64_t v) { return v % kDirectAlignment == 0; };
  if (!aligned(offset) || !aligned(length)) return false;
  for (const iovec& v : iov) {
    if (!aligned(reinterpret_cast<uintptr_t>(v.iov_base)) || !aligned(v.iov_len)) return false;
  }
  return true;
}

template <typename T>
void put(std::vector<uint8_t>& config, size_t offset, T value) {
  std::memcpy(config.data() + offset, &value, sizeof(value));
}

}  // namespace

UniqueFd open_backing_file(const std::string& id, const std::string& path, int flags, struct stat& st) {
  UniqueFd fd = open_data_file(path, flags, st);
  if (!fd.valid() && (flags & O_DIRECT) && errno == EINVAL) {
    fail("drive '", id, "': cache = \"none\" opens '", path, "' with O_DIRECT, which its file system refuses (",
         errno_text(), "; tmpfs does): put the file on a disk file system (ext4, xfs) or use the default cache");
  }
  if (!fd.valid()) fail("cannot open drive '", id, "' at '", path, "': ", errno_text());
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    fail("drive '", id, "' at '", path, "' is neither a regular file nor a block device (it is ",
         file_type_name(st.st_mode), ")");
  }
  return fd;
}

BackingFile open_backing(const std::string& id, const std::string& path, bool read_only, bool direct_io) {
  int flags = read_only ? O_RDONLY : O_RDWR;
  struct stat st {};
  BackingFile file;
  file.fd = open_backing_file(id, path, flags, st);
  file.bytes = backing_size(file.fd.get(), path, st);
  if (direct_io) {
    struct stat direct_st {};
    file.direct_fd = open_backing_file(id, path, flags | O_DIRECT, direct_st);
    if (direct_st.st_dev != st.st_dev || direct_st.st_ino != st.st_ino) {
      fail("drive '", id, "': '", path, "' changed while it was being opened");
    }
  }
  return file;
}

BlockDevice::BlockDevice(const BlockDeviceOptions& options, IoUringRing* ring)
    : options_(options), limiter_(options.rate_limiter, options.clock), coalescing_(options.clock) {
  if (options.loop) {
    timer_ = std::make_unique<ThrottleTimer>(*options.loop, [this] { run_queue(); }, "drive '" + options.id + "'");
    hold_timer_ = std::make_unique<ThrottleTimer>(
        *options.loop,
        [this] {
          hold_armed_ = false;
          signal_if_needed();
        },
        "drive '" + options.id + "' interrupt");
  } else if (limiter_.enabled()) {
    fail("drive '", options.id, "': a rate limiter needs the event loop");
  }
  BackingFile file = open_backing(options.id, options.path, options.read_only, options.direct_io);
  fd_ = std::move(file.fd);
  direct_fd_ = std::move(file.direct_fd);
  capacity_sectors_ = sectors_of(options.id, file.bytes);
  // 5.2.4 struct virtio_blk_config (virtio 1.2), up to write_zeroes_may_unmap and its padding:
  // capacity 0, size_max 8, seg_max 12, geometry 16, blk_size 20, topology 24, writeback 32,
  // unused0 33, num_queues 34, max_discard_sectors 36, max_discard_seg 40,
  // discard_sector_alignment 44, max_write_zeroes_sectors 48, max_write_zeroes_seg 52,
  // write_zeroes_may_unmap 56, unused1 57-59.
  config_.assign(60, 0);
  put<uint64_t>(config_, 0, capacity_sectors_);
  put<uint32_t>(config_, 12, options.queue_size - 2u);  // seg_max: header and status take two
  put<uint32_t>(config_, 20, static_cast<uint32_t>(kSectorSize));  // blk_size
  put<uint16_t>(config_, 34, 1);  // num_queues
  if (!options.read_only) {  // the fields are read only with the features, offered writable only
    put<uint32_t>(config_, 36, kMaxDiscardSectors);
    put<uint32_t>(config_, 40, kMaxDiscardSegments);
    put<uint32_t>(config_, 44, kDiscardSectorAlignment);
    put<uint32_t>(config_, 48, kMaxDiscardSectors);
    put<uint32_t>(config_, 52, kMaxDiscardSegments);
    put<uint8_t>(config_, 56, 1);  // write_zeroes_may_unmap: with the unmap flag, a hole is punched
  }
  int direct_fd = direct_fd_.valid() ? direct_fd_.get() : -1;
  backend_ = ring ? make_io_uring_backend(fd_.get(), direct_fd, *ring) : make_sync_backend(fd_.get(), direct_fd);
  if (ring) ring->on_batch_end([this] { signal_if_needed(); });
  slots_ = std::vector<InFlight>(options.queue_size);
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    slots_[i].device = this;
    free_slots_.push_back(static_cast<uint32_t>(slots_.size() - 1 - i));
  }
}

BlockDevice::~BlockDevice() {
  if (held_) held_->chain.abandon();  // the queue may be gone already
}

uint32_t BlockDevice::device_type() const { return kDeviceTypeBlock; }

uint64_t BlockDevice::device_features() const {
  uint64_t f = bit(kFeatureSegMax) | bit(kFeatureBlkSize) | bit(kFeatureFlush);
  if (options_.read_only) f |= bit(kFeatureRo);
  else f |= bit(kFeatureDiscard) | bit(kFeatureWriteZeroes);
  return f;
}

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  if (offset >= config_.size()) return;  // the transport zero-filled `data`
  size_t n = std::min<size_t>(data.size(), config_.size() - offset);
  std::memcpy(data.data(), config_.data() + offset, n);
}

void BlockDevice::write_config(uint64_t offset, std::span<const uint8_t>) {
  // Only `writeback` is writable, and only with VIRTIO_BLK_F_CONFIG_WCE, not offered.
  warn_guest(cat("drive '", options_.id, "': write to config offset ", offset, " ignored"));
}

void BlockDevice::activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t) {
  queues_ = queues;
  interrupt_ = &interrupt;
  resetting_ = false;
}

void BlockDevice::reset() {
  // Requests still in the kernel write into guest memory the driver may reuse:
  // wait for them, and drop their chains without touching the rings.
  resetting_ = true;
  backend_->wait_until([this] { return free_slots_.size() == slots_.size(); });
  // A request the limiter held is forgotten like those in flight. The timer is left to
  // expire into an idle device: this may run on the main thread, which cannot arm it.
  if (held_) held_->chain.abandon();
  held_.reset();
  coalescing_.cancel_hold();  // the hold timer, like the limiter's, expires into an idle device
  queues_ = {};
  interrupt_ = nullptr;
}

void BlockDevice::drain() {
  // io_uring reads land in guest memory from kernel workers, not from the event thread.
  backend_->wait_until([this] { return free_slots_.size() == slots_.size(); });
  // A drained device leaves nothing for later: a held interrupt goes out now.
  coalescing_.cancel_hold();
  if (interrupt_) signal_now();
}

void BlockDevice::process_queue(uint16_t index) {
  if (index < queues_.size()) run_queue();
}

void BlockDevice::run_queue() {
  if (queues_.empty() || resetting_) return;
  in_batch_ = true;
  bool go = true;
  if (held_) {
    Nanos wait = limiter_.consume(held_->bytes, 1);
    if (wait.count() > 0) {
      timer_->arm(wait);
      go = false;
    } else {
      Held held = std::move(*held_);
      held_.reset();
      handle(std::move(held.chain), std::move(held.request));
    }
  }
  bool added = false;
  while (go) {
    std::optional<DescriptorChain> chain = queues_[0].pop();
    if (!chain) break;
    if (!added) coalescing_.requests_added();
    added = true;
    BlockRequest request = parse_block_request(*chain);
    // A malformed request costs nothing: it fails at once, without I/O.
    go = request.malformed || admit(*chain, request, data_bytes(request));
    if (go) handle(std::move(*chain), std::move(request));
  }
  in_batch_ = false;
  backend_->flush_submissions();
  signal_if_needed();
}

bool BlockDevice::admit(DescriptorChain& chain, BlockRequest& request, uint64_t bytes) {
  Nanos wait = limiter_.consume(bytes, 1);
  if (wait.count() == 0) return true;
  counters_.throttled.fetch_add(1, std::memory_order_relaxed);
  held_.emplace(Held{std::move(chain), std::move(request), bytes});
  timer_->arm(wait);
  return false;
}

void BlockDevice::update_rate_limiter(const RateLimiterConfig& update) {
  if (!timer_) fail("drive '", options_.id, "': a rate limiter needs the event loop");
  limiter_.update(update);
  // A held request may fit now, or must wait a different time: decided on the event thread.
  if (held_) timer_->expire_now();
}

void BlockDevice::replace_backing_file(BackingFile file, const std::string& path) {
  // No request may be in flight on the old file when its slot and fd change: one still in
  // the kernel would complete against either file, or after the close. (A paused VM has
  // none: its devices were drained.)
  auto idle = [this] { return free_slots_.size() == slots_.size(); };
  if (!idle()) backend_->wait_until(idle);
  if (file.direct_fd.valid() != direct_fd_.valid()) fail("the new file is not opened with the drive's cache mode");
  backend_->replace_file(file.fd.get(), file.direct_fd.valid() ? file.direct_fd.get() : -1);
  fd_ = std::move(file.fd);  // the old file closes here, with nothing left on it
  direct_fd_ = std::move(file.direct_fd);
  options_.path = path;
  capacity_sectors_ = sectors_of(options_.id, file.bytes);
}

void BlockDevice::publish_capacity() { put<uint64_t>(config_, 0, capacity_sectors_); }

void BlockDevice::handle(DescriptorChain chain, BlockRequest request) {
  if (request.malformed) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    warn_guest(cat("drive '", options_.id, "': malformed request: ", request.malformed));
    complete_now(chain, request, kStatusIoErr);
    return;
  }
  switch (request.type) {
    case kTypeIn:
    case kTypeOut:
      if (request.type == kTypeOut && options_.read_only) {
        complete_now(chain, request, kStatusIoErr);  // 5.2.6.2: IOERR for writes with F_RO
        return;
      }
      if (Result<ByteRange, const char*> range = request_range(request, capacity_sectors_); !range) {
        warn_guest(cat("drive '", options_.id, "': ", request.type == kTypeIn ? "read" : "write", " at sector ",
                       request.sector, ": ", range.error()));
        complete_now(chain, request, kStatusIoErr);
      } else {
        BlockIo::Op op = request.type == kTypeIn ? BlockIo::Op::Read : BlockIo::Op::Write;
        start_io(std::move(chain), std::move(request), op, range->offset, range->length);
      }
      return;
    case kTypeFlush:
      start_io(std::move(chain), std::move(request), BlockIo::Op::Flush, 0, 0);
      return;
    case kTypeDiscard:
    case kTypeWriteZeroes:
      discard_or_zero(std::move(chain), std::move(request));
      return;
    case kTypeGetId: {
      char id[kIdBytes] = {};
      std::memcpy(id, options_.id.data(), std::min(options_.id.size(), kIdBytes));
      size_t n = request.read_buffer.write(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(id), kIdBytes));
      complete_now(chain, request, kStatusOk, static_cast<uint32_t>(n));
      return;
    }
    default:
      complete_now(chain, request, kStatusUnsupported);
  }
}

void BlockDevice::discard_or_zero(DescriptorChain chain, BlockRequest request) {
  if (options_.read_only) {
    // Not offered on a read-only drive (5.2.6.2: writes to it are IOERR, and so are these).
    complete_now(chain, request, kStatusIoErr);
    return;
  }
  Result<DiscardRange, BlockRefusal> range = discard_range(request, capacity_sectors_);
  if (!range) {
    warn_guest(cat("drive '", options_.id, "': ", request_name(request.type), ": ", range.error().why));
    complete_now(chain, request, range.error().status);
    return;
  }
  // 5.2.6.2: a discard may deallocate; write zeroes may too with unmap (we offer
  // write_zeroes_may_unmap), and must read back as zeros either way: both do.
  bool punch = request.type == kTypeDiscard || range->unmap;
  start_io(std::move(chain), std::move(request), punch ? BlockIo::Op::PunchHole : BlockIo::Op::ZeroRange,
           range->bytes.offset, range->bytes.length);
}

void BlockDevice::start_io(DescriptorChain chain, BlockRequest request, BlockIo::Op op, uint64_t offset,
                           uint64_t length) {
  if (free_slots_.empty()) {
    // Only a driver that re-offers descriptors still in flight gets here.
    warn_guest(cat("drive '", options_.id, "': more requests in flight than the queue holds"));
    complete_now(chain, request, kStatusIoErr);
    return;
  }
  InFlight& slot = slots_[free_slots_.back()];
  free_slots_.pop_back();
  slot.op = op;
  slot.offset = offset;
  slot.length = length;
  slot.iov.clear();
  slot.direct = false;
  slot.expected = 0;
  if (op == BlockIo::Op::Read || op == BlockIo::Op::Write) {
    slot.expected = length;
    ChainBytes data = op == BlockIo::Op::Read ? ChainBytes(request.read_buffer) : ChainBytes(request.write_payload);
    data.split_at(length);  // keeps the first `length` bytes
    data.append_iovecs(slot.iov);
    slot.direct = direct_fd_.valid() && direct_aligned(offset, length, slot.iov);
  }
  slot.chain = std::move(chain);
  slot.request = std::move(request);
  backend_->submit(slot);
}

void BlockDevice::finish(InFlight& slot, int64_t result) {
  const char* what = request_name(slot.request.type);
  uint8_t status = kStatusOk;
  request_counter(slot.request.type).fetch_add(1, std::memory_order_relaxed);
  if (result > 0 && (slot.op == BlockIo::Op::Read || slot.op == BlockIo::Op::Write)) {
    auto& bytes = slot.op == BlockIo::Op::Read ? counters_.read_bytes : counters_.write_bytes;
    bytes.fetch_add(static_cast<uint64_t>(result), std::memory_order_relaxed);
  }
  if (result < 0) {
    warn_limited(cat("drive '", options_.id, "': ", what, " of ", slot.length, " bytes at offset ", slot.offset,
                     " failed: ", errno_text(static_cast<int>(-result))));
    status = kStatusIoErr;
  } else if (static_cast<uint64_t>(result) != slot.expected) {
    warn_limited(cat("drive '", options_.id, "': ", what, " at offset ", slot.offset, " moved ", result, " of ",
                     slot.expected, " bytes (backing file truncated?)"));
    status = kStatusIoErr;
  }
  if (status != kStatusOk) counters_.errors.fetch_add(1, std::memory_order_relaxed);
  if (resetting_) {
    slot.chain.abandon();
  } else {
    uint32_t data = slot.op == BlockIo::Op::Read ? static_cast<uint32_t>(std::max<int64_t>(result, 0)) : 0;
    slot.chain.complete(slot.request.finish(status, data));
  }
  slot.request = BlockRequest{};
  free_slots_.push_back(static_cast<uint32_t>(&slot - slots_.data()));
}

std::atomic<uint64_t>& BlockDevice::request_counter(uint32_t type) {
  switch (type) {
    case kTypeIn: return counters_.read_requests;
    case kTypeOut: return counters_.write_requests;
    case kTypeFlush: return counters_.flush_requests;
    case kTypeDiscard: return counters_.discard_requests;
    case kTypeWriteZeroes: return counters_.write_zeroes_requests;
    default: return counters_.other_requests;
  }
}

void BlockDevice::complete_now(DescriptorChain& chain, BlockRequest& request, uint8_t status, uint32_t written) {
  (status == kStatusOk ? counters_.other_requests : counters_.errors).fetch_add(1, std::memory_order_relaxed);
  chain.complete(request.finish(status, written));
}

void BlockDevice::save_state(snapshot::StateWriter& out) const {
  out.u64(capacity_sectors_);
  out.boolean(options_.read_only);
  out.text(options_.id.substr(0, kIdBytes));
}

void BlockDevice::restore_state(snapshot::StateReader& in) {
  uint64_t sectors = in.u64("capacity");
  if (sectors != capacity_sectors_) {
    in.invalid("capacity", cat("drive '", options_.id, "' was ", sectors * kSectorSize, " bytes (", sectors,
                               " sectors) when saved and '", options_.path, "' is now ",
                               capacity_sectors_ * kSectorSize, " bytes (", capacity_sectors_, " sectors)"));
  }
  bool read_only = in.boolean("read only");
  if (read_only != options_.read_only) {
    in.invalid("read only", cat("drive '", options_.id, "' was ", read_only ? "read-only" : "writable",
                                " when saved and is now ", options_.read_only ? "read-only" : "writable"));
  }
  std::string id = in.text("id", kIdBytes);
  if (id != options_.id.substr(0, kIdBytes)) {
    in.invalid("id", cat("the guest knows the drive as '", id, "', but this one is '", options_.id, "'"));
  }
}

void BlockDevice::report_metrics(const MetricSink& sink) const {
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  sink("read_count", get(counters_.read_requests));
  sink("write_count", get(counters_.write_requests));
  sink("flush_count", get(counters_.flush_requests));
  sink("discard_requests", get(counters_.discard_requests));
  sink("write_zeroes_requests", get(counters_.write_zeroes_requests));
  sink("other_requests", get(counters_.other_requests));
  sink("read_bytes", get(counters_.read_bytes));
  sink("write_bytes", get(counters_.write_bytes));
  sink("execute_fails", get(counters_.errors));
  sink("invalid_reqs_count", get(counters_.malformed));
  sink("rate_limiter_throttled_events", get(counters_.throttled));
}

std::string BlockDevice::describe_state() const {
  if (!held_) return {};
  return cat("a request of ", held_->bytes, " bytes waits for the rate limiter");
}

void BlockDevice::signal_if_needed() {
  if (in_batch_ || !interrupt_) return;
  bool undecided = false;
  for (const SplitQueue& q : queues_) undecided |= q.used_undecided();
  if (!undecided) return;
  if (hold_timer_) {
    Nanos wait = coalescing_.decide();
    if (wait.count() > 0) {
      // Armed once per hold: its end only moves later, and the expiry asks again.
      if (!hold_armed_) hold_timer_->arm(wait);
      hold_armed_ = true;
      return;
    }
  }
  signal_now();
}

void BlockDevice::signal_now() {
  bool any = false;
  for (SplitQueue& q : queues_) any |= q.needs_interrupt();
  if (!any) return;
  interrupt_->signal_used();
  coalescing_.signalled();
}

}  // namespace ember::virtio::blk
