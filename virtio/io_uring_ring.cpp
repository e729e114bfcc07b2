#include "virtio/io_uring_ring.h"

#include <sys/eventfd.h>

#include <algorithm>

#include "base/util/error.h"
#include "base/util/log.h"

namespace ember::virtio {

namespace {
// The operations ember's backends issue: block reads, writes, flushes and fallocate
// (DISCARD and WRITE_ZEROES), tap reads and writes, and cancellation at reset.
constexpr uint8_t kAllowedOps[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE,
                                   IORING_OP_ASYNC_CANCEL};
}  // namespace

IoUringRing::IoUringRing(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, IORING_SETUP_R_DISABLED);
  if (rc < 0) fail("io_uring_queue_init(", entries, ", IORING_SETUP_R_DISABLED): ", errno_text(-rc), " (Linux 5.10 or later is needed)");
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

void IoUringRing::add_file(int fd) {
  if (sealed_) fail("io_uring: file ", fd, " added after the ring was sealed");
  files_.push_back(fd);
}

void IoUringRing::seal() {
  if (sealed_) return;
  if (!files_.empty()) {
    int rc = io_uring_register_files(&ring_, files_.data(), static_cast<unsigned>(files_.size()));
    if (rc < 0) fail("io_uring_register_files (", files_.size(), " files): ", errno_text(-rc));
  }
  std::vector<io_uring_restriction> rules;
  for (uint8_t op : kAllowedOps) {
    io_uring_restriction r{};
    r.opcode = IORING_RESTRICTION_SQE_OP;
    r.sqe_op = op;
    rules.push_back(r);
  }
  for (uint16_t kind : {uint16_t{IORING_RESTRICTION_SQE_FLAGS_ALLOWED}, uint16_t{IORING_RESTRICTION_SQE_FLAGS_REQUIRED}}) {
    io_uring_restriction r{};
    r.opcode = kind;
    r.sqe_flags = IOSQE_FIXED_FILE;
    rules.push_back(r);
  }
  // The one registration allowed afterwards: a drive's slot pointed at its new file.
  io_uring_restriction update{};
  update.opcode = IORING_RESTRICTION_REGISTER_OP;
  update.register_op = IORING_REGISTER_FILES_UPDATE;
  rules.push_back(update);
  int rc = io_uring_register_restrictions(&ring_, rules.data(), static_cast<unsigned>(rules.size()));
  if (rc < 0) fail("io_uring_register_restrictions: ", errno_text(-rc));
  rc = io_uring_enable_rings(&ring_);
  if (rc < 0) fail("io_uring_enable_rings: ", errno_text(-rc));
  sealed_ = true;
}

void IoUringRing::replace_file(int old_fd, int new_fd) {
  auto slot = std::find(files_.begin(), files_.end(), old_fd);
  if (slot == files_.end()) fail("io_uring: fd ", old_fd, " is not registered with the ring");
  if (sealed_) {
    int rc = io_uring_register_files_update(&ring_, static_cast<unsigned>(slot - files_.begin()), &new_fd, 1);
    if (rc < 0) fail("io_uring_register_files_update (slot ", slot - files_.begin(), "): ", errno_text(-rc));
  }
  *slot = new_fd;
}

io_uring_sqe* IoUringRing::next_sqe(int fd, int& fixed_index) {
  fixed_index = -1;
  if (fd >= 0) {
    for (size_t i = 0; i < files_.size(); ++i) {
      if (files_[i] == fd) fixed_index = static_cast<int>(i);
    }
    if (fixed_index < 0) {
      log::error(cat("io_uring: fd ", fd, " is not registered with the ring"));
      return nullptr;
    }
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe) ++queued_;
  return sqe;
}

template <typename Prepare>
bool IoUringRing::queue(int fd, RingCompletion* done, Prepare prepare) {
  int index;
  io_uring_sqe* sqe = next_sqe(fd, index);
  if (!sqe) return false;
  prepare(sqe, index);
  sqe->flags |= IOSQE_FIXED_FILE;  // the seal requires it of every entry
  io_uring_sqe_set_data(sqe, done);
  return true;
}

bool IoUringRing::readv(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done) {
  return queue(fd, done, [&](io_uring_sqe* sqe, int index) { io_uring_prep_readv(sqe, index, iov, count, offset); });
}

bool IoUringRing::writev(int fd, const iovec* iov, unsigned count, uint64_t offset, RingCompletion* done) {
  return queue(fd, done, [&](io_uring_sqe* sqe, int index) { io_uring_prep_writev(sqe, index, iov, count, offset); });
}

bool IoUringRing::fdatasync(int fd, RingCompletion* done) {
  return queue(fd, done, [](io_uring_sqe* sqe, int index) { io_uring_prep_fsync(sqe, index, IORING_FSYNC_DATASYNC); });
}

bool IoUringRing::fallocate(int fd, int mode, uint64_t offset, uint64_t length, RingCompletion* done) {
  return queue(fd, done, [&](io_uring_sqe* sqe, int index) {
    io_uring_prep_fallocate(sqe, index, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
  });
}

bool IoUringRing::cancel(RingCompletion* target) {
  // No file (a cancel by user data), and no completion: its own result is not needed.
  return queue(-1, nullptr, [target](io_uring_sqe* sqe, int) { io_uring_prep_cancel(sqe, target, 0); });
}

void IoUringRing::submit() {
  if (queued_ == 0) return;
  if (!sealed_) {
    log::error("io_uring: operations queued on a ring that was never sealed");
    return;
  }
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
