// One io_uring per VM, shared by every device backend that uses it, set up once
// before the vCPUs start (ring setup is slow; never per request). Completions
// are signalled on an eventfd that the event thread waits on. Event thread only.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "vmm/util/unique_fd.h"

namespace ember::virtio {

// Receives the result (bytes, or -errno) of one submitted operation.
class RingCompletion {
 public:
  virtual void on_ring_complete(int32_t result) = 0;

 protected:
  ~RingCompletion() = default;
};

class IoUringRing {
 public:
  // Throws Error when io_uring is unavailable (old kernel, seccomp, limits).
  explicit IoUringRing(unsigned entries);
  ~IoUringRing();
  IoUringRing(const IoUringRing&) = delete;
  IoUringRing& operator=(const IoUringRing&) = delete;

  int event_fd() const { return event_fd_.get(); }
  // Queue one operation; false when the submission queue is full even after
  // flushing it. Nothing reaches the kernel until submit().
  bool readv(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done);
  bool writev(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done);
  bool fdatasync(int fd, RingCompletion* done);
  // Asks the kernel to cancel the operation whose completion is `target` (it
  // then completes with -ECANCELED, or normally if it was already done).
  bool cancel(RingCompletion* target);
  // One io_uring_enter for everything queued since the last call.
  void submit();
  // Drains the eventfd and dispatches every available completion, then runs the
  // batch-end hooks (devices signal their interrupts there, once per batch).
  size_t reap();
  void on_batch_end(std::function<void()> hook) { batch_end_.push_back(std::move(hook)); }
  // Blocks, dispatching completions, until `done()` is true (device reset path).
  void wait_until(const std::function<bool()>& done);

 private:
  io_uring_sqe* next_sqe();
  size_t dispatch_ready();

  io_uring ring_{};
  UniqueFd event_fd_;
  unsigned queued_ = 0;
  std::vector<std::function<void()>> batch_end_;
};

}  // namespace ember::virtio
