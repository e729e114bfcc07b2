// A driver-side helper for tests: lays out a split virtqueue in guest memory and
// adds buffers exactly as Linux's virtio_ring.c does (free-list descriptors,
// avail ring entry, then a barrier and avail.idx), so device code can be driven
// without KVM. Tests poke at the raw rings to play a hostile driver.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "base/memory/guest_memory.h"
#include "virtio/queue.h"
#include "virtio/spec.h"

namespace ember::test {

inline GuestMemory small_guest_memory(uint64_t mib = 4) {
  GuestMemoryOptions options;
  options.size_bytes = mib << 20;
  return GuestMemory::create(options);
}

struct Buffer {
  uint64_t gpa;
  uint32_t len;
};

class VirtioDriver {
 public:
  // Rings at fixed addresses; buffers are carved from `data_base` upwards.
  VirtioDriver(GuestMemory& memory, uint16_t size, uint64_t ring_base = 0x10000, uint64_t data_base = 0x100000)
      : memory_(memory), size_(size), next_data_(data_base) {
    config_.size = size;
    config_.desc = ring_base;
    config_.driver = ring_base + 16ull * size;
    config_.device = (config_.driver + 6 + 2ull * size + 3) & ~3ull;
    indirect_base_ = (config_.device + 6 + 8ull * size + 15) & ~15ull;
    // Only the rings: an indirect table is read no further than its descriptor's length, and
    // touching its pages made this constructor most of a fuzz target's time per input.
    std::memset(memory.span(ring_base, indirect_base_ - ring_base, "rings").data(), 0, indirect_base_ - ring_base);
  }
  const virtio::QueueConfig& config() const { return config_; }
  GuestMemory& memory() { return memory_; }

  // A zeroed buffer of `len` bytes in guest memory.
  Buffer alloc(uint32_t len, uint8_t fill = 0) {
    Buffer b{next_data_, len};
    std::memset(memory_.span(b.gpa, len, "buffer").data(), fill, len);
    next_data_ = (next_data_ + len + 63) & ~63ull;
    return b;
  }
  std::span<uint8_t> bytes(const Buffer& b) { return memory_.span(b.gpa, b.len, "buffer"); }

  void write_desc(uint64_t table, uint16_t index, const virtio::Descriptor& d) {
    memory_.write_obj(table + 16ull * index, d, "descriptor");
  }
  uint64_t desc_table() const { return config_.desc; }
  uint64_t indirect_table(uint16_t slot) const { return indirect_base_ + 16ull * 64 * slot; }

  // Adds a chain of readable then writable buffers as Linux does; with
  // `indirect`, one descriptor pointing to a table that holds the chain.
  uint16_t add(const std::vector<Buffer>& readable, const std::vector<Buffer>& writable, bool indirect = false) {
    std::vector<virtio::Descriptor> chain;
    for (const Buffer& b : readable) chain.push_back({b.gpa, b.len, 0, 0});
    for (const Buffer& b : writable) chain.push_back({b.gpa, b.len, virtio::kDescWrite, 0});
    uint16_t head = next_free_;
    if (indirect) {
      uint64_t table = indirect_table(head);
      for (size_t i = 0; i < chain.size(); ++i) {
        virtio::Descriptor d = chain[i];
        if (i + 1 < chain.size()) d.flags |= virtio::kDescNext, d.next = static_cast<uint16_t>(i + 1);
        write_desc(table, static_cast<uint16_t>(i), d);
      }
      write_desc(config_.desc, head,
                 {table, static_cast<uint32_t>(16 * chain.size()), virtio::kDescIndirect, 0});
      next_free_ = static_cast<uint16_t>((next_free_ + 1) % size_);
    } else {
      for (size_t i = 0; i < chain.size(); ++i) {
        uint16_t index = next_free_;
        next_free_ = static_cast<uint16_t>((next_free_ + 1) % size_);
        virtio::Descriptor d = chain[i];
        if (i + 1 < chain.size()) d.flags |= virtio::kDescNext, d.next = next_free_;
        write_desc(config_.desc, index, d);
      }
    }
    publish(head);
    return head;
  }
  // Puts `head` on the available ring and bumps avail.idx.
  void publish(uint16_t head) {
    memory_.write_obj<uint16_t>(config_.driver + 4 + 2ull * (avail_idx_ % size_), head, "avail ring");
    __atomic_thread_fence(__ATOMIC_RELEASE);
    set_avail_idx(++avail_idx_);
  }
  void set_avail_idx(uint16_t idx) { memory_.write_obj<uint16_t>(config_.driver + 2, idx, "avail.idx"); }
  void set_used_event(uint16_t v) { memory_.write_obj<uint16_t>(config_.driver + 4 + 2ull * size_, v, "used_event"); }
  void set_avail_flags(uint16_t v) { memory_.write_obj<uint16_t>(config_.driver, v, "avail.flags"); }
  uint16_t avail_event() { return memory_.read_obj<uint16_t>(config_.device + 4 + 8ull * size_, "avail_event"); }

  uint16_t used_idx() { return memory_.read_obj<uint16_t>(config_.device + 2, "used.idx"); }
  struct Used {
    uint32_t id;
    uint32_t len;
  };
  Used used(uint16_t i) { return memory_.read_obj<Used>(config_.device + 4 + 8ull * (i % size_), "used ring"); }

 private:
  GuestMemory& memory_;
  uint16_t size_;
  virtio::QueueConfig config_;
  uint64_t indirect_base_;
  uint64_t next_data_;
  uint16_t next_free_ = 0;
  uint16_t avail_idx_ = 0;
};

}  // namespace ember::test
