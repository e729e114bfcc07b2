// End-to-end DISCARD and cache = "none": the guest's blkdiscard frees the blocks of the
// drive's host file (and a read-only drive offers no discard); a guest on a cache = "none"
// drive writes and reads its data back, aligned and not, as the host then finds it.
// Run through tests/e2e/run-e2e.sh --gtest_filter='Blk*Discard*'.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

constexpr uint64_t kMiB = 1 << 20;

std::string bytes_at(const fs::path& path, uint64_t offset, uint64_t length) {
  std::string all = read_text(path);
  return offset < all.size() ? all.substr(offset, length) : "";
}

std::string sha256_of(const std::string& data, const fs::path& scratch) {
  fs::path tmp = scratch / "sha-input";
  std::ofstream(tmp, std::ios::binary) << data;
  return sh("sha256sum '" + tmp.string() + "'").substr(0, 64);
}

std::string found(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m[1].str() : "";
}

TEST(BlkDiscardAndCache, GuestDiscardFreesTheHostFilesBlocks) {
  fs::path dir = scratch_dir("blk-discard");
  fs::path disk = filled_file(dir / "disk.img", 8 * kMiB);
  fs::path ro = filled_file(dir / "ro.img", kMiB);
  struct stat before {};
  ASSERT_EQ(::stat(disk.c_str(), &before), 0);
  const char* script =
      "echo VDA_LIMITS $(cat /sys/block/vda/queue/discard_max_bytes) "
      "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)\n"
      "echo VDB_LIMITS $(cat /sys/block/vdb/queue/discard_max_bytes) "
      "$(cat /sys/block/vdb/queue/write_zeroes_max_bytes)\n"
      "blkdiscard -o 1048576 -l 4194304 /dev/vda && echo DISCARD_OK\n"
      "echo 3 > /proc/sys/vm/drop_caches\n"
      "echo NONZERO_AFTER=$(dd if=/dev/vda bs=1048576 skip=1 count=4 2>/dev/null | tr -d '\\000' | wc -c)\n"
      "echo KEPT=$(dd if=/dev/vda bs=1048576 count=1 2>/dev/null | tr -d 'e' | wc -c)\n";
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                 env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(script),
                                 "--drive", "id=scratch,path=" + disk.string(), "--drive",
                                 "id=ro,path=" + ro.string() + ",ro,engine=sync"},
                                180 * time_scale());
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  // Linux took the advertised limits (1 GiB each) for the writable drive, none for the other.
  EXPECT_NE(r.out.find("VDA_LIMITS 1073741824 1073741824"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("VDB_LIMITS 0 0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("DISCARD_OK"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("NONZERO_AFTER=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("KEPT=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
  // On the host: the 4 MiB are a hole (blocks freed, zeros), the rest is as it was.
  struct stat after {};
  ASSERT_EQ(::stat(disk.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, static_cast<off_t>(8 * kMiB));
  EXPECT_LE(after.st_blocks, before.st_blocks - static_cast<blkcnt_t>(4 * kMiB / 512))
      << "blocks before " << before.st_blocks << ", after " << after.st_blocks;
  int fd = ::open(disk.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(::lseek(fd, 0, SEEK_HOLE), static_cast<off_t>(kMiB));
  ::close(fd);
  EXPECT_EQ(bytes_at(disk, kMiB, 4 * kMiB), std::string(4 * kMiB, '\0'));
  EXPECT_EQ(bytes_at(disk, 0, kMiB), std::string(kMiB, 'e'));
  EXPECT_EQ(bytes_at(disk, 5 * kMiB, 3 * kMiB), std::string(3 * kMiB, 'e'));
  EXPECT_EQ(read_text(ro), std::string(kMiB, 'e'));
  fs::remove_all(dir);
}

// Whether `path`'s file system takes O_DIRECT (tmpfs before Linux 6.6 does not: the
// emulated host's TMPDIR).
bool takes_o_direct(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A loop device over `file` (root only), detached on destruction: a block device takes
// O_DIRECT whatever file system holds the file behind it.
struct LoopDevice {
  std::string path;
  explicit LoopDevice(const fs::path& file) {
    std::string out = sh("losetup --find --show '" + file.string() + "'");
    path = out.substr(0, out.find('\n'));
  }
  ~LoopDevice() {
    if (!path.empty()) sh("losetup -d '" + path + "'");
  }
};

TEST(BlkDiscardAndCache, CacheNoneGuestWritesAndReadsItsData) {
  fs::path dir = scratch_dir("blk-cache-none");
  fs::path file = filled_file(dir / "data.img", 8 * kMiB);
  std::unique_ptr<LoopDevice> loop;
  std::string drive = file.string();
  if (!takes_o_direct(file)) {
    if (::geteuid() != 0) GTEST_SKIP() << dir << " refuses O_DIRECT and a loop device needs root";
    ASSERT_TRUE(host_tools({{"losetup", "mount"}}));
    loop = std::make_unique<LoopDevice>(file);
    ASSERT_FALSE(loop->path.empty());
    drive = loop->path;
  }
  // Through the guest's page cache (whole pages: O_DIRECT in ember), then 512-byte O_DIRECT
  // writes and reads in the guest at 1.5 KiB (not 4 KiB aligned: ember's buffered descriptor).
  const char* script =
      "head -c 4194304 /dev/urandom > /tmp/a.bin\n"
      "echo BIGREF $(sha256sum < /tmp/a.bin)\n"
      "echo SMALLREF $(head -c 3584 /tmp/a.bin | sha256sum)\n"
      "dd if=/tmp/a.bin of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null && echo BIG_WRITTEN\n"
      "dd if=/tmp/a.bin of=/dev/vda bs=512 count=7 seek=3 oflag=direct 2>/dev/null && echo SMALL_WRITTEN\n"
      "echo 3 > /proc/sys/vm/drop_caches\n"
      "echo BIG $(dd if=/dev/vda bs=65536 skip=16 count=64 2>/dev/null | sha256sum)\n"
      "echo SMALL $(dd if=/dev/vda bs=512 skip=3 count=7 iflag=direct 2>/dev/null | sha256sum)\n";
  std::ofstream(dir / "vm.toml") << "[boot-source]\nkernel_image_path = \"" << env("EMBER_GUEST_DIR")
                                 << "/bzImage\"\ninitrd_path = \"" << env("EMBER_GUEST_DIR")
                                 << "/initramfs.cpio.gz\"\nboot_args = \"" << cmdline(script) << "\"\n"
                                 << "[[drive]]\nid = \"data\"\npath = \"" << drive << "\"\ncache = \"none\"\n";
  ProcessResult r =
      run_process({env("EMBER_BIN"), "--config", (dir / "vm.toml").string(), "--log-level", "info"}, 180 * time_scale());
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("cache none (O_DIRECT)"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("BIG_WRITTEN"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("SMALL_WRITTEN"), std::string::npos) << describe(r);
  std::string big_ref = found(r.out, "BIGREF ([0-9a-f]{64})"), small_ref = found(r.out, "SMALLREF ([0-9a-f]{64})");
  ASSERT_EQ(big_ref.size(), 64u) << describe(r);
  EXPECT_EQ(found(r.out, "BIG ([0-9a-f]{64})"), big_ref) << describe(r);
  EXPECT_EQ(found(r.out, "SMALL ([0-9a-f]{64})"), small_ref) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
  loop.reset();
  // On the host: both writes in the file, the bytes around them untouched.
  EXPECT_EQ(sha256_of(bytes_at(file, kMiB, 4 * kMiB), dir), big_ref);
  EXPECT_EQ(sha256_of(bytes_at(file, 1536, 3584), dir), small_ref);
  EXPECT_EQ(bytes_at(file, 0, 1536), std::string(1536, 'e'));
  EXPECT_EQ(bytes_at(file, 5120, kMiB - 5120), std::string(kMiB - 5120, 'e'));
  EXPECT_EQ(bytes_at(file, 5 * kMiB, 3 * kMiB), std::string(3 * kMiB, 'e'));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
