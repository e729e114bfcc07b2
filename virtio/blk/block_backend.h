// How a virtio-blk device reaches its backing file: one interface, two engines
// (io_uring, asynchronous; preadv/pwritev, synchronous). Event thread only.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "virtio/io_uring_ring.h"

namespace ember::virtio::blk {

// One operation on the backing file. The backend calls on_complete() exactly
// once, with the bytes transferred or -errno; possibly before submit() returns.
class BlockIo : public RingCompletion {
 public:
  enum class Op { Read, Write, Flush };
  Op op = Op::Read;
  uint64_t offset = 0;
  std::vector<iovec> iov;

  virtual void on_complete(int64_t result) = 0;
  void on_ring_complete(int32_t result) override { on_complete(result); }

 protected:
  ~BlockIo() = default;
};

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;
  virtual void submit(BlockIo& io) = 0;
  // Called once per batch of submit()s (one queue notification).
  virtual void flush_submissions() {}
  // Blocks until `idle()` is true, completing I/O meanwhile (device reset).
  virtual void wait_until(const std::function<bool()>& idle) = 0;
  // Later requests go to `fd` (a swapped backing file); only with nothing in flight.
  // Throws Error; the backend then keeps its file.
  virtual void replace_file(int fd) = 0;
  virtual const char* name() const = 0;
};

// preadv/pwritev/fdatasync on the event thread: simple, and the comparison point.
std::unique_ptr<BlockBackend> make_sync_backend(int fd);
// Submitted to the VM's shared ring without blocking; completed out of order.
std::unique_ptr<BlockBackend> make_io_uring_backend(int fd, IoUringRing& ring);

}  // namespace ember::virtio::blk
