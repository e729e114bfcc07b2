// End-to-end lifecycle under load, for the sanitized build above all (tests/run-all.sh
// runs this suite against it too): a guest that reboots while blk, net and vsock
// requests are in flight, again and again, must end ember cleanly every time (the
// teardown order: README "How a VM stops"); and a guest streaming 1 GiB over vsock to a
// host reader slower than it leaves ember's memory flat (README "Bounds").
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Accepts connections on a listening socket (which it owns) and reads them, counting
// bytes; a new connection replaces the one before (a rebooted guest never closes its
// TCP connections). With `delay_per_64k`, reads slower than a guest can send.
class Sink {
 public:
  Sink(int listener, std::chrono::microseconds delay_per_64k = {}) : listener_(listener), delay_(delay_per_64k) {
    thread_ = std::thread([this] { run(); });
  }
  ~Sink() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  void run() {
    std::vector<char> buf(64 * 1024);
    int c = -1;
    while (!stop_) {
      pollfd p[2] = {{listener_, POLLIN, 0}, {c, POLLIN, 0}};
      if (::poll(p, c >= 0 ? 2 : 1, 100) <= 0) continue;
      if (p[0].revents & POLLIN) {
        int next = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (next >= 0) {
          if (c >= 0) ::close(c);
          c = next;
        }
        continue;
      }
      ssize_t n = ::recv(c, buf.data(), buf.size(), 0);
      if (n <= 0) {
        ::close(c);
        c = -1;
        continue;
      }
      bytes_ += static_cast<uint64_t>(n);
      if (delay_.count()) std::this_thread::sleep_for(delay_);
    }
    if (c >= 0) ::close(c);
  }

  int listener_;
  std::chrono::microseconds delay_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

// The pid of the process whose command line contains `needle` (ember, found by its
// unique socket path), or -1.
int find_pid(const std::string& needle) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_text(entry.path() / "cmdline");
    if (cmdline.find(needle) != std::string::npos && cmdline.find("/bin/sh") == std::string::npos) {
      return std::stoi(name);
    }
  }
  return -1;
}

uint64_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

// Every device busy, then a reboot in the middle of it: a write and a read on the drive,
// a TCP upload on the tap, a vsock upload; three times.
TEST(Lifecycle, GuestRebootsWithBlkNetAndVsockTrafficInFlight) {
  fs::path dir = scratch_dir("reboot-under-load");
  fs::path disk = dir / "disk.img";
  { std::ofstream(disk) << ""; }
  fs::resize_file(disk, 64 << 20);
  std::string uds = (dir / "v.sock").string();
  NetNamespace ns("embertap1");
  Sink tcp(tcp_listen(kUploadPort));
  Sink vsock(unix_listen(uds + "_6000"));
  const std::string script =
      "ip link set lo up; ip link set eth0 up && ip addr add " + std::string(kGuestIp) + "/24 dev eth0\n"
      "(tr '\\000' 'b' < /dev/zero | dd of=/dev/vda bs=64k count=1000 2>/dev/null) &\n"
      "(dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null) &\n"
      "(cat /dev/zero | nc " + std::string(kHostIp) + " 5001) &\n"
      "(vsock-io connect 2 6000 send 1073741824 1 >/dev/null 2>&1) &\n"
      "sleep 3; echo TRAFFIC_RUNNING; reboot -f\n";
  for (int round = 1; round <= 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    uint64_t tcp_before = tcp.bytes(), vsock_before = vsock.bytes();
    ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                   env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(script),
                                   "--mem-mib", "256", "--drive", "id=scratch,path=" + disk.string(), "--net",
                                   "iface_id=eth0,tap=embertap1,mac=06:00:ac:10:00:02", "--vsock",
                                   "cid=3,uds=" + uds},
                                  180 * time_scale());
    ASSERT_FALSE(r.timed_out) << describe(r);
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.out.find("TRAFFIC_RUNNING"), std::string::npos) << describe(r);
    EXPECT_EQ(r.out.find("EMBER_TEST_EXIT"), std::string::npos) << "the script ended before the reboot\n"
                                                                  << describe(r);
    // The traffic was real: both hosts sides received data in this round.
    EXPECT_GT(tcp.bytes(), tcp_before) << describe(r);
    EXPECT_GT(vsock.bytes(), vsock_before) << describe(r);
    EXPECT_FALSE(fs::exists(uds)) << "ember left its socket behind";
  }
  std::string written = sh("head -c 1048576 '" + disk.string() + "' | tr -d '\\000' | head -c 16");
  EXPECT_EQ(written, std::string(16, 'b')) << "the guest's writes never reached the drive";
  fs::remove_all(dir);
}

// 1 GiB from the guest to a host reader slower than the guest's sending: ember holds at
// most buf_alloc per connection (256 KiB), so its memory stays flat while the data moves.
TEST(Lifecycle, VsockStreamToASlowHostReaderKeepsEmberMemoryFlat) {
  fs::path dir = scratch_dir("vsock-slow-reader");
  std::string uds = (dir / "slow.sock").string();
  // 64 KiB per 3 ms: at most about 21 MiB/s, below what the guest sends.
  Sink slow(unix_listen(uds + "_6000"), std::chrono::microseconds(3000));
  const uint64_t total = 1ull << 30;
  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                     env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline",
                     cmdline("vsock-io connect 2 6000 send " + std::to_string(total) + " 5 && echo SENT_ALL\n"),
                     "--mem-mib", "256", "--prefault", "sync", "--vsock", "cid=3,uds=" + uds},
                    1800 * time_scale());
  });
  // RSS once the stream is under way (guest RAM is resident from the start: --prefault sync),
  // and again near its end.
  int pid = -1;
  bool sanitized = false;
  uint64_t early = 0, late = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(1700 * time_scale());
  while (std::chrono::steady_clock::now() < deadline && slow.bytes() < total) {
    if (pid < 0 && (pid = find_pid(uds)) > 0) {
      sanitized = read_text("/proc/" + std::to_string(pid) + "/maps").find("libasan") != std::string::npos;
    }
    if (pid > 0 && !early && slow.bytes() > total / 8) early = rss_kib(pid);
    if (pid > 0 && !late && slow.bytes() > total / 8 * 7) late = rss_kib(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  vm.join();
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("SENT_ALL"), std::string::npos) << describe(r);
  EXPECT_EQ(slow.bytes(), total);
  ASSERT_GT(early, 0u) << "ember's RSS was never read (pid " << pid << ")";
  ASSERT_GT(late, 0u);
  // Flat: what one connection may hold, plus slack for allocator noise; the sanitized
  // build also keeps freed memory in its quarantine (64 MiB, tests/e2e/sanitizer_reports.cpp).
  // Holding what the guest sent would be 800 MiB between the two readings.
  uint64_t slack_kib = sanitized ? 96 * 1024 : 4 * 1024;
  EXPECT_LT(late, early + slack_kib) << "RSS " << early << " KiB at 1/8 of the stream, " << late << " KiB at 7/8"
                                     << (sanitized ? " (sanitized build)" : "");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
