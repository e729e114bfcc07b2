// The io_uring engine: requests go to the VM's shared ring and complete later,
// in any order, when the event thread reaps the ring.
#include <cerrno>

#include "virtio/blk/block_backend.h"

namespace ember::virtio::blk {

namespace {

class IoUringBackend final : public BlockBackend {
 public:
  IoUringBackend(int fd, IoUringRing& ring) : fd_(fd), ring_(ring) {}
  void submit(BlockIo& io) override {
    bool queued = false;
    unsigned count = static_cast<unsigned>(io.iov.size());
    switch (io.op) {
      case BlockIo::Op::Read: queued = ring_.readv(fd_, io.iov.data(), count, io.offset, &io); break;
      case BlockIo::Op::Write: queued = ring_.writev(fd_, io.iov.data(), count, io.offset, &io); break;
      case BlockIo::Op::Flush: queued = ring_.fdatasync(fd_, &io); break;
    }
    if (!queued) io.on_complete(-EBUSY);
  }
  void flush_submissions() override { ring_.submit(); }
  void wait_until(const std::function<bool()>& idle) override { ring_.wait_until(idle); }
  void replace_file(int fd) override {
    ring_.replace_file(fd_, fd);
    fd_ = fd;
  }
  const char* name() const override { return "io_uring"; }

 private:
  int fd_;
  IoUringRing& ring_;
};

}  // namespace

std::unique_ptr<BlockBackend> make_io_uring_backend(int fd, IoUringRing& ring) {
  ring.add_file(fd);
  return std::make_unique<IoUringBackend>(fd, ring);
}

}  // namespace ember::virtio::blk
