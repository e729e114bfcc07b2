// The synchronous engine: each request runs to completion inside submit().
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>

#include "virtio/blk/block_backend.h"

namespace ember::virtio::blk {

namespace {

// Repeats preadv/pwritev until everything moved, EOF, or an error; returns the
// byte count or -errno.
int64_t transfer_all(int fd, bool write, std::vector<iovec> iov, uint64_t offset) {
  int64_t total = 0;
  size_t first = 0;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = write ? ::pwritev(fd, iov.data() + first, count, static_cast<off_t>(offset + total))
                      : ::preadv(fd, iov.data() + first, count, static_cast<off_t>(offset + total));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;  // end of file: a short transfer
    total += n;
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return total;
}

int64_t punch_or_zero(int fd, BlockIo::Op op, uint64_t offset, uint64_t length) {
  int rc;
  do {
    rc = ::fallocate(fd, fallocate_mode(op), static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (rc < 0 && errno == EINTR);
  return rc == 0 ? 0 : -errno;
}

class SyncBackend final : public BlockBackend {
 public:
  SyncBackend(int fd, int direct_fd) : fd_(fd), direct_fd_(direct_fd) {}
  void submit(BlockIo& io) override {
    int data_fd = io.direct && direct_fd_ >= 0 ? direct_fd_ : fd_;
    switch (io.op) {
      case BlockIo::Op::Read: io.on_complete(transfer_all(data_fd, false, io.iov, io.offset)); break;
      case BlockIo::Op::Write: io.on_complete(transfer_all(data_fd, true, io.iov, io.offset)); break;
      case BlockIo::Op::Flush: io.on_complete(::fdatasync(fd_) == 0 ? 0 : -errno); break;
      case BlockIo::Op::PunchHole:
      case BlockIo::Op::ZeroRange: io.on_complete(punch_or_zero(fd_, io.op, io.offset, io.length)); break;
    }
  }
  void wait_until(const std::function<bool()>&) override {}  // nothing is ever in flight
  void replace_file(int fd, int direct_fd) override {
    fd_ = fd;
    direct_fd_ = direct_fd;
  }
  const char* name() const override { return "sync"; }

 private:
  int fd_;
  int direct_fd_;
};

}  // namespace

int fallocate_mode(BlockIo::Op op) {
  // KEEP_SIZE: a range at the very end must not change the file's size (the capacity).
  return (op == BlockIo::Op::PunchHole ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
}

std::unique_ptr<BlockBackend> make_sync_backend(int fd, int direct_fd) {
  return std::make_unique<SyncBackend>(fd, direct_fd);
}

}  // namespace ember::virtio::blk
