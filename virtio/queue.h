// The device side of one split virtqueue (virtio 1.2 section 2.7): pops validated
// descriptor chains from the available ring and returns them on the used ring.
// Owned and used by one thread (the VM's event thread); never throws.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/memory/guest_memory.h"
#include "base/state_stream.h"
#include "base/util/result.h"
#include "virtio/descriptor_chain.h"

namespace ember::virtio {

class SplitQueue;

// What the driver wrote into the queue registers.
struct QueueConfig {
  uint16_t size = 0;
  uint64_t desc = 0;    // descriptor table
  uint64_t driver = 0;  // available ring
  uint64_t device = 0;  // used ring
  bool operator==(const QueueConfig&) const = default;
};

struct QueueFeatures {
  bool event_idx = false;  // VIRTIO_F_EVENT_IDX
  bool indirect = false;   // VIRTIO_F_INDIRECT_DESC
};

// A popped request. Move-only: it must go back to the used ring exactly once, by
// complete(); if it is dropped instead, the destructor returns it with length 0 so
// the guest is never left waiting (and logs the device bug).
class DescriptorChain {
 public:
  DescriptorChain() = default;
  DescriptorChain(SplitQueue* queue, uint16_t head, ChainBuffers buffers)
      : queue_(queue), head_(head), buffers_(std::move(buffers)) {}
  DescriptorChain(DescriptorChain&& other) noexcept { *this = std::move(other); }
  DescriptorChain& operator=(DescriptorChain&& other) noexcept;
  DescriptorChain(const DescriptorChain&) = delete;
  DescriptorChain& operator=(const DescriptorChain&) = delete;
  ~DescriptorChain();

  uint16_t head() const { return head_; }
  bool pending() const { return queue_ != nullptr; }
  ChainReader reader() const { return ChainReader(buffers_.readable, buffers_.readable_bytes); }
  ChainWriter writer() const { return ChainWriter(buffers_.writable, buffers_.writable_bytes); }
  // Puts the chain on the used ring; `written` is the number of bytes the device wrote.
  void complete(uint32_t written);
  // Like complete(), but the entry stays invisible to the driver until the
  // queue's publish_used(): for a packet spread over several chains (virtio-net
  // MRG_RXBUF), which the driver must see all at once.
  void complete_unpublished(uint32_t written);
  // Forgets the chain without touching the rings: for a device being reset, whose
  // rings the driver no longer owns.
  void abandon() { queue_ = nullptr; }

 private:
  SplitQueue* queue_ = nullptr;
  uint16_t head_ = 0;
  ChainBuffers buffers_;
};

class SplitQueue {
 public:
  // Checks the driver's configuration (size a power of two within `max_size`,
  // 2.7 alignment, every ring inside guest memory); refused with why.
  static Result<SplitQueue> create(const GuestMemory& memory, const QueueConfig& config, uint16_t max_size,
                                   QueueFeatures features);

  // Snapshots (VM paused, event loop not running or on its thread). What the queue is:
  // its configuration, features, both sides' indexes and whether the driver broke it.
  // Chains the device still holds are not part of it: a paused device holds none.
  void save_state(snapshot::StateWriter& out) const;
  // Reads what save_state() wrote and checks it as create() checks a driver's
  // configuration (size, alignment, rings inside `memory`); throws Error naming the
  // field otherwise. `memory` must outlive the queue.
  static SplitQueue restore_state(snapshot::StateReader& in, const GuestMemory& memory, uint16_t max_size);

  // The next valid chain, or nullopt when the ring is empty or broken. Chains that
  // fail validation are returned to the guest with length 0 and logged.
  std::optional<DescriptorChain> pop();
  // With EVENT_IDX, asks the driver to notify at its next new available entry even
  // while entries are pending (pop() asks only once the ring is empty; 2.7.10).
  // Without it the driver notifies anyway.
  void request_notification();
  // The driver's avail.idx as it is now (guest-written: any value).
  uint16_t avail_idx() const { return load_avail_idx(); }
  void push_used(uint16_t head, uint32_t len, bool publish = true);
  // Makes every entry pushed so far visible (moves used.idx).
  void publish_used();
  // Whether the driver wants an interrupt for what was pushed since the last call
  // (2.7.10 with EVENT_IDX, else the NO_INTERRUPT flag).
  bool needs_interrupt();
  // Whether entries were pushed since the last needs_interrupt() (no decision made yet).
  bool used_undecided() const { return next_used_ != signalled_used_; }

  // The driver broke the ring itself (avail.idx jump, head out of range): the
  // device must be reset (2.1.2 DEVICE_NEEDS_RESET).
  bool broken() const { return broken_; }
  uint16_t size() const { return size_; }
  const QueueConfig& config() const { return config_; }
  QueueFeatures features() const { return features_; }
  uint64_t chains_failed() const { return chains_failed_; }
  // Both sides' ring indexes and notification wishes, for diagnosing a stalled
  // queue ("avail 718/718, used 718/718, ...").
  std::string describe_state() const;

 private:
  SplitQueue() = default;
  uint16_t load_avail_idx() const;
  uint8_t* avail_event_ptr();
  void break_ring(const std::string& why);

  const GuestMemory* memory_ = nullptr;
  QueueConfig config_;
  uint16_t size_ = 0;
  QueueFeatures features_;
  std::span<uint8_t> desc_;   // size * 16
  std::span<uint8_t> avail_;  // 6 + 2 * size
  std::span<uint8_t> used_;   // 6 + 8 * size
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;  // used.idx at the last interrupt decision
  bool broken_ = false;
  uint64_t chains_failed_ = 0;
};

}  // namespace ember::virtio
