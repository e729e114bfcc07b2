// End-to-end virtio-net: a guest on a tap in the test's own network namespace
// (169.254.10.0/24) pings and is pinged, and moves data over TCP each way with
// sha256 checked at both ends, with the guest's offloads on (64 MiB) and off (16 MiB). Also a tap
// that does not exist. Run through tests/e2e/run-e2e.sh (root in the emulated host).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#include <cstring>
#include <atomic>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

std::string sha256(const fs::path& file) { return sh("sha256sum '" + file.string() + "'").substr(0, 64); }


// The host's side, on its own thread while the guest runs: waits until it can
// ping the guest, sends `download` to the guest's nc -l, then stores what the
// guest uploads into `upload`. Returns what happened, for the test log.
std::string host_side(int listener, const fs::path& download, const fs::path& upload, double deadline_s,
                      const std::atomic<bool>* guest_gone) {
  std::string log;
  auto start = std::chrono::steady_clock::now();
  auto late = [&] {
    return *guest_gone ||
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > deadline_s;
  };
  // A guest that dies mid-transfer leaves the host's socket open: time out instead.
  timeval io_timeout{120, 0};
  // run_process does not search PATH: go through the shell. Limited attempts, so a
  // guest that never answers fails the check without holding up the transfers.
  ProcessResult ping;
  for (int attempt = 0; attempt < 60 && !late(); ++attempt) {
    ping = run_process({"/bin/sh", "-c", std::string("busybox ping -c 1 -W 2 ") + kGuestIp}, 10);
    if (ping.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  log += ping.exit_code == 0 ? "HOST_PING_OK\n" : "host ping failed\n";
  // Download: the guest listens once it has pinged us; retry until it does.
  int fd = -1;
  while (!late()) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(kDownloadPort);
    ::inet_pton(AF_INET, kGuestIp, &a.sin_addr);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof(io_timeout));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) break;
    ::close(fd);
    fd = -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (fd < 0) return log + "could not connect to the guest\n";
  std::ifstream in(download, std::ios::binary);
  std::vector<char> buf(1 << 16);
  size_t sent = 0;
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    size_t n = static_cast<size_t>(in.gcount()), off = 0;
    while (off < n) {
      ssize_t w = ::send(fd, buf.data() + off, n - off, MSG_NOSIGNAL);
      if (w <= 0) return log + "send to the guest failed: " + std::strerror(errno) + "\n";
      off += static_cast<size_t>(w);
    }
    sent += n;
  }
  ::close(fd);
  log += "sent " + std::to_string(sent) + " bytes\n";
  // Upload: the guest connects when it has checked the download.
  int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) return log + "accept failed\n";
  ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof(io_timeout));
  std::ofstream out(upload, std::ios::binary);
  size_t got = 0;
  for (ssize_t n; (n = ::recv(c, buf.data(), buf.size(), 0)) > 0; got += static_cast<size_t>(n)) {
    out.write(buf.data(), n);
  }
  ::close(c);
  return log + "received " + std::to_string(got) + " bytes\n";
}

// The guest: address, features, ping, receive `bytes`, send `bytes`.
std::string guest_script(size_t bytes) {
  return "ip link set lo up; ip link set eth0 up && ip addr add 169.254.10.2/24 dev eth0 || exit 10\n"
         "for f in /sys/bus/virtio/devices/*; do echo \"VIRTIO $(cat $f/device) $(cat $f/features)\"; done\n"
         "ping -c 3 -W 5 169.254.10.1 >/dev/null && echo GUEST_PING_OK\n"
         "nc -l -p 5002 > /tmp/down.bin < /dev/null\n"
         "sha256sum /tmp/down.bin\n"
         "head -c " + std::to_string(bytes) + " /dev/urandom > /tmp/up.bin && sha256sum /tmp/up.bin\n"
         "nc 169.254.10.1 5001 < /tmp/up.bin\n";
}

enum class Offloads { On, Off };

class NetTransfer : public ::testing::TestWithParam<Offloads> {};

// 64 MiB each way with offloads. Without them every 1500-byte frame is a guest exit and
// 64 MiB took over 6 minutes in the emulated host (16 MiB: about 25 s), so 16 MiB there.
size_t transfer_bytes(Offloads offloads) { return offloads == Offloads::On ? 64u << 20 : 16u << 20; }

TEST_P(NetTransfer, PingBothWaysAndTcpEachWayWithChecksums) {
  bool on = GetParam() == Offloads::On;
  const size_t bytes = transfer_bytes(GetParam());
  fs::path dir = scratch_dir(on ? "net-offloads-on" : "net-offloads-off");
  fs::path download = dir / "down.bin", upload = dir / "up.bin";
  sh("head -c " + std::to_string(bytes) + " /dev/urandom > '" + download.string() + "'");
  std::string download_sum = sha256(download);

  NetNamespace ns("embertap0");
  int listener = tcp_listen(kUploadPort);
  std::string args = cmdline(guest_script(bytes));
  if (!on) args += " virtio_net.csum=0 virtio_net.gso=0";
  double timeout = 150 * time_scale();
  std::atomic<bool> guest_gone{false};
  auto host = std::async(std::launch::async, host_side, listener, download, upload, timeout, &guest_gone);
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                                 env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", args, "--mem-mib",
                                 "512", "--log-level", "info", "--net",
                                 "iface_id=eth0,tap=embertap0,mac=06:00:ac:10:00:02"},
                                timeout);
  guest_gone = true;
  ::shutdown(listener, SHUT_RDWR);  // unblocks accept() if the guest never connected
  std::string host_log = host.get();
  ::close(listener);
  ASSERT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("EMBER_TEST_EXIT=0"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("GUEST_PING_OK"), std::string::npos) << describe(r);
  EXPECT_NE(host_log.find("HOST_PING_OK"), std::string::npos) << host_log;
  std::smatch m;
  // Linux negotiates every offered feature whatever virtio_net.csum/gso say (they
  // only switch the guest's own TX offloads off): the tap gets CSUM|TSO4|TSO6|ECN.
  EXPECT_NE(r.err.find("tap offloads 0xf"), std::string::npos) << describe(r);
  // What the parameters change: whether the guest hands ember TSO frames.
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("tx [0-9]+ packets \\(([0-9]+) TSO\\)"))) << describe(r);
  if (on) EXPECT_GT(std::stoull(m[1].str()), 0u) << describe(r);
  else EXPECT_EQ(m[1].str(), "0") << describe(r);
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("([0-9a-f]{64})  /tmp/down.bin"))) << describe(r) << host_log;
  EXPECT_EQ(m[1].str(), download_sum);
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("([0-9a-f]{64})  /tmp/up.bin"))) << describe(r) << host_log;
  ASSERT_TRUE(fs::exists(upload)) << host_log;
  EXPECT_EQ(fs::file_size(upload), bytes) << host_log;
  EXPECT_EQ(sha256(upload), m[1].str());
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Net, NetTransfer, ::testing::Values(Offloads::On, Offloads::Off),
                         [](const auto& param) { return param.param == Offloads::On ? "OffloadsOn" : "OffloadsOff"; });

TEST(NetConfigErrors, MissingTapIsNamedAndFailsFast) {
  NetNamespace ns("");
  ProcessResult r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--cmdline",
                                 cmdline(), "--net", "iface_id=eth0,tap=nosuchtap9"},
                                60 * time_scale());
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << describe(r);
  EXPECT_NE(r.err.find("nosuchtap9"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << describe(r);
  EXPECT_LT(r.seconds, 30 * time_scale()) << describe(r);
}

}  // namespace
}  // namespace ember::e2e
