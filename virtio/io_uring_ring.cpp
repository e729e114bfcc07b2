#include "virtio/io_uring_ring.h"

#include <sys/eventfd.h>

#include "vmm/util/error.h"
#include "vmm/util/log.h"

namespace ember::virtio {

IoUringRing::IoUringRing(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) fail("io_uring_queue_init(", entries, "): ", errno_text(-rc));
  event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event_fd_.valid()) {
    io_uring_queue_exit(&ring_);
    fail("eventfd for io_uring completions: ", errno_text());
  }
  rc = io_uring_register_eventfd(&ring_, event_fd_.get());
  if (rc < 0) {
    io_uring_queue_exit(&ring_);
    fail("io_uring_register_eventfd: ", errno_text(-rc));
  }
}

IoUringRing::~IoUringRing() { io_uring_queue_exit(&ring_); }

io_uring_sqe* IoUringRing::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe) ++queued_;
  return sqe;
}

bool IoUringRing::readv(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done) {
  io_uring_sqe* sqe = next_sqe();
  if (!sqe) return false;
  io_uring_prep_readv(sqe, fd, iov, count, offset);
  io_uring_sqe_set_data(sqe, done);
  return true;
}

bool IoUringRing::writev(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done) {
  io_uring_sqe* sqe = next_sqe();
  if (!sqe) return false;
  io_uring_prep_writev(sqe, fd, iov, count, offset);
  io_uring_sqe_set_data(sqe, done);
  return true;
}

bool IoUringRing::fdatasync(int fd, RingCompletion* done) {
  io_uring_sqe* sqe = next_sqe();
  if (!sqe) return false;
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(sqe, done);
  return true;
}

bool IoUringRing::cancel(RingCompletion* target) {
  io_uring_sqe* sqe = next_sqe();
  if (!sqe) return false;
  io_uring_prep_cancel(sqe, target, 0);
  io_uring_sqe_set_data(sqe, nullptr);  // the cancel's own result is not needed
  return true;
}

void IoUringRing::submit() {
  if (queued_ == 0) return;
  int rc = io_uring_submit(&ring_);
  if (rc < 0) log::error(cat("io_uring_submit: ", errno_text(-rc)));
  else queued_ = 0;
}

size_t IoUringRing::dispatch_ready() {
  size_t count = 0;
  io_uring_cqe* cqe;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    auto* done = static_cast<RingCompletion*>(io_uring_cqe_get_data(cqe));
    int32_t result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (done) done->on_ring_complete(result);
    ++count;
  }
  return count;
}

size_t IoUringRing::reap() {
  uint64_t ignored_count;
  ssize_t ignored = ::read(event_fd_.get(), &ignored_count, sizeof(ignored_count));
  (void)ignored;
  size_t count = dispatch_ready();
  for (auto& hook : batch_end_) hook();
  submit();  // completions may have queued follow-up work
  return count;
}

void IoUringRing::wait_until(const std::function<bool()>& done) {
  submit();
  while (!done()) {
    io_uring_cqe* cqe;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc < 0 && rc != -EINTR) {
      log::error(cat("io_uring_wait_cqe: ", errno_text(-rc)));
      return;
    }
    dispatch_ready();
  }
  for (auto& hook : batch_end_) hook();
}

}  // namespace ember::virtio
