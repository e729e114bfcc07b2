#include "virtio/descriptor_chain.h"

#include <algorithm>

#include "virtio/spec.h"

namespace ember::virtio {

const char* describe(ChainError error) {
  switch (error) {
    case ChainError::NextOutOfRange: return "descriptor 'next' index is past the end of its table";
    case ChainError::TooLong: return "chain is longer than its table (a loop)";
    case ChainError::BadBuffer: return "buffer is not inside guest memory";
    case ChainError::ReadableAfterWritable: return "device-readable descriptor after a device-writable one";
    case ChainError::IndirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
    case ChainError::IndirectWithNext: return "descriptor has both INDIRECT and NEXT";
    case ChainError::NestedIndirect: return "indirect table contains an indirect descriptor";
    case ChainError::IndirectNotAlone: return "indirect descriptor follows direct ones in a chain";
    case ChainError::IndirectBadSize: return "indirect table length is 0, not a multiple of 16, or too large";
    case ChainError::IndirectBadAddress: return "indirect table is not inside guest memory";
    case ChainError::TooManyBytes: return "chain is longer than 4 GiB";
  }
  return "?";
}

void ChainBuffers::clear() {
  readable.clear();
  writable.clear();
  readable_bytes = 0;
  writable_bytes = 0;
}

namespace {

Descriptor load_descriptor(std::span<const uint8_t> table, uint32_t index) {
  Descriptor d;
  std::memcpy(&d, table.data() + size_t{index} * sizeof(Descriptor), sizeof(d));
  return d;
}

// Walks one table (the queue's, or an indirect one) from `first`.
Result<void, ChainError> walk(const GuestMemory& memory, std::span<const uint8_t> table, uint32_t entries, uint16_t first,
                bool is_indirect, const ChainLimits& limits, ChainBuffers& out) {
  uint32_t index = first;
  for (uint32_t count = 0;; ++count) {
    // Bounding the walk by the table size catches every loop: a chain without
    // one visits each entry at most once.
    if (count >= entries) return Failure{ChainError::TooLong};
    const Descriptor d = load_descriptor(table, index);
    if (d.flags & kDescIndirect) {
      if (is_indirect) return Failure{ChainError::NestedIndirect};
      if (!limits.indirect_allowed) return Failure{ChainError::IndirectNotNegotiated};
      if (d.flags & kDescNext) return Failure{ChainError::IndirectWithNext};
      // Mixing direct descriptors with an indirect table is not something drivers do.
      if (count != 0) return Failure{ChainError::IndirectNotAlone};
      if (d.len == 0 || d.len % sizeof(Descriptor) != 0 || d.len / sizeof(Descriptor) > limits.queue_size) {
        return Failure{ChainError::IndirectBadSize};
      }
      auto sub = memory.try_span(d.addr, d.len);
      if (!sub) return Failure{ChainError::IndirectBadAddress};
      return walk(memory, *sub, d.len / sizeof(Descriptor), 0, true, limits, out);
    }
    auto bytes = memory.try_span(d.addr, d.len);
    if (!bytes) return Failure{ChainError::BadBuffer};
    if (d.flags & kDescWrite) {
      if (uint64_t{out.writable_bytes} + d.len > UINT32_MAX) return Failure{ChainError::TooManyBytes};
      out.writable.push_back(*bytes);
      out.writable_bytes += d.len;
    } else {
      if (!out.writable.empty()) return Failure{ChainError::ReadableAfterWritable};
      if (uint64_t{out.readable_bytes} + d.len > UINT32_MAX) return Failure{ChainError::TooManyBytes};
      out.readable.push_back(*bytes);
      out.readable_bytes += d.len;
    }
    if (!(d.flags & kDescNext)) return {};
    if (d.next >= entries) return Failure{ChainError::NextOutOfRange};
    index = d.next;
  }
}

}  // namespace

Result<void, ChainError> parse_chain(const GuestMemory& memory, std::span<const uint8_t> table, uint16_t head,
                                     const ChainLimits& limits, ChainBuffers& out) {
  out.clear();
  Result<void, ChainError> parsed = walk(memory, table, limits.queue_size, head, false, limits, out);
  if (!parsed) out.clear();
  return parsed;
}

ChainBytes ChainBytes::split_at(size_t n) {
  ChainBytes tail = *this;
  n = std::min(n, remaining_);
  tail.skip(n);
  remaining_ = n;
  return tail;
}

size_t ChainBytes::skip(size_t n) {
  size_t done = 0;
  while (done < n && remaining_ > 0 && index_ < segments_.size()) {
    size_t in_segment = segments_[index_].size() - offset_;
    size_t step = std::min({n - done, remaining_, in_segment});
    done += step;
    remaining_ -= step;
    offset_ += step;
    if (offset_ == segments_[index_].size()) {
      ++index_;
      offset_ = 0;
    }
  }
  return done;
}

size_t ChainBytes::copy(uint8_t* buffer, size_t n, bool to_chain) {
  size_t done = 0;
  while (done < n && remaining_ > 0 && index_ < segments_.size()) {
    std::span<uint8_t> seg = segments_[index_];
    size_t step = std::min({n - done, remaining_, seg.size() - offset_});
    if (to_chain) std::memcpy(seg.data() + offset_, buffer + done, step);
    else std::memcpy(buffer + done, seg.data() + offset_, step);
    done += step;
    remaining_ -= step;
    offset_ += step;
    if (offset_ == seg.size()) {
      ++index_;
      offset_ = 0;
    }
  }
  return done;
}

void ChainBytes::append_iovecs(std::vector<iovec>& out) const {
  size_t left = remaining_;
  size_t offset = offset_;
  for (size_t i = index_; i < segments_.size() && left > 0; ++i, offset = 0) {
    size_t len = std::min(left, segments_[i].size() - offset);
    if (len == 0) continue;
    out.push_back(iovec{segments_[i].data() + offset, len});
    left -= len;
  }
}

}  // namespace ember::virtio
