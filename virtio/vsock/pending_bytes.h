// Guest data accepted for a host socket but not yet written to it. The guest's
// credit (virtio 1.2 section 5.10.6.3) keeps the unwritten part within our
// buf_alloc; dropping the written prefix before appending keeps the storage
// within it too, however slowly the host reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "virtio/descriptor_chain.h"

namespace ember::virtio::vsock {

class PendingBytes {
 public:
  bool empty() const { return size() == 0; }
  size_t size() const { return data_.size() - written_; }
  // The bytes to write next, in order.
  std::span<const uint8_t> front() const { return {data_.data() + written_, size()}; }
  // `n` bytes of front() reached the host.
  void consume(size_t n);
  // Appends what is left in `from`. Storage grows in doubling steps up to
  // `cap` (our buf_alloc), and past it only if the credit check was bypassed.
  void append(ChainReader& from, size_t cap);
  size_t capacity() const { return data_.capacity(); }

 private:
  std::vector<uint8_t> data_;
  size_t written_ = 0;  // prefix of data_ already sent
};

}  // namespace ember::virtio::vsock
