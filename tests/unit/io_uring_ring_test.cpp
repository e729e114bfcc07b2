// The sealed io_uring: the kernel runs only the operations ember issues, only on the
// files its devices registered, and takes no further registration but the update of an
// existing slot (a drive's file swapped), so the ring is no way around the seccomp
// filters (io_uring's work is not seen by seccomp).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/util/error.h"
#include "virtio/io_uring_ring.h"

namespace ember::virtio {

// Reaches the raw ring, to submit what ember's own methods never would.
struct IoUringRingProbe {
  static io_uring& raw(IoUringRing& r) { return r.ring_; }
  // Submits one prepared entry and returns its completion's result.
  static int32_t submit_one(IoUringRing& r) {
    io_uring& ring = raw(r);
    if (io_uring_submit(&ring) != 1) return INT32_MIN;
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) != 0) return INT32_MIN;
    int32_t res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
  }
};

namespace {

namespace fs = std::filesystem;

struct SealedRing {
  fs::path path = fs::temp_directory_path() / ("ember-ring-test-" + std::to_string(::getpid()));
  int fd;
  IoUringRing ring{8};
  SealedRing() {
    std::ofstream(path) << "registered file contents";
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    ring.add_file(fd);
    ring.seal();
  }
  ~SealedRing() {
    ::close(fd);
    fs::remove(path);
  }
  io_uring_sqe* sqe() { return io_uring_get_sqe(&IoUringRingProbe::raw(ring)); }
};

TEST(IoUringRing, RegisteredFileCanBeReadThroughItsFixedIndex) {
  SealedRing r;
  char buf[10] = {};
  iovec iov{buf, sizeof(buf)};
  io_uring_sqe* read = r.sqe();
  io_uring_prep_readv(read, 0, &iov, 1, 0);  // index 0 of the registered files
  read->flags |= IOSQE_FIXED_FILE;
  EXPECT_EQ(IoUringRingProbe::submit_one(r.ring), static_cast<int32_t>(sizeof(buf)));
  EXPECT_EQ(std::string(buf, sizeof(buf)), "registered");
}

TEST(IoUringRing, OperationsEmberNeverIssuesAreRefusedByTheKernel) {
  SealedRing r;
  io_uring_sqe* open = r.sqe();
  io_uring_prep_openat(open, AT_FDCWD, "/etc/passwd", O_RDONLY, 0);
  open->flags |= IOSQE_FIXED_FILE;
  EXPECT_EQ(IoUringRingProbe::submit_one(r.ring), -EACCES);

  io_uring_sqe* connect = r.sqe();
  io_uring_prep_connect(connect, 0, nullptr, 0);
  connect->flags |= IOSQE_FIXED_FILE;
  EXPECT_EQ(IoUringRingProbe::submit_one(r.ring), -EACCES);
}

TEST(IoUringRing, AnAllowedOperationOnAPlainDescriptorIsRefused) {
  SealedRing r;
  char buf[4];
  iovec iov{buf, sizeof(buf)};
  io_uring_prep_readv(r.sqe(), r.fd, &iov, 1, 0);  // no IOSQE_FIXED_FILE: any fd ember holds
  EXPECT_EQ(IoUringRingProbe::submit_one(r.ring), -EACCES);
}

// After the seal, the only registration is moving an existing slot to another file ember
// holds (a drive's file swapped): no slot is added, nothing else registered.
TEST(IoUringRing, OnlyAnExistingSlotCanBeUpdatedAfterTheSeal) {
  SealedRing r;
  int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  io_uring& raw = IoUringRingProbe::raw(r.ring);
  EXPECT_EQ(io_uring_register_files_update(&raw, 1, &other, 1), -EINVAL);  // past the table
  EXPECT_EQ(io_uring_register_eventfd(&raw, other), -EACCES);
  EXPECT_EQ(io_uring_register_files(&raw, &other, 1), -EACCES);
  EXPECT_EQ(io_uring_unregister_files(&raw), -EACCES);
  char buf[8];
  iovec iov{buf, sizeof(buf)};
  EXPECT_EQ(io_uring_register_buffers(&raw, &iov, 1), -EACCES);
  ::close(other);
  EXPECT_THROW(r.ring.add_file(0), Error);
}

// replace_file(): the registered slot reads the new file; an fd never registered is refused.
TEST(IoUringRing, ReplacedFileIsReadThroughTheSameSlot) {
  SealedRing r;
  fs::path next = r.path.string() + "-next";
  std::ofstream(next) << "the new file";
  int fd = ::open(next.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_THROW(r.ring.replace_file(fd, r.fd), Error);  // fd is not registered
  r.ring.replace_file(r.fd, fd);
  char buf[12] = {};
  iovec iov{buf, sizeof(buf)};
  EXPECT_TRUE(r.ring.readv(fd, &iov, 1, 0, nullptr));
  r.ring.submit();
  io_uring_cqe* cqe = nullptr;
  ASSERT_EQ(io_uring_wait_cqe(&IoUringRingProbe::raw(r.ring), &cqe), 0);
  EXPECT_EQ(cqe->res, 12);
  io_uring_cqe_seen(&IoUringRingProbe::raw(r.ring), cqe);
  EXPECT_EQ(std::string(buf, sizeof(buf)), "the new file");
  EXPECT_FALSE(r.ring.readv(r.fd, &iov, 1, 0, nullptr));  // the old fd is no longer registered
  ::close(fd);
  fs::remove(next);
}

TEST(IoUringRing, EmbersOwnMethodsRefuseAnUnregisteredDescriptor) {
  SealedRing r;
  char buf[4];
  iovec iov{buf, sizeof(buf)};
  EXPECT_FALSE(r.ring.readv(STDIN_FILENO, &iov, 1, 0, nullptr));
  EXPECT_FALSE(r.ring.fdatasync(STDIN_FILENO, nullptr));
}

}  // namespace
}  // namespace ember::virtio
