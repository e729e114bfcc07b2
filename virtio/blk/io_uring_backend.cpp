// The io_uring engine: requests go to the VM's shared ring and complete later,
// in any order, when the event thread reaps the ring.
#include <cerrno>

#include "virtio/blk/block_backend.h"

namespace ember::virtio::blk {

namespace {

class IoUringBackend final : public BlockBackend {
 public:
  IoUringBackend(int fd, int direct_fd, IoUringRing& ring) : fd_(fd), direct_fd_(direct_fd), ring_(ring) {}
  void submit(BlockIo& io) override {
    bool queued = false;
    unsigned count = static_cast<unsigned>(io.iov.size());
    int data_fd = io.direct && direct_fd_ >= 0 ? direct_fd_ : fd_;
    switch (io.op) {
      case BlockIo::Op::Read: queued = ring_.readv(data_fd, io.iov.data(), count, io.offset, &io); break;
      case BlockIo::Op::Write: queued = ring_.writev(data_fd, io.iov.data(), count, io.offset, &io); break;
      case BlockIo::Op::Flush: queued = ring_.fdatasync(fd_, &io); break;
      case BlockIo::Op::PunchHole:
      case BlockIo::Op::ZeroRange:
        queued = ring_.fallocate(fd_, fallocate_mode(io.op), io.offset, io.length, &io);
        break;
    }
    if (!queued) io.on_complete(-EBUSY);
  }
  void flush_submissions() override { ring_.submit(); }
  void wait_until(const std::function<bool()>& idle) override { ring_.wait_until(idle); }
  void replace_file(int fd, int direct_fd) override {
    ring_.replace_file(fd_, fd);
    if (direct_fd_ >= 0) {
      try {
        ring_.replace_file(direct_fd_, direct_fd);
      } catch (...) {
        ring_.replace_file(fd, fd_);  // both slots keep the old file
        throw;
      }
    }
    fd_ = fd;
    direct_fd_ = direct_fd;
  }
  const char* name() const override { return "io_uring"; }

 private:
  int fd_;
  int direct_fd_;
  IoUringRing& ring_;
};

}  // namespace

std::unique_ptr<BlockBackend> make_io_uring_backend(int fd, int direct_fd, IoUringRing& ring) {
  ring.add_file(fd);
  if (direct_fd >= 0) ring.add_file(direct_fd);
  return std::make_unique<IoUringBackend>(fd, direct_fd, ring);
}

}  // namespace ember::virtio::blk
