// End-to-end: Debian's own kernel (linux-image-amd64's bzImage, unmodified) booted by ember with
// the stock guest's initramfs (tests/e2e/stock-guest-init.sh, built with Debian's modules by
// tests/e2e/emulated-host/prepare.sh into EMBER_STOCK_GUEST_DIR). Run through run-e2e.sh.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <regex>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// The stock kernel (8 MB compressed, hundreds of initcalls) takes far longer than the project's
// guest to reach its init: about 25 s in the emulated host (the project's guest: 3-5 s).
constexpr double kBootSeconds = 120;

std::vector<std::string> stock_boot_argv(const std::string& cmdline_words) {
  std::string dir = env("EMBER_STOCK_GUEST_DIR");
  return {env("EMBER_BIN"), "--kernel", dir + "/vmlinuz", "--initrd", dir + "/initrd.gz", "--cmdline", cmdline_words,
          "--mem-mib", "512"};
}

// The number of modules in the initramfs, all of which the guest must load.
size_t module_count() {
  std::string list = read_text(fs::path(env("EMBER_STOCK_GUEST_DIR")) / "modules");
  return static_cast<size_t>(std::count(list.begin(), list.end(), '\n'));
}

std::string modules_loaded() {
  std::string n = std::to_string(module_count());
  return "modules=" + n + "/" + n + " ";
}

TEST(StockKernel, BootsToItsInitWhichLoadsDebiansModules) {
  ProcessResult r = run_process(stock_boot_argv(cmdline("echo \"from-the-stock-guest $(uname -r)\"; exit 5")),
                                kBootSeconds * time_scale());
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("EMBER_GUEST_USERSPACE cpus=1 mem_mib=512"), std::string::npos) << describe(r);
  EXPECT_GT(module_count(), 5u);
  EXPECT_NE(r.out.find("EMBER_STOCK_GUEST " + modules_loaded()), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("insmod"), std::string::npos) << describe(r);
  std::string release = read_text(fs::path(env("EMBER_STOCK_GUEST_DIR")) / "kernel-release");
  release.erase(release.find_last_not_of('\n') + 1);
  EXPECT_NE(r.out.find("from-the-stock-guest " + release), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_STOCK_GUEST_ROOT=none"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=5"), std::string::npos) << describe(r);
}

// The host end of one guest-initiated vsock connection (ember forwards guest port P to PATH_P):
// accepts one connection and returns how many bytes came before the guest's EOF, or -1 when none
// came before `guest_gone`.
long long receive_one_vsock_connection(int fd, const std::atomic<bool>* guest_gone) {
  long long got = -1;
  pollfd p{fd, POLLIN, 0};
  while (!*guest_gone && ::poll(&p, 1, 100) == 0) {
  }
  if (p.revents & POLLIN) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    timeval tv{60, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[65536];
    got = 0;
    for (ssize_t n; (n = ::read(c, buf, sizeof(buf))) > 0;) got += n;
    ::close(c);
  }
  return got;
}

// Run chrooted in the guest's root: what it needs comes from there (vsock-io is not in the
// stock guest's initramfs).
constexpr const char* kRootScript =
    "cat /stock-root.txt\n"
    "echo \"GUEST_CMDLINE: $(cat /proc/cmdline)\"\n"
    "ip link set lo up; ip link set eth0 up && ip addr add 169.254.10.2/24 dev eth0 || exit 10\n"
    "ping -c 3 -W 5 169.254.10.1 >/dev/null && echo GUEST_PING_OK\n"
    "vsock-io connect 2 6000 send 65536 1 && echo GUEST_VSOCK_OK\n";

// Debian's kernel is built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: its virtio_mmio module
// finds ember's devices only in the DSDT. The guest ends with `poweroff -f` (ACPI S5).
TEST(StockKernel, FindsBlkNetAndVsockInTheDsdtRunsACommandFromItsRootAndPowersOff) {
  ASSERT_TRUE(host_tools({{"zcat", "gzip"}, {"cpio", "cpio"}, {"mke2fs", "e2fsprogs"}}));
  fs::path dir = scratch_dir("stock-kernel");
  // The project's initramfs has busybox and vsock-io, which the stock guest's has not.
  fs::path root = guest_root_image(dir, {{"stock-root.txt", "read from the stock guest's root\n"}}, "64M");
  std::string uds = (dir / "vsock.sock").string();
  int listener = unix_listen(uds + "_6000", 1);
  ASSERT_FALSE(HasFailure());
  std::atomic<bool> guest_gone{false};
  auto vsock = std::async(std::launch::async, receive_one_vsock_connection, listener, &guest_gone);

  NetNamespace ns("embertap0");
  std::vector<std::string> argv = stock_boot_argv(cmdline(kRootScript) + " ember_end=poweroff");
  argv.insert(argv.end(), {"--drive", "id=rootfs,path=" + root.string() + ",root", "--net",
                           "iface_id=eth0,tap=embertap0,mac=06:00:ac:10:00:02", "--vsock", "cid=3,uds=" + uds,
                           "--level", "info"});
  ProcessResult r = run_process(argv, kBootSeconds * time_scale());
  guest_gone = true;
  long long vsock_bytes = vsock.get();
  ::close(listener);
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("EMBER_STOCK_GUEST modules=[^\n]*"))) << describe(r);
  std::string found = m[0];
  EXPECT_NE(found.find(modules_loaded()), std::string::npos) << describe(r);
  ASSERT_NE(found.find(" blk=/dev/vda net=eth0 vsock=yes"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("EMBER_STOCK_GUEST_ROOT=/dev/vda"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("read from the stock guest's root"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("GUEST_PING_OK"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("GUEST_VSOCK_OK"), std::string::npos) << describe(r);
  EXPECT_EQ(vsock_bytes, 65536);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
  // Found through ACPI: nothing on the command line announced them.
  EXPECT_NE(r.out.find("GUEST_CMDLINE: "), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("virtio_mmio.device="), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("guest powered off (ACPI S5)"), std::string::npos) << describe(r);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
