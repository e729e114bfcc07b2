// virtio-blk DISCARD and WRITE_ZEROES (virtio 1.2 section 5.2.6) with both engines: holes
// punched and zeros read back, the config fields at the spec's offsets, hostile segments,
// read-only drives; and cache = "none" (O_DIRECT for aligned requests, the page cache
// for the rest, a file system without O_DIRECT named at setup).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include "base/util/error.h"
#include "tests/unit/blk_harness.h"
#include "virtio/spec.h"
#include "vmm/config_files.h"

namespace ember::virtio::blk {
namespace {

namespace fs = std::filesystem;
using test::BlkHarness;
using test::Buffer;
using test::Engine;
using test::read_file;
using test::temp_file;

// A readable buffer holding one segment (or `count` copies of it).
Buffer segment(BlkHarness& h, uint64_t sector, uint32_t num_sectors, uint32_t flags, int count = 1) {
  DiscardWriteZeroesSegment s{sector, num_sectors, flags};
  Buffer b = h.driver.alloc(static_cast<uint32_t>(16 * count));
  for (int i = 0; i < count; ++i) std::memcpy(h.driver.bytes(b).data() + 16 * i, &s, 16);
  return b;
}

// Where the file's first hole begins (its size when it has none).
off_t first_hole(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return ::lseek(fd.get(), 0, SEEK_HOLE);
}

// The host file system of the tests punches holes (ext4, xfs, btrfs and tmpfs all do).
bool can_punch_holes(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  return ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512) == 0;
}

std::string sector_text(BlkHarness& h, const Buffer& b) {
  return std::string(reinterpret_cast<char*>(h.driver.bytes(b).data()), b.len);
}

class BlkDiscard : public ::testing::TestWithParam<Engine> {};

TEST_P(BlkDiscard, DiscardPunchesAHoleThatReadsBackAsZeros) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  if (!can_punch_holes(temp_file("probe", 4096, 'p'))) GTEST_SKIP() << "TMPDIR cannot punch holes";
  ASSERT_EQ(first_hole(h.path), 64 * 1024);  // all data
  struct stat before {};
  ASSERT_EQ(::stat(h.path.c_str(), &before), 0);
  EXPECT_EQ(h.request(kTypeDiscard, 0, {segment(h, 16, 16, 0)}, {}), kStatusOk);  // 8 KiB at 8 KiB
  EXPECT_EQ(first_hole(h.path), 8192);
  struct stat after {};
  ASSERT_EQ(::stat(h.path.c_str(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks);
  EXPECT_EQ(after.st_size, 64 * 1024);  // KEEP_SIZE
  std::string contents = read_file(h.path);
  EXPECT_EQ(contents.substr(8192, 8192), std::string(8192, '\0'));
  EXPECT_EQ(contents.substr(0, 8192), std::string(8192, 'd'));
  EXPECT_EQ(contents.substr(16384), std::string(64 * 1024 - 16384, 'd'));
  Buffer back = h.driver.alloc(512, 0xff);
  EXPECT_EQ(h.request(kTypeIn, 20, {}, {back}), kStatusOk);
  EXPECT_EQ(sector_text(h, back), std::string(512, '\0'));
  EXPECT_EQ(h.metric("discard_requests"), 1u);
  // The last sector of the disk: the size stays.
  EXPECT_EQ(h.request(kTypeDiscard, 0, {segment(h, 127, 1, 0)}, {}), kStatusOk);
  EXPECT_EQ(fs::file_size(h.path), 64u * 1024);
  fs::remove(temp_file("probe", 0, 0));
}

TEST_P(BlkDiscard, WriteZeroesZeroesWithOrWithoutUnmap) {
  BlkHarness h(GetParam(), false, 64 * 1024);
  if (!can_punch_holes(temp_file("probe", 4096, 'p'))) GTEST_SKIP() << "TMPDIR cannot punch holes";
  // Without unmap: FALLOC_FL_ZERO_RANGE; the range stays allocated (no hole).
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 1, 3, 0)}, {}), kStatusOk);
  std::string contents = read_file(h.path);
  EXPECT_EQ(contents.substr(0, 512), std::string(512, 'd'));
  EXPECT_EQ(contents.substr(512, 1536), std::string(1536, '\0'));
  EXPECT_EQ(contents.substr(2048, 512), std::string(512, 'd'));
  EXPECT_EQ(first_hole(h.path), 64 * 1024);
  // With unmap (write_zeroes_may_unmap is 1): a hole.
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 32, 8, kSegmentFlagUnmap)}, {}), kStatusOk);
  EXPECT_EQ(first_hole(h.path), 32 * 512);
  Buffer back = h.driver.alloc(4096, 0xff);
  EXPECT_EQ(h.request(kTypeIn, 32, {}, {back}), kStatusOk);
  EXPECT_EQ(sector_text(h, back), std::string(4096, '\0'));
  EXPECT_EQ(fs::file_size(h.path), 64u * 1024);
  EXPECT_EQ(h.metric("write_zeroes_requests"), 2u);
  fs::remove(temp_file("probe", 0, 0));
}

// Every field the guest wrote is checked before the file is touched.
TEST_P(BlkDiscard, HostileSegmentsAreRefusedAndTouchNothing) {
  BlkHarness h(GetParam(), false, 64 * 1024);  // 128 sectors
  for (uint32_t type : {kTypeDiscard, kTypeWriteZeroes}) {
    SCOPED_TRACE(type);
    EXPECT_EQ(h.request(type, 0, {}, {}), kStatusIoErr);                                    // no segment
    EXPECT_EQ(h.request(type, 0, {h.driver.alloc(15)}, {}), kStatusIoErr);                  // short
    EXPECT_EQ(h.request(type, 0, {h.driver.alloc(24)}, {}), kStatusIoErr);                  // not 16 * n
    EXPECT_EQ(h.request(type, 0, {segment(h, 0, 8, 0, 2)}, {}), kStatusIoErr);              // 2 > max_seg
    EXPECT_EQ(h.request(type, 0, {segment(h, 0, 0, 0)}, {}), kStatusIoErr);                 // empty
    EXPECT_EQ(h.request(type, 0, {segment(h, 120, 9, 0)}, {}), kStatusIoErr);               // past the end
    EXPECT_EQ(h.request(type, 0, {segment(h, 128, 1, 0)}, {}), kStatusIoErr);               // at the end
    EXPECT_EQ(h.request(type, 0, {segment(h, UINT64_MAX - 1, 4, 0)}, {}), kStatusIoErr);    // wraps
    EXPECT_EQ(h.request(type, 0, {segment(h, UINT64_MAX / 512, 1, 0)}, {}), kStatusIoErr);  // bytes wrap
    EXPECT_EQ(h.request(type, 0, {segment(h, 0, kMaxDiscardSectors + 1, 0)}, {}), kStatusIoErr);
    EXPECT_EQ(h.request(type, 0, {segment(h, 0, 8, 2)}, {}), kStatusUnsupported);           // unknown flag
    EXPECT_EQ(h.request(type, 0, {segment(h, 0, 8, 0x80000001)}, {}), kStatusUnsupported);
    // The segment in the device-writable part is no segment at all.
    Buffer writable = h.driver.alloc(16);
    DiscardWriteZeroesSegment s{0, 8, 0};
    std::memcpy(h.driver.bytes(writable).data(), &s, 16);
    EXPECT_EQ(h.request(type, 0, {}, {writable}), kStatusIoErr);
  }
  // 5.2.6.2: unmap on a discard is UNSUPP.
  EXPECT_EQ(h.request(kTypeDiscard, 0, {segment(h, 0, 8, kSegmentFlagUnmap)}, {}), kStatusUnsupported);
  EXPECT_EQ(read_file(h.path), std::string(64 * 1024, 'd'));
  EXPECT_EQ(h.metric("discard_requests"), 0u);
  EXPECT_EQ(h.metric("write_zeroes_requests"), 0u);
  // And the device still works.
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 0, 1, 0)}, {}), kStatusOk);
}

TEST_P(BlkDiscard, ReadOnlyDriveOffersNeitherAndRefusesBoth) {
  BlkHarness h(GetParam(), true);
  uint64_t f = h.device->device_features();
  EXPECT_EQ(f & (bit(kFeatureDiscard) | bit(kFeatureWriteZeroes)), 0u);
  uint8_t fields[24] = {};
  h.device->read_config(36, fields);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(fields), 24), std::string(24, '\0'));
  EXPECT_EQ(h.request(kTypeDiscard, 0, {segment(h, 0, 8, 0)}, {}), kStatusIoErr);
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 0, 8, 0)}, {}), kStatusIoErr);
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 0, 8, kSegmentFlagUnmap)}, {}), kStatusIoErr);
  EXPECT_EQ(read_file(h.path), std::string(64 * 1024, 'd'));
}

// A file that cannot take the fallocate() (tmpfs has no ZERO_RANGE; a block device may
// have neither): the request fails with IOERR, the device goes on.
TEST_P(BlkDiscard, ABackingFileThatCannotZeroGivesIoErr) {
  const char* shm = "/dev/shm";
  std::string path = std::string(shm) + "/ember-blk-zero-" + std::to_string(::getpid());
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) GTEST_SKIP() << "no " << shm;
    std::string data(8192, 'z');
    ASSERT_EQ(::write(fd.get(), data.data(), data.size()), 8192);
    if (::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 512) == 0) {
      ::unlink(path.c_str());
      GTEST_SKIP() << shm << " zeroes ranges";
    }
  }
  BlkHarness h(GetParam(), false, 4096, "zero", [&](BlockDeviceOptions& o) { o.path = path; });
  EXPECT_EQ(h.request(kTypeWriteZeroes, 0, {segment(h, 0, 8, 0)}, {}), kStatusIoErr);
  EXPECT_EQ(h.metric("execute_fails"), 1u);
  EXPECT_EQ(test::read_file(path), std::string(8192, 'z'));
  Buffer back = h.driver.alloc(512);
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {back}), kStatusOk);
  ::unlink(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Blk, BlkDiscard, ::testing::Values(Engine::Sync, Engine::IoUring),
                         test::engine_name);

template <typename T>
T config_field(const BlockDevice& device, size_t offset) {
  T value{};
  device.read_config(offset, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
  return value;
}

// The fields at the offsets of Linux's own struct virtio_blk_config (the spec's layout).
TEST(Blk, DiscardAndWriteZeroesAreAdvertisedWithTheirLimits) {
  BlkHarness h(Engine::Sync, false, 1 << 20);
  uint64_t f = h.device->device_features();
  EXPECT_EQ(f, bit(kFeatureSegMax) | bit(kFeatureBlkSize) | bit(kFeatureFlush) | bit(kFeatureDiscard) |
                   bit(kFeatureWriteZeroes));
  EXPECT_EQ(kFeatureDiscard, unsigned{VIRTIO_BLK_F_DISCARD});
  EXPECT_EQ(kFeatureWriteZeroes, unsigned{VIRTIO_BLK_F_WRITE_ZEROES});
  EXPECT_EQ(kTypeDiscard, unsigned{VIRTIO_BLK_T_DISCARD});
  EXPECT_EQ(kTypeWriteZeroes, unsigned{VIRTIO_BLK_T_WRITE_ZEROES});
  EXPECT_EQ(sizeof(DiscardWriteZeroesSegment), sizeof(virtio_blk_discard_write_zeroes));
  const BlockDevice& d = *h.device;
  EXPECT_EQ(config_field<uint64_t>(d, offsetof(virtio_blk_config, capacity)), 2048u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, seg_max)), 14u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, blk_size)), 512u);
  EXPECT_EQ(config_field<uint16_t>(d, offsetof(virtio_blk_config, num_queues)), 1u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, max_discard_sectors)), kMaxDiscardSectors);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, max_discard_seg)), 1u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, discard_sector_alignment)), 8u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, max_write_zeroes_sectors)), kMaxDiscardSectors);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, max_write_zeroes_seg)), 1u);
  EXPECT_EQ(config_field<uint8_t>(d, offsetof(virtio_blk_config, write_zeroes_may_unmap)), 1u);
  // Fields before them that ember leaves at 0: size_max, geometry, topology, writeback.
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, size_max)), 0u);
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, geometry)), 0u);
  EXPECT_EQ(config_field<uint64_t>(d, offsetof(virtio_blk_config, physical_block_exp)), 0u);
  EXPECT_EQ(config_field<uint8_t>(d, offsetof(virtio_blk_config, wce)), 0u);
  // Past write_zeroes_may_unmap and its padding (secure erase, not offered): zeros.
  EXPECT_EQ(config_field<uint32_t>(d, offsetof(virtio_blk_config, max_secure_erase_sectors)), 0u);
}

// cache = "none". Is a descriptor on `path` open with O_DIRECT in this process?
bool open_with_o_direct(const fs::path& path) {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(entry.path(), ec) != path) continue;
    std::string info = read_file("/proc/self/fdinfo/" + entry.path().filename().string());
    size_t at = info.find("flags:");
    if (at != std::string::npos && (std::stoul(info.substr(at + 6), nullptr, 8) & O_DIRECT)) return true;
  }
  return false;
}

// Whether the page of `path` at `offset` is in the host page cache.
bool page_cached(const fs::path& path, off_t offset) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  void* map = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd.get(), offset);
  if (map == MAP_FAILED) return true;
  unsigned char resident = 0;
  ::mincore(map, 4096, &resident);
  ::munmap(map, 4096);
  return resident & 1;
}

// Drops the file's clean pages from the page cache; false if they stay (tmpfs).
bool drop_cache(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ::fdatasync(fd.get());
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  return !page_cached(path, 0);
}

// A buffer of `len` bytes at a page-aligned guest address (the guest's RAM is page-aligned
// host memory, so the host address is aligned as well).
Buffer page_aligned(BlkHarness& h, uint32_t len, uint8_t fill) {
  Buffer room = h.driver.alloc(len + 4096);
  Buffer b{(room.gpa + 4095) & ~4095ull, len};
  std::memset(h.driver.bytes(b).data(), fill, len);
  return b;
}

class BlkCacheNone : public ::testing::TestWithParam<Engine> {};

TEST_P(BlkCacheNone, AlignedRequestsBypassThePageCacheAndOthersStillWork) {
  BlkHarness h(GetParam(), false, 64 * 1024, "direct", [](BlockDeviceOptions& o) { o.direct_io = true; });
  EXPECT_TRUE(h.device->direct_io());
  EXPECT_TRUE(open_with_o_direct(h.path));
  if (!drop_cache(h.path)) GTEST_SKIP() << "TMPDIR keeps pages cached";
  // Aligned read: O_DIRECT, the page stays out of the cache.
  Buffer page = page_aligned(h, 4096, 0xff);
  EXPECT_EQ(h.request(kTypeIn, 16, {}, {page}), kStatusOk);
  EXPECT_EQ(sector_text(h, page), std::string(4096, 'd'));
  EXPECT_FALSE(page_cached(h.path, 8192));
  // Aligned write, then read back through a plain descriptor.
  EXPECT_EQ(h.request(kTypeOut, 24, {page_aligned(h, 8192, 'A')}, {}), kStatusOk);
  EXPECT_FALSE(page_cached(h.path, 12288));
  EXPECT_EQ(read_file(h.path).substr(12288, 8192), std::string(8192, 'A'));
  // Unaligned: a 512-byte write at sector 1 from a 64-byte aligned buffer, and a read of
  // one page into a buffer that is not page-aligned: both through the buffered descriptor.
  EXPECT_EQ(h.request(kTypeOut, 1, {h.driver.alloc(512, 'u')}, {}), kStatusOk);
  Buffer odd = h.driver.alloc(4096 + 64);
  Buffer shifted{odd.gpa + 64, 4096};
  if (shifted.gpa % 4096 == 0) shifted.gpa += 64;
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {shifted}), kStatusOk);
  EXPECT_EQ(sector_text(h, shifted), std::string(512, 'd') + std::string(512, 'u') + std::string(3072, 'd'));
  // An aligned read of what the buffered write left in the cache sees it (coherent).
  Buffer again = page_aligned(h, 4096, 0);
  EXPECT_EQ(h.request(kTypeIn, 0, {}, {again}), kStatusOk);
  EXPECT_EQ(sector_text(h, again), std::string(512, 'd') + std::string(512, 'u') + std::string(3072, 'd'));
  EXPECT_EQ(h.request(kTypeFlush, 0, {}, {}), kStatusOk);
  EXPECT_EQ(h.request(kTypeDiscard, 0, {segment(h, 8, 8, 0)}, {}), kStatusOk);
  EXPECT_EQ(read_file(h.path).substr(4096, 4096), std::string(4096, '\0'));
}

// PATCH /drives with path_on_host on a cache = "none" drive: the new file is direct too.
TEST_P(BlkCacheNone, ASwappedFileKeepsTheCacheMode) {
  BlkHarness h(GetParam(), false, 64 * 1024, "direct", [](BlockDeviceOptions& o) { o.direct_io = true; });
  fs::path other = temp_file("direct-next", 64 * 1024, 'n');
  EXPECT_THROW(h.device->replace_backing_file(open_backing("direct", other.string(), false), other.string()), Error);
  h.device->replace_backing_file(open_backing("direct", other.string(), false, true), other.string());
  EXPECT_TRUE(open_with_o_direct(other));
  EXPECT_FALSE(open_with_o_direct(h.path));
  Buffer page = page_aligned(h, 4096, 0);
  EXPECT_EQ(h.request(kTypeIn, 8, {}, {page}), kStatusOk);
  EXPECT_EQ(sector_text(h, page), std::string(4096, 'n'));
  fs::remove(other);
}

INSTANTIATE_TEST_SUITE_P(Blk, BlkCacheNone, ::testing::Values(Engine::Sync, Engine::IoUring),
                         test::engine_name);

// A file system without O_DIRECT (procfs here; tmpfs before Linux 6.6) is a setup error
// naming the drive, the path and what to do, from the device and from the config check.
TEST(Blk, CacheNoneOnAFileSystemWithoutODirectIsAClearError) {
  const std::string path = "/proc/version";
  try {
    open_backing("data", path, true, true);
    ADD_FAILURE() << "O_DIRECT on procfs was accepted";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("drive 'data'"), std::string::npos) << m;
    EXPECT_NE(m.find("'" + path + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("O_DIRECT"), std::string::npos) << m;
    EXPECT_NE(m.find("cache = \"none\""), std::string::npos) << m;
  }
  DriveConfig d;
  d.drive_id = "data";
  d.path_on_host = path;
  d.is_read_only = true;
  EXPECT_NO_THROW(check_drive_file(d));
  d.cache = DriveConfig::Cache::None;
  try {
    check_drive_file(d);
    ADD_FAILURE() << "the config check accepted it";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("O_DIRECT"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ember::virtio::blk
