// sigbus_guarded_copy: a copy from a truncated file mapping (or into one) reports the
// fault instead of killing the process; SIGBUS elsewhere keeps its default action.
#include "base/util/sigbus_guarded_copy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

namespace ember {
namespace {

constexpr size_t kSize = 64 * 1024;

// A memfd of kSize bytes (each byte its offset's low 8 bits), mapped: past its end a
// mapping faults with SIGBUS like a regular file's.
struct MappedFile {
  int fd = -1;
  uint8_t* data = nullptr;
  explicit MappedFile(int prot) {
    fd = ::memfd_create("ember-sigbus-test", MFD_CLOEXEC);
    EXPECT_GE(fd, 0);
    std::vector<uint8_t> bytes(kSize);
    for (size_t i = 0; i < kSize; ++i) bytes[i] = static_cast<uint8_t>(i);
    EXPECT_EQ(::write(fd, bytes.data(), kSize), static_cast<ssize_t>(kSize));
    data = static_cast<uint8_t*>(::mmap(nullptr, kSize, prot, MAP_SHARED, fd, 0));
    EXPECT_NE(data, MAP_FAILED);
  }
  ~MappedFile() {
    ::munmap(data, kSize);
    ::close(fd);
  }
};

TEST(SigbusGuardedCopy, CopiesAnIntactMapping) {
  MappedFile file(PROT_READ);
  std::vector<uint8_t> out(kSize, 0xee);
  GuardedCopyResult r = sigbus_guarded_copy(out.data(), file.data, kSize);
  EXPECT_EQ(r.fault, GuardedCopyResult::Fault::None);
  for (size_t i = 0; i < kSize; ++i) ASSERT_EQ(out[i], static_cast<uint8_t>(i)) << "byte " << i;
}

TEST(SigbusGuardedCopy, SourceTruncatedUnderTheMappingIsReportedWithItsAddress) {
  MappedFile file(PROT_READ);
  ASSERT_EQ(::ftruncate(file.fd, 4096), 0);
  std::vector<uint8_t> out(kSize, 0xee);
  GuardedCopyResult r = sigbus_guarded_copy(out.data(), file.data, kSize);
  EXPECT_EQ(r.fault, GuardedCopyResult::Fault::Source);
  EXPECT_EQ(r.address, reinterpret_cast<uintptr_t>(file.data) + 4096);
  EXPECT_EQ(out[4095], static_cast<uint8_t>(4095));  // what was there is copied
  // Still guarded afterwards (SIGBUS unblocked again by the jump out of the handler).
  r = sigbus_guarded_copy(out.data(), file.data + 8192, 100);
  EXPECT_EQ(r.fault, GuardedCopyResult::Fault::Source);
}

TEST(SigbusGuardedCopy, DestinationThatCannotBeWrittenIsReported) {
  MappedFile file(PROT_READ | PROT_WRITE);
  ASSERT_EQ(::ftruncate(file.fd, 0), 0);
  std::vector<uint8_t> in(kSize, 1);
  GuardedCopyResult r = sigbus_guarded_copy(file.data, in.data(), kSize);
  EXPECT_EQ(r.fault, GuardedCopyResult::Fault::Destination);
  // Where in the destination depends on the order memcpy stores in (glibc's vector copies
  // store the first 16 bytes last at times): somewhere inside it.
  EXPECT_GE(r.address, reinterpret_cast<uintptr_t>(file.data));
  EXPECT_LT(r.address, reinterpret_cast<uintptr_t>(file.data) + kSize);
}

TEST(SigbusGuardedCopy, ThreadsFaultingAtOnceEachGetTheirOwnResult) {
  MappedFile a(PROT_READ), b(PROT_READ);
  ASSERT_EQ(::ftruncate(b.fd, 0), 0);
  GuardedCopyResult ra, rb;
  std::vector<uint8_t> out_a(kSize), out_b(kSize);
  std::thread t([&] {
    for (int i = 0; i < 200; ++i) rb = sigbus_guarded_copy(out_b.data(), b.data, kSize);
  });
  for (int i = 0; i < 200; ++i) ra = sigbus_guarded_copy(out_a.data(), a.data, kSize);
  t.join();
  EXPECT_EQ(ra.fault, GuardedCopyResult::Fault::None);
  EXPECT_EQ(rb.fault, GuardedCopyResult::Fault::Source);
  EXPECT_EQ(out_a[kSize - 1], static_cast<uint8_t>(kSize - 1));
}

TEST(SigbusGuardedCopyDeathTest, SigbusOutsideACopyStillKills) {
  EXPECT_EXIT(
      {
        MappedFile file(PROT_READ);
        std::vector<uint8_t> out(16);
        sigbus_guarded_copy(out.data(), file.data, out.size());  // installs the handler
        if (::ftruncate(file.fd, 0) != 0) std::exit(2);
        volatile uint8_t byte = file.data[0];  // unguarded: must die as without the handler
        (void)byte;
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace ember
