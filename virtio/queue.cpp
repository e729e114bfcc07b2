#include "virtio/queue.h"

#include <atomic>

#include "base/util/error.h"
#include "base/util/log.h"
#include "virtio/guest_warning.h"
#include "virtio/spec.h"

namespace ember::virtio {

namespace {

// Ring fields live in guest memory that the driver changes concurrently: access
// them with atomics (2.7.13 memory barriers) and only at their natural alignment.
uint16_t load16(const uint8_t* p, int order = __ATOMIC_RELAXED) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), order);
}
void store16(uint8_t* p, uint16_t v, int order = __ATOMIC_RELAXED) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, order);
}
void store32(uint8_t* p, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t*>(p), v, __ATOMIC_RELAXED); }

constexpr size_t kRingHeader = 4;  // flags + idx

}  // namespace

DescriptorChain& DescriptorChain::operator=(DescriptorChain&& other) noexcept {
  if (this != &other) {
    if (queue_) complete(0);
    queue_ = std::exchange(other.queue_, nullptr);
    head_ = other.head_;
    buffers_ = std::move(other.buffers_);
  }
  return *this;
}

DescriptorChain::~DescriptorChain() {
  if (queue_) {
    warn_limited(cat("virtio: descriptor chain ", head_, " dropped without completion; returning it empty"));
    complete(0);
  }
}

void DescriptorChain::complete(uint32_t written) {
  if (!queue_) return;
  queue_->push_used(head_, written);
  queue_ = nullptr;
}

void DescriptorChain::complete_unpublished(uint32_t written) {
  if (!queue_) return;
  queue_->push_used(head_, written, false);
  queue_ = nullptr;
}

Result<SplitQueue> SplitQueue::create(const GuestMemory& memory, const QueueConfig& c, uint16_t max_size,
                                      QueueFeatures features) {
  if (c.size == 0 || c.size > max_size || (c.size & (c.size - 1)) != 0) {
    return Failure{cat("queue size ", c.size, " is not a power of two between 1 and ", max_size)};
  }
  // 2.7 Table "Virtqueue Part Alignment": 16, 2 and 4 bytes.
  if (c.desc % 16 || c.driver % 2 || c.device % 4) {
    return Failure{cat("queue rings misaligned (desc ", hex(c.desc), ", driver ", hex(c.driver), ", device ",
                       hex(c.device), ")")};
  }
  auto desc = memory.try_span(c.desc, uint64_t{c.size} * sizeof(Descriptor));
  auto avail = memory.try_span(c.driver, kRingHeader + 2ull * c.size + 2);
  auto used = memory.try_span(c.device, kRingHeader + 8ull * c.size + 2);
  if (!desc || !avail || !used) {
    return Failure{cat("queue rings outside guest memory (desc ", hex(c.desc), ", driver ", hex(c.driver),
                       ", device ", hex(c.device), ", size ", c.size, ")")};
  }
  SplitQueue q;
  q.memory_ = &memory;
  q.config_ = c;
  q.size_ = c.size;
  q.features_ = features;
  q.desc_ = *desc;
  q.avail_ = *avail;
  q.used_ = *used;
  // The driver may already have placed buffers; start from what it sees as zero.
  return q;
}

void SplitQueue::save_state(snapshot::StateWriter& out) const {
  out.u16(config_.size);
  out.u64(config_.desc);
  out.u64(config_.driver);
  out.u64(config_.device);
  out.boolean(features_.event_idx);
  out.boolean(features_.indirect);
  out.u16(next_avail_);
  out.u16(next_used_);
  out.u16(signalled_used_);
  out.boolean(broken_);
}

SplitQueue SplitQueue::restore_state(snapshot::StateReader& in, const GuestMemory& memory, uint16_t max_size) {
  QueueConfig c;
  c.size = in.u16("queue size");
  c.desc = in.u64("queue descriptor table address");
  c.driver = in.u64("queue available ring address");
  c.device = in.u64("queue used ring address");
  QueueFeatures features;
  features.event_idx = in.boolean("queue event_idx");
  features.indirect = in.boolean("queue indirect_desc");
  Result<SplitQueue> q = create(memory, c, max_size, features);
  if (!q) in.invalid("queue configuration", q.error());
  // Any index is one a driver could have reached: pop() checks avail.idx against
  // next_avail as it does after a live activation.
  q->next_avail_ = in.u16("queue next_avail");
  q->next_used_ = in.u16("queue next_used");
  q->signalled_used_ = in.u16("queue signalled_used");
  q->broken_ = in.boolean("queue broken");
  return *q;
}

uint16_t SplitQueue::load_avail_idx() const {
  // Acquire: ring entries written before the index are visible after it (2.7.13).
  return load16(avail_.data() + 2, __ATOMIC_ACQUIRE);
}

void SplitQueue::request_notification() {
  if (!features_.event_idx || broken_) return;
  store16(avail_event_ptr(), load_avail_idx());
}

void SplitQueue::break_ring(const std::string& why) {
  if (!broken_) warn_guest(why + "; the device needs a reset");
  broken_ = true;
}

std::optional<DescriptorChain> SplitQueue::pop() {
  while (!broken_) {
    uint16_t avail_idx = load_avail_idx();
    uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
    if (pending > size_) {
      break_ring(cat("avail.idx moved from ", next_avail_, " to ", avail_idx, ", more than the queue size ", size_));
      return std::nullopt;
    }
    if (pending == 0) {
      if (!features_.event_idx) return std::nullopt;
      // 2.7.10: ask for a notification at the next new entry, then look again so
      // an entry added between the check and the store is not missed.
      store16(avail_event_ptr(), next_avail_);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (load_avail_idx() == next_avail_) return std::nullopt;
      continue;
    }
    uint16_t head = load16(avail_.data() + kRingHeader + 2 * (next_avail_ % size_));
    ++next_avail_;
    if (head >= size_) {
      break_ring(cat("available ring names descriptor ", head, " in a queue of size ", size_));
      return std::nullopt;
    }
    ChainBuffers buffers;
    Result<void, ChainError> parsed = parse_chain(*memory_, desc_, head, {size_, features_.indirect}, buffers);
    if (parsed) {
      // Written by the device before the next snapshot (pause waits for every request).
      for (std::span<uint8_t> b : buffers.writable) memory_->mark_written(b);
      return DescriptorChain(this, head, std::move(buffers));
    }
    // A malformed chain fails only that request: it goes back unused.
    ++chains_failed_;
    warn_guest(cat("virtqueue chain at descriptor ", head, " rejected: ", describe(parsed.error())));
    push_used(head, 0);
  }
  return std::nullopt;
}

std::string SplitQueue::describe_state() const {
  uint16_t avail_flags = load16(avail_.data());
  uint16_t used_event = load16(avail_.data() + kRingHeader + 2 * size_t{size_});
  uint16_t avail_event = load16(used_.data() + kRingHeader + 8 * size_t{size_});
  return cat("size ", size_, ", avail.idx ", load_avail_idx(), " (device took ", next_avail_, "), used.idx ",
             load16(used_.data() + 2), " (device pushed ", next_used_, ", interrupt decided at ", signalled_used_,
             "), ", features_.event_idx ? cat("used_event ", used_event, ", avail_event ", avail_event)
                                        : cat("avail.flags ", avail_flags),
             broken_ ? ", broken" : "");
}

uint8_t* SplitQueue::avail_event_ptr() {
  memory_->mark_written(used_);
  return used_.data() + kRingHeader + 8 * size_t{size_};
}

void SplitQueue::push_used(uint16_t head, uint32_t len, bool publish) {
  memory_->mark_written(used_);
  uint8_t* entry = used_.data() + kRingHeader + 8 * static_cast<size_t>(next_used_ % size_);
  store32(entry, head);
  store32(entry + 4, len);
  ++next_used_;
  if (publish) publish_used();
}

void SplitQueue::publish_used() {
  // Release: the entries are visible before the index that publishes them.
  store16(used_.data() + 2, next_used_, __ATOMIC_RELEASE);
}

bool SplitQueue::needs_interrupt() {
  if (next_used_ == signalled_used_) return false;
  // The used.idx store must be visible before we read the driver's wish (2.7.13).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t old_used = signalled_used_;
  signalled_used_ = next_used_;
  if (!features_.event_idx) return !(load16(avail_.data()) & kAvailNoInterrupt);
  uint16_t used_event = load16(avail_.data() + kRingHeader + 2 * size_t{size_});
  // vring_need_event(): did used.idx pass used_event since the last interrupt?
  return static_cast<uint16_t>(next_used_ - used_event - 1) < static_cast<uint16_t>(next_used_ - old_used);
}

}  // namespace ember::virtio
