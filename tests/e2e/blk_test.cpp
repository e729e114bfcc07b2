// End-to-end virtio-blk: real guests boot from an ext4 root on virtio-blk, use a
// second (read-only) drive, write data the host then checks, and survive a
// backing file that shrinks under them. Run through tests/e2e/run-e2e.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <string_view>
#include <regex>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Root filesystem: the test initramfs (busybox + /init) plus a file for the guest to read.
// Small: the emulated host is slow.
fs::path make_root_image(const fs::path& dir) {
  return guest_root_image(dir, {{"hello.txt", "hello from the host\n"}}, "96M");
}

fs::path make_data_image(const fs::path& dir) {
  fs::path tree = dir / "data-tree";
  fs::create_directories(tree);
  std::ofstream(tree / "data.txt") << "second drive says hi\n";
  fs::path image = dir / "data.img";
  sh("mke2fs -q -F -t ext4 -d '" + tree.string() + "' '" + image.string() + "' 8M");
  return image;
}

std::string sha256(const fs::path& file) {
  std::string out = sh("sha256sum '" + file.string() + "'");
  return out.substr(0, 64);
}

// The guest (root on /dev/vda, read-only data on /dev/vdb): reads the host's
// file, checks the second drive, tries to write the read-only one, writes 64 MiB.
constexpr const char* kRootScript =
    "cat /hello.txt\n"
    "mount -t ext4 -o ro /dev/vdb /mnt && cat /mnt/data.txt\n"
    "grep -q ' / ext4 rw' /proc/mounts && echo ROOT_IS_EXT4_RW\n"
    "dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>/dev/null && echo RO_WRITE_ALLOWED || echo RO_WRITE_REFUSED\n"
    "head -c 67108864 /dev/urandom > /big.bin && sync && sha256sum /big.bin\n";

enum class Via { CliIoUring, TomlSync };

class RootDrive : public ::testing::TestWithParam<Via> {};

TEST_P(RootDrive, GuestBootsFromExt4OnVirtioBlkAndTheHostSeesItsWrites) {
  fs::path dir = scratch_dir(GetParam() == Via::CliIoUring ? "root-io_uring" : "root-sync");
  ASSERT_TRUE(host_tools({{"zcat", "gzip"}, {"cpio", "cpio"}, {"mke2fs", "e2fsprogs"}, {"debugfs", "e2fsprogs"}}));
  fs::path root = make_root_image(dir);
  fs::path data = make_data_image(dir);
  std::string data_sum = sha256(data);
  std::string kernel = env("EMBER_GUEST_DIR") + "/bzImage";
  // No initrd: the kernel mounts /dev/vda (ember appends root=/dev/vda rw) and runs /init from it.
  std::string args = cmdline(kRootScript) + " init=/init";
  std::vector<std::string> argv = {env("EMBER_BIN")};
  if (GetParam() == Via::CliIoUring) {
    argv.insert(argv.end(), {"--kernel", kernel, "--cmdline", args, "--mem-mib", "256", "--drive",
                             "id=data,path=" + data.string() + ",ro", "--drive",
                             "id=rootfs,path=" + root.string() + ",root"});
  } else {
    // Paths relative to the TOML file; the sync engine for both drives.
    std::ofstream(dir / "vm.toml") << "[boot-source]\nkernel_image_path = \"" << kernel << "\"\nboot_args = \""
                                   << args << "\"\n[machine-config]\nmem_size_mib = 256\n"
                                   << "[[drive]]\nid = \"rootfs\"\npath = \"root.img\"\nroot = true\n"
                                   << "io_engine = \"sync\"\n"
                                   << "[[drive]]\ndrive_id = \"data\"\npath_on_host = \"data.img\"\n"
                                   << "is_read_only = true\nio_engine = \"sync\"\n";
    argv.insert(argv.end(), {"--config", (dir / "vm.toml").string()});
  }
  ProcessResult r = run_process(argv, 240 * time_scale());
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("hello from the host"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("second drive says hi"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("ROOT_IS_EXT4_RW"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("RO_WRITE_REFUSED"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
  std::smatch m;
  std::regex re("([0-9a-f]{64})  /big.bin");
  ASSERT_TRUE(std::regex_search(r.out, m, re)) << describe(r);
  // After ember exits, the bytes the guest wrote are in the image on the host.
  fs::path dumped = dir / "big.bin";
  sh("debugfs -R 'dump /big.bin " + dumped.string() + "' '" + root.string() + "' 2>/dev/null");
  EXPECT_EQ(fs::file_size(dumped), 64u << 20);
  EXPECT_EQ(sha256(dumped), m[1].str());
  EXPECT_EQ(sha256(data), data_sum) << "the read-only drive changed";
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Blk, RootDrive, ::testing::Values(Via::CliIoUring, Via::TomlSync),
                         [](const auto& info) { return info.param == Via::CliIoUring ? "cli_io_uring" : "toml_sync"; });

// The host shrinks a drive's file while the guest uses it: reads past the new end
// are I/O errors in the guest, and ember keeps running until the guest shuts down.
class TruncatedDrive : public ::testing::TestWithParam<const char*> {};

TEST_P(TruncatedDrive, GuestGetsIoErrorsAndEmberSurvives) {
  fs::path dir = scratch_dir(std::string("truncate-") + GetParam());
  fs::path disk = dir / "disk.img";
  sh("head -c 8388608 /dev/zero | tr '\\0' 'e' > '" + disk.string() + "'");
  fs::path console = dir / "console.log";
  const char* script =
      "dd if=/dev/vda of=/dev/null bs=4096 count=16 skip=100 2>/dev/null && echo BEFORE_OK\n"
      "echo WAITING_FOR_TRUNCATE\n"
      "i=0; while [ $i -lt 600 ]; do echo 3 > /proc/sys/vm/drop_caches\n"
      " dd if=/dev/vda of=/dev/null bs=4096 count=16 skip=100 2>/dev/null || break; i=$((i+1)); sleep 0.1; done\n"
      "dd if=/dev/vda of=/dev/null bs=4096 count=16 skip=100 2>/dev/null || echo GOT_IO_ERROR\n";
  std::string engine = std::string(GetParam()) == "sync" ? ",engine=sync" : "";
  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                     env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(script), "--serial-out",
                     console.string(), "--drive", "id=scratch,path=" + disk.string() + engine},
                    180 * time_scale());
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(150 * time_scale());
  bool truncated = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(console).find("WAITING_FOR_TRUNCATE") != std::string::npos) {
      fs::resize_file(disk, 4096);
      truncated = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  vm.join();
  std::string out = read_text(console);
  EXPECT_TRUE(truncated) << out << describe(r);
  EXPECT_EQ(r.exit_code, 0) << out << describe(r);
  EXPECT_NE(out.find("BEFORE_OK"), std::string::npos) << out;
  EXPECT_NE(out.find("GOT_IO_ERROR"), std::string::npos) << out;
  EXPECT_NE(out.find("EMBER_TEST_EXIT=0"), std::string::npos) << out;
  EXPECT_NE(r.err.find("backing file truncated?"), std::string::npos) << describe(r);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Blk, TruncatedDrive, ::testing::Values("io_uring", "sync"),
                         [](const auto& info) { return std::string(info.param); });

// 32 O_DIRECT requests in flight at once (the guest's blk-bench, which perf/io measures with),
// on both engines: every worker's reads and writes complete, and each 4 KiB block of the host
// file is then wholly as it was or wholly the guest's pattern, never a mix or misplaced data.
class ManyInFlight : public ::testing::TestWithParam<const char*> {};

TEST_P(ManyInFlight, ThirtyTwoRandomWritersAndReadersCompleteIntact) {
  fs::path dir = scratch_dir("blk-many-in-flight");
  constexpr size_t kBytes = 8 << 20;
  fs::path disk = filled_file(dir / "disk.img", kBytes);
  const char* script =
      "blk-bench /dev/vda randwrite 2 32 && blk-bench /dev/vda randread 2 32 && "
      "blk-bench /dev/vda seqread 1 1 && echo BENCH_DONE\n";
  std::string drive = "id=scratch,path=" + disk.string() + (std::string(GetParam()) == "sync" ? ",engine=sync" : "");
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                 env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(script),
                                 "--drive", drive},
                                180 * time_scale());
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_NE(r.out.find("BENCH_DONE"), std::string::npos) << describe(r);
  for (const char* test : {"randwrite depth=32", "randread depth=32", "seqread depth=1"}) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex(std::string("BLKBENCH test=") + test + " ops=([0-9]+)")))
        << test << "\n" << describe(r);
    EXPECT_GT(std::stol(m[1]), 0) << test;
  }
  std::string data = read_text(disk);
  ASSERT_EQ(data.size(), kBytes);
  size_t written = 0;
  for (size_t at = 0; at < kBytes; at += 4096) {
    std::string_view block(data.data() + at, 4096);
    bool old = block.find_first_not_of('e') == std::string_view::npos;
    bool guest = block.find_first_not_of('\x5a') == std::string_view::npos;
    ASSERT_TRUE(old || guest) << "block at " << at << " is neither the file's old data nor the guest's pattern";
    written += guest;
  }
  EXPECT_GT(written, 0u) << "no block holds the guest's writes";
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Blk, ManyInFlight, ::testing::Values("io_uring", "sync"),
                         [](const auto& p) { return std::string(p.param); });

// Someone stops a VM whose guest is stuck (here: asleep) with SIGTERM: ember says where
// each vCPU was and, for each virtio device, its status and both sides' queue indexes,
// which is what a stalled device needs diagnosing with.
TEST(StoppedBySignal, ReportsVcpusAndVirtioQueues) {
  fs::path dir = scratch_dir("stopped-by-signal");
  fs::path disk = dir / "disk.img";
  sh("head -c 1048576 /dev/zero > '" + disk.string() + "'");
  const char* script = "dd if=/dev/vda of=/dev/null bs=4096 count=16 2>/dev/null && echo GUEST_READ_THE_DISK\nsleep 1000\n";
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                 env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(script),
                                 "--drive", "id=scratch,path=" + disk.string()},
                                60 * time_scale(), nullptr, "GUEST_READ_THE_DISK");
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_NE(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("stopped by signal SIGTERM"), std::string::npos) << describe(r);
  // Each vCPU's interrupt state and local APIC timer, and the console's interrupt routing:
  // what a hang report is for, a timer or interrupt that never comes. (The guest may still
  // be handling its console's interrupt when the signal comes.)
  EXPECT_TRUE(std::regex_search(r.err, std::regex("guest state when stopped:\n  vCPU 0: rip 0x[0-9a-f]+, interrupts o(n|ff), "
                                                  "[a-zA-Z ]+, APIC pending (none|0x[0-9a-f]+) in service (none|0x[0-9a-f]+), "
                                                  "timer TSC-deadline vector 0x[0-9a-f]+ (due in [0-9]+ TSC ticks|due [0-9]+ "
                                                  "TSC ticks ago|disarmed)\n")))
      << describe(r);
  EXPECT_TRUE(std::regex_search(r.err, std::regex("\n  COM1: IER 0x[0-9a-f]+, [^\n]*, IOAPIC pin 4: vector 0x[0-9a-f]+ "
                                                  "unmasked edge")))
      << describe(r);
  // The guest's driver had read 16 blocks: the device took and returned as many chains as
  // the driver made available, and asks for a notification at the next one.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.err, m,
      std::regex("virtio devices when stopped:\n  [^\n]*: status 0xf, [^\n]*; queue 0: size [0-9]+, avail.idx ([0-9]+) "
                 "\\(device took ([0-9]+)\\), used.idx ([0-9]+) \\(device pushed ([0-9]+),[^\n]*avail_event ([0-9]+)")))
      << describe(r);
  EXPECT_GT(std::stoi(m[1]), 0) << m[0];
  EXPECT_EQ(m[1], m[2]) << m[0];
  EXPECT_EQ(m[3], m[4]) << m[0];
  EXPECT_EQ(m[2], m[3]) << m[0];
  EXPECT_EQ(m[5], m[2]) << m[0];
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
