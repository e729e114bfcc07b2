// One io_uring per VM, shared by every device backend that uses it, set up once
// before the vCPUs start (ring setup is slow; never per request). Completions
// are signalled on an eventfd that the event thread waits on. Event thread only.
//
// io_uring runs its operations in the kernel, out of seccomp's sight, so the ring is
// created disabled and sealed before use: only the operations below are allowed, only on
// the files the devices registered (fixed files), and the only later io_uring_register
// call accepted is IORING_REGISTER_FILES_UPDATE, which puts another descriptor ember
// already holds into an existing slot (a drive's backing file swapped, PATCH /drives).
// A compromised ember cannot use it to open, connect or reach a file it does not hold.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "base/util/unique_fd.h"

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
  // Before seal(): `fd` may be used in operations (each device adds its backing files).
  void add_file(int fd);
  // Registers the files and the restrictions, then enables the ring. Once, before the
  // first operation; no io_uring_register call works afterwards. Throws Error.
  void seal();
  // The registered slot of `old_fd` now refers to `new_fd` (IORING_REGISTER_FILES_UPDATE
  // once sealed). Only with nothing in flight on `old_fd`: its requests could otherwise
  // complete on either file. Throws Error; then `old_fd` stays registered.
  void replace_file(int old_fd, int new_fd);
  // Queue one operation; false when the submission queue is full even after
  // flushing it. Nothing reaches the kernel until submit().
  bool readv(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done);
  bool writev(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done);
  bool fdatasync(int fd, RingCompletion* done);
  bool fallocate(int fd, int mode, uint64_t offset, uint64_t length, RingCompletion* done);
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
  // The next submission entry, on the registered file `fd` (-1: an operation on none).
  io_uring_sqe* next_sqe(int fd, int& fixed_index);
  // next_sqe, then `prepare(sqe, fixed_index)`, the fixed-file flag and `done` as user data.
  template <typename Prepare>
  bool queue(int fd, RingCompletion* done, Prepare prepare);
  size_t dispatch_ready();

  std::vector<int> files_;  // fixed file index -> fd
  bool sealed_ = false;
  friend struct IoUringRingProbe;  // tests: the kernel refuses what the seal excludes

  io_uring ring_{};
  UniqueFd event_fd_;
  unsigned queued_ = 0;
  std::vector<std::function<void()>> batch_end_;
};

}  // namespace ember::virtio
