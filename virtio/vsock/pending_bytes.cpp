#include "virtio/vsock/pending_bytes.h"

#include <algorithm>

namespace ember::virtio::vsock {

void PendingBytes::consume(size_t n) {
  written_ += std::min(n, size());
  if (written_ == data_.size()) {
    data_.clear();
    written_ = 0;
  }
}

void PendingBytes::append(ChainReader& from, size_t cap) {
  // A host that never drains fully would otherwise keep every byte ever sent. The written
  // prefix goes only when the storage would otherwise grow: moving the rest on every
  // append would copy up to buf_alloc per packet.
  if (written_ > 0 && data_.size() + from.remaining() > data_.capacity()) {
    data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(written_));
    written_ = 0;
  }
  size_t old = data_.size();
  size_t needed = old + from.remaining();
  if (needed > data_.capacity()) data_.reserve(std::max(needed, std::min(2 * needed, cap)));
  data_.resize(needed);
  from.read(std::span<uint8_t>(data_.data() + old, needed - old));
}

}  // namespace ember::virtio::vsock
