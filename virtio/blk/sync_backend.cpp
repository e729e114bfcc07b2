// The synchronous engine: each request runs to completion inside submit().
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

class SyncBackend final : public BlockBackend {
 public:
  explicit SyncBackend(int fd) : fd_(fd) {}
  void submit(BlockIo& io) override {
    switch (io.op) {
      case BlockIo::Op::Read: io.on_complete(transfer_all(fd_, false, io.iov, io.offset)); break;
      case BlockIo::Op::Write: io.on_complete(transfer_all(fd_, true, io.iov, io.offset)); break;
      case BlockIo::Op::Flush: io.on_complete(::fdatasync(fd_) == 0 ? 0 : -errno); break;
    }
  }
  void wait_until(const std::function<bool()>&) override {}  // nothing is ever in flight
  void replace_file(int fd) override { fd_ = fd; }
  const char* name() const override { return "sync"; }

 private:
  int fd_;
};

}  // namespace

std::unique_ptr<BlockBackend> make_sync_backend(int fd) { return std::make_unique<SyncBackend>(fd); }

}  // namespace ember::virtio::blk
