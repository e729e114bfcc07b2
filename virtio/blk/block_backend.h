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
// once, with the bytes transferred (0 for Flush, PunchHole, ZeroRange) or -errno;
// possibly before submit() returns.
class BlockIo : public RingCompletion {
 public:
  // PunchHole: fallocate(PUNCH_HOLE | KEEP_SIZE), ZeroRange: fallocate(ZERO_RANGE |
  // KEEP_SIZE), both on [offset, offset + length); EOPNOTSUPP where the file cannot.
  enum class Op { Read, Write, Flush, PunchHole, ZeroRange };
  Op op = Op::Read;
  uint64_t offset = 0;
  uint64_t length = 0;  // PunchHole, ZeroRange
  std::vector<iovec> iov;  // Read, Write
  bool direct = false;     // Read, Write on the O_DIRECT descriptor (cache = "none", aligned)

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
  // Later requests go to `fd` and `direct_fd` (a swapped backing file); only with
  // nothing in flight. Throws Error; the backend then keeps its file.
  virtual void replace_file(int fd, int direct_fd) = 0;
  virtual const char* name() const = 0;
};

// `fd` is the backing file; `direct_fd` the same file opened O_DIRECT (cache = "none"),
// used by requests marked `direct`, or -1.
// preadv/pwritev/fdatasync/fallocate on the event thread: simple, and the comparison point.
std::unique_ptr<BlockBackend> make_sync_backend(int fd, int direct_fd);
// Submitted to the VM's shared ring without blocking; completed out of order.
std::unique_ptr<BlockBackend> make_io_uring_backend(int fd, int direct_fd, IoUringRing& ring);

// fallocate()'s mode for PunchHole and ZeroRange.
int fallocate_mode(BlockIo::Op op);

}  // namespace ember::virtio::blk
