// Walking one descriptor chain of a split virtqueue (virtio 1.2 section 2.7.5)
// into host byte ranges, with every guest-controlled value checked, and the
// reader/writer views devices use instead of raw descriptors.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "base/memory/guest_memory.h"
#include "base/util/result.h"

namespace ember::virtio {

// Why a chain is refused.
enum class ChainError {
  NextOutOfRange,         // a `next` index past the table
  TooLong,                // more descriptors than the table holds: a loop
  BadBuffer,              // addr/len not inside guest RAM
  ReadableAfterWritable,  // 2.7.4.2: device-writable descriptors come last
  IndirectNotNegotiated,  // VIRTIO_F_INDIRECT_DESC was not accepted
  IndirectWithNext,       // 2.7.5.3.1: INDIRECT and NEXT together
  NestedIndirect,         // 2.7.5.3.1: an indirect table may not point to another
  IndirectNotAlone,       // an indirect descriptor must be the whole chain
  IndirectBadSize,        // table length 0, not a multiple of 16, or too large
  IndirectBadAddress,     // table not inside guest RAM
  TooManyBytes,           // total length does not fit 32 bits
};
const char* describe(ChainError error);

// The device-readable and device-writable parts of a validated chain.
struct ChainBuffers {
  std::vector<std::span<uint8_t>> readable;
  std::vector<std::span<uint8_t>> writable;
  uint32_t readable_bytes = 0;
  uint32_t writable_bytes = 0;
  void clear();
};

struct ChainLimits {
  uint16_t queue_size;    // bounds the direct chain and `next` indices
  bool indirect_allowed;  // VIRTIO_F_INDIRECT_DESC negotiated
};

// Parses the chain starting at `head` (already checked < queue_size) from the
// descriptor table `table` (host view, queue_size * 16 bytes). Every descriptor is
// copied out once and then checked, so the guest cannot change it under us.
Result<void, ChainError> parse_chain(const GuestMemory& memory, std::span<const uint8_t> table, uint16_t head,
                                     const ChainLimits& limits, ChainBuffers& out);

// A cursor over a list of byte ranges, limited to `remaining()` bytes.
class ChainBytes {
 public:
  ChainBytes() = default;
  ChainBytes(std::span<const std::span<uint8_t>> segments, size_t total)
      : segments_(segments), remaining_(total) {}
  size_t remaining() const { return remaining_; }
  // Keeps the first `n` bytes here and returns a view of the rest.
  ChainBytes split_at(size_t n);
  // Skips up to `n` bytes; returns how many were skipped.
  size_t skip(size_t n);
  // Appends the remaining ranges as iovecs (for preadv/pwritev/io_uring).
  void append_iovecs(std::vector<iovec>& out) const;

 protected:
  // Copies between the chain and `buffer` (direction given by `to_chain`).
  size_t copy(uint8_t* buffer, size_t n, bool to_chain);

 private:
  std::span<const std::span<uint8_t>> segments_;
  size_t index_ = 0;   // current segment
  size_t offset_ = 0;  // within it
  size_t remaining_ = 0;
};

// The guest-readable part of a chain, seen as a byte stream.
class ChainReader : public ChainBytes {
 public:
  using ChainBytes::ChainBytes;
  ChainReader(ChainBytes bytes) : ChainBytes(bytes) {}
  size_t read(std::span<uint8_t> out) { return copy(out.data(), out.size(), false); }
  template <typename T>
  bool read_obj(T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return false;
    return copy(reinterpret_cast<uint8_t*>(&value), sizeof(T), false) == sizeof(T);
  }
  ChainReader split_at(size_t n) { return ChainReader(ChainBytes::split_at(n)); }
};

// The guest-writable part of a chain, seen as a byte stream.
class ChainWriter : public ChainBytes {
 public:
  using ChainBytes::ChainBytes;
  ChainWriter(ChainBytes bytes) : ChainBytes(bytes) {}
  size_t write(std::span<const uint8_t> in) { return copy(const_cast<uint8_t*>(in.data()), in.size(), true); }
  template <typename T>
  bool write_obj(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return false;
    return write(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(T))) == sizeof(T);
  }
  ChainWriter split_at(size_t n) { return ChainWriter(ChainBytes::split_at(n)); }
};

}  // namespace ember::virtio
