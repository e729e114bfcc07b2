// The snapshot file container: round trip, and every kind of bad file refused by name.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/util/file_io.h"
#include "tests/unit/child_process.h"
#include "tests/unit/error_of.h"
#include "tests/unit/temp_dir.h"
#include "vmm/snapshot/snapshot_file.h"

namespace ember::snapshot {
namespace {

using test::error_of;
using test::TempDir;

SnapshotContents sample() {
  SnapshotContents c;
  StateWriter machine;
  machine.u32(2);
  machine.u64(128ull << 20);
  c.add("machine", machine.take());
  c.add("vcpu0", std::vector<uint8_t>(300, 0xab));
  c.add("device:block_rootfs", {});
  return c;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::string s = read_file(path, "test file");
  return {s.begin(), s.end()};
}

void put_file(const std::string& path, std::span<const uint8_t> bytes) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(write_all(fd.get(), {reinterpret_cast<const char*>(bytes.data()), bytes.size()}));
}

// The checksum recomputed after a test edits a field, so the edit is what gets reported.
void reseal(std::vector<uint8_t>& bytes) {
  uint64_t crc = crc64(std::span(bytes).first(bytes.size() - 8));
  for (int i = 0; i < 8; ++i) bytes[bytes.size() - 8 + i] = static_cast<uint8_t>(crc >> (8 * i));
}

size_t entries_in(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

TEST(SnapshotFile, Crc64MatchesTheCheckValue) {
  const std::string check = "123456789";  // CRC-64/XZ check value from the CRC catalogue
  EXPECT_EQ(crc64({reinterpret_cast<const uint8_t*>(check.data()), check.size()}), 0x995dc9bbdf1939faull);
  auto a = std::span(reinterpret_cast<const uint8_t*>(check.data()), 4);
  auto b = std::span(reinterpret_cast<const uint8_t*>(check.data()) + 4, 5);
  EXPECT_EQ(crc64(b, crc64(a)), 0x995dc9bbdf1939faull);
}

TEST(SnapshotFile, RoundTrip) {
  TempDir dir;
  std::string path = dir.file("vm.snap");
  write_snapshot_file(path, sample());
  SnapshotContents back = read_snapshot_file(path);
  EXPECT_EQ(back.ember_version(), ember_version());
  ASSERT_EQ(back.sections().size(), 3u);
  EXPECT_EQ(back.sections()[1].name, "vcpu0");
  StateReader machine = back.section("machine");
  EXPECT_EQ(machine.u32("vcpus"), 2u);
  EXPECT_EQ(machine.u64("memory"), 128ull << 20);
  machine.expect_end();
  EXPECT_EQ(back.section("vcpu0").remaining(), 300u);
  EXPECT_EQ(back.section("device:block_rootfs").remaining(), 0u);
  EXPECT_EQ(back.section("vcpu0").context(), "snapshot '" + path + "': section vcpu0");
  std::string missing = error_of([&] { back.section("vcpu1"); });
  EXPECT_NE(missing.find(path), std::string::npos) << missing;
  EXPECT_NE(missing.find("no section 'vcpu1'"), std::string::npos) << missing;
  EXPECT_EQ(entries_in(dir.path), 1u);  // no temporary file left behind
}

TEST(SnapshotFile, EveryTruncationRefused) {
  std::vector<uint8_t> bytes = encode_snapshot(sample());
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::string e = error_of([&] { decode_snapshot(std::span(bytes).first(len), "s"); });
    EXPECT_NE(e.find("snapshot file 's' is truncated"), std::string::npos) << len << ": " << e;
  }
  TempDir dir;
  put_file(dir.file("short"), std::span(bytes).first(bytes.size() / 2));
  std::string e = error_of([&] { read_snapshot_file(dir.file("short")); });
  EXPECT_NE(e.find("truncated: " + std::to_string(bytes.size() / 2) + " of its " + std::to_string(bytes.size())),
            std::string::npos)
      << e;
}

TEST(SnapshotFile, FlippedByteAnywhereRefused) {
  const std::vector<uint8_t> good = encode_snapshot(sample());
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x10;
    std::string e = error_of([&] { decode_snapshot(bad, "s"); });
    if (i < 8) {
      EXPECT_NE(e.find("not an ember snapshot"), std::string::npos) << i << ": " << e;
    } else if (i < 12 || i >= 20) {  // the format version is checked only after the checksum
      EXPECT_NE(e.find("is corrupted: checksum"), std::string::npos) << i << ": " << e;
    } else {  // the file length
      EXPECT_TRUE(e.find("truncated") != std::string::npos || e.find("corrupted") != std::string::npos) << i << ": " << e;
    }
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_NE(error_of([&] { decode_snapshot(longer, "s"); }).find("corrupted"), std::string::npos);
}

TEST(SnapshotFile, WrongMagicVersionArchitecture) {
  TempDir dir;
  std::string text = "this is a text file, not a snapshot at all";
  put_file(dir.file("text"), {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  std::string e = error_of([&] { read_snapshot_file(dir.file("text")); });
  EXPECT_EQ(e, "snapshot file '" + dir.file("text") + "' is not an ember snapshot (its first bytes are not the snapshot magic)");

  std::vector<uint8_t> v2 = encode_snapshot(sample());
  v2[8] = 2;
  reseal(v2);
  e = error_of([&] { decode_snapshot(v2, "s"); });
  EXPECT_NE(e.find("format version: 2 is not supported"), std::string::npos) << e;
  EXPECT_NE(e.find("reads format version 1 only"), std::string::npos) << e;

  e = error_of([&] { decode_snapshot(encode_snapshot(sample(), "aarch64"), "s"); });
  EXPECT_NE(e.find("snapshot file 's': architecture: the snapshot is of a 'aarch64' machine, this ember runs x86_64"),
            std::string::npos)
      << e;
}

TEST(SnapshotFile, SectionBounds) {
  SnapshotContents c;
  c.add("a", {1});
  EXPECT_NE(error_of([&] { c.add("a", {}); }).find("section 'a' added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { c.add("", {}); }).find("empty name"), std::string::npos);
  EXPECT_NE(error_of([&] { c.add(std::string(65, 'n'), {}); }).find("more than the 64 allowed"), std::string::npos);
  for (uint32_t i = 1; i < kMaxSections; ++i) c.add("s" + std::to_string(i), {});
  EXPECT_NE(error_of([&] { c.add("one-more", {}); }).find("more than 1024 sections"), std::string::npos);

  // A file with a duplicate (made by hand: add() refuses them).
  SnapshotContents two;
  two.add("dev", {1});
  two.add("deW", {2});
  std::vector<uint8_t> bytes = encode_snapshot(two);
  auto at = std::search(bytes.begin(), bytes.end(), std::begin("deW"), std::begin("deW") + 3);
  ASSERT_NE(at, bytes.end());
  at[2] = 'v';
  reseal(bytes);
  std::string e = error_of([&] { decode_snapshot(bytes, "s"); });
  EXPECT_NE(e.find("section 'dev' appears twice"), std::string::npos) << e;
}

TEST(SnapshotFile, FifoAndDirectoryRefusedWithoutWaiting) {
  test::TempFifo fifo;
  int rc = test::run_in_child(
      [&] {
        std::string e = error_of([&] { read_snapshot_file(fifo.path); });
        return e == "snapshot file '" + fifo.path + "' is a FIFO, not a regular file" ? 0 : 1;
      },
      5000);
  EXPECT_EQ(rc, 0) << (rc == test::kChildTimedOut ? "open() of the FIFO hung" : "wrong message");
  TempDir dir;
  EXPECT_NE(error_of([&] { read_snapshot_file(dir.path); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { read_snapshot_file(dir.file("none")); }).find("cannot open snapshot file"), std::string::npos);
}

TEST(SnapshotFile, OversizedFileRefused) {
  TempDir dir;
  std::string path = dir.file("big");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_EQ(::ftruncate(fd.get(), kMaxFileSize + 1), 0);
  std::string e = error_of([&] { read_snapshot_file(path); });
  EXPECT_NE(e.find("is 67108865 bytes, more than the 67108864"), std::string::npos) << e;
}

TEST(SnapshotFile, FailedWriteLeavesExistingFileIntact) {
  TempDir dir;
  std::string path = dir.file("vm.snap");
  write_snapshot_file(path, sample());
  const std::vector<uint8_t> before = file_bytes(path);
  // A write that fails half way: the file size limit (root ignores folder permissions).
  int rc = test::run_in_child(
      [&] {
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit limit{4096, 4096};
        ::setrlimit(RLIMIT_FSIZE, &limit);
        SnapshotContents big;
        big.add("device:huge", std::vector<uint8_t>(1 << 20, 7));
        std::string e = error_of([&] { write_snapshot_file(path, big); });
        return e.find("cannot write snapshot file '" + path + "': write: File too large") == 0 ? 0 : 1;
      },
      10000);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_EQ(entries_in(dir.path), 1u);
  // A target that cannot be replaced (a folder): refused, nothing left behind.
  ASSERT_EQ(::mkdir(dir.file("folder").c_str(), 0700), 0);
  EXPECT_NE(error_of([&] { write_snapshot_file(dir.file("folder"), sample()); }).find("rename into place"),
            std::string::npos);
  EXPECT_EQ(entries_in(dir.path), 2u);
  EXPECT_NE(error_of([&] { write_snapshot_file(dir.file("no/such/dir"), sample()); }).find("cannot create snapshot file"),
            std::string::npos);
}

}  // namespace
}  // namespace ember::snapshot
