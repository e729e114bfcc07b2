// End-to-end rate limiters: a guest reading a drive limited to 1 MiB/s takes at least the
// time the limit implies (an unlimited twin of the drive shows the guest can read faster),
// the throttling shows in the drive's metrics, and a PATCH /drives on the running VM lifts
// a limit the guest is waiting on. The same for a network interface: TCP each way through
// 1 MiB/s RX and TX limiters, then a PATCH /network-interfaces lifting the RX one.
// Run through tests/e2e/run-e2e.sh.
#include <gtest/gtest.h>

#include <poll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <regex>
#include <thread>
#include <utility>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Reads each drive whole, timed by the guest's own clock; the patched drive last, after
// telling the host to lift its limit.
constexpr const char* kScript =
    "read_drive() { for d in /sys/block/vd*; do [ \"$(cat $d/serial)\" = \"$1\" ] || continue\n"
    "  a=$(cut -d' ' -f1 /proc/uptime); cat /dev/${d##*/} > /dev/null; b=$(cut -d' ' -f1 /proc/uptime)\n"
    "  echo \"RL_READ $1 $a $b\"; done; }\n"
    "read_drive limited\n"
    "read_drive free\n"
    "echo RL_PATCH_NOW\n"
    "read_drive patched\n";

// Guest seconds each drive's read took, from the RL_READ lines.
std::map<std::string, double> read_times(const std::string& console) {
  std::map<std::string, double> out;
  std::regex re("RL_READ ([a-z]+) ([0-9.]+) ([0-9.]+)");
  for (auto it = std::sregex_iterator(console.begin(), console.end(), re); it != std::sregex_iterator(); ++it) {
    out[(*it)[1]] = std::stod((*it)[3]) - std::stod((*it)[2]);
  }
  return out;
}

uint64_t last_metric(const std::string& metrics, const std::string& group, const std::string& name) {
  std::regex re("\"" + group + "\":\\{[^}]*\"" + name + "\":([0-9]+)");
  uint64_t value = ~0ull;
  for (auto it = std::sregex_iterator(metrics.begin(), metrics.end(), re); it != std::sregex_iterator(); ++it) {
    value = std::stoull((*it)[1]);
  }
  return value;
}

// The boot source running `script` and the console into console.log, for vm.toml.
std::string boot_toml(const char* script) {
  return "[boot-source]\nkernel_image_path = \"" + env("EMBER_GUEST_DIR") + "/bzImage\"\ninitrd_path = \"" +
         env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz\"\nboot_args = \"" + cmdline(script) + "\"\n" +
         "[serial]\noutput = \"file\"\npath = \"console.log\"\n";
}

// Runs ember on dir/vm.toml with its API on dir/api.sock and metrics in dir/metrics.json;
// once the console (dir/console.log) shows `marker`, sends PATCH `path` with `body`, then
// calls `after`. Returns the VM's result, and the PATCH's answer (" HTTP204" when taken).
std::pair<ProcessResult, std::string> run_and_patch(const fs::path& dir, const std::string& marker,
                                                    const std::string& path, const std::string& body,
                                                    double timeout_s, const std::function<void()>& after = {}) {
  fs::path sock = dir / "api.sock";
  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--config", (dir / "vm.toml").string(), "--api-sock", sock.string(),
                     "--metrics-path", (dir / "metrics.json").string()},
                    timeout_s);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s - 30 * time_scale());
  std::string answer;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(dir / "console.log").find(marker) != std::string::npos) {
      answer = sh("curl -sS --unix-socket '" + sock.string() + "' -X PATCH http://localhost" + path +
                  " -w ' HTTP%{http_code}' -d '" + body + "'");
      if (after) after();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  vm.join();
  return {r, answer};
}

TEST(RateLimit, LimitedDriveReadsNoFasterThanItsLimitAndPatchLiftsALimit) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("rate-limit");
  fs::path disk = dir / "disk.img";
  sh("head -c 4194304 /dev/urandom > '" + disk.string() + "'");
  fs::path console = dir / "console.log", metrics = dir / "metrics.json";
  // 1 MiB/s, starting with 256 KiB: 4 MiB take at least 3.75 s. "patched" would take a
  // minute at 64 KiB/s. The same file three times, read-only.
  std::ofstream(dir / "vm.toml")
      << boot_toml(kScript) << "[[drive]]\nid = \"limited\"\npath = \"disk.img\"\nread_only = true\n"
      << "rate_limiter = { bandwidth = { size = 262144, refill_time = 250 } }\n"
      << "[[drive]]\nid = \"free\"\npath = \"disk.img\"\nread_only = true\n"
      << "[[drive]]\nid = \"patched\"\npath = \"disk.img\"\nread_only = true\n"
      << "[drive.rate_limiter.bandwidth]\nsize = 65536\nrefill_time = 1000\n";
  auto [r, patch_answer] = run_and_patch(dir, "RL_PATCH_NOW", "/drives/patched",
                                         "{\"drive_id\": \"patched\", \"rate_limiter\": "
                                         "{\"bandwidth\": {\"size\": 0, \"refill_time\": 0}}}",
                                         240 * time_scale());
  std::string out = read_text(console);
  EXPECT_EQ(r.exit_code, 0) << out << describe(r);
  EXPECT_EQ(patch_answer, " HTTP204") << out;
  std::map<std::string, double> t = read_times(out);
  ASSERT_EQ(t.size(), 3u) << out << describe(r);
  // Lower bounds only: the emulated host is slow, never fast. 0.8 x 4 MiB at 1 MiB/s.
  EXPECT_GE(t["limited"], 3.2) << out;
  EXPECT_LT(t["free"], t["limited"]) << out;
  EXPECT_LT(t["patched"], 30.0) << "the PATCH did not lift the 64 KiB/s limit (64 s for 4 MiB)\n" << out;
  std::string m = read_text(metrics);
  EXPECT_GT(last_metric(m, "block_limited", "rate_limiter_throttled_events"), 0u) << m;
  EXPECT_NE(last_metric(m, "block_limited", "rate_limiter_throttled_events"), ~0ull) << m;
  EXPECT_EQ(last_metric(m, "block_free", "rate_limiter_throttled_events"), 0u) << m;
  // Firecracker's names, and its "block" group summing the drives.
  EXPECT_GE(last_metric(m, "block_limited", "read_bytes"), 4194304u) << m;
  EXPECT_GE(last_metric(m, "block_free", "read_count"), 1u) << m;
  EXPECT_NE(last_metric(m, "block_free", "read_count"), ~0ull) << m;
  EXPECT_EQ(last_metric(m, "block", "read_bytes"), last_metric(m, "block_limited", "read_bytes") +
                                                       last_metric(m, "block_free", "read_bytes") +
                                                       last_metric(m, "block_patched", "read_bytes")) << m;
  EXPECT_EQ(last_metric(m, "block", "rate_limiter_throttled_events"),
            last_metric(m, "block_limited", "rate_limiter_throttled_events") +
                last_metric(m, "block_patched", "rate_limiter_throttled_events")) << m;
  std::printf("guest read times (s): limited %.2f, free %.2f, patched %.2f\n", t["limited"], t["free"], t["patched"]);
  fs::remove_all(dir);
}

// The guest, on eth0 behind 1 MiB/s limiters: downloads 4 MiB (port 5002) and uploads 4 MiB
// (5001), each timed by its clock; asks for the RX limit to be lifted, waits for a first
// download to work (5003, which listens only once the PATCH was answered) and times a last
// one (5004). The guest's nc keeps its console stdin: busybox nc ends a connection at EOF
// on stdin.
constexpr const char* kNetScript =
    "ip link set lo up; ip link set eth0 up && ip addr add 169.254.10.2/24 dev eth0 || exit 10\n"
    "ping -c 1 -W 5 169.254.10.1 >/dev/null || ping -c 1 -W 5 169.254.10.1 >/dev/null\n"
    "t() { cut -d' ' -f1 /proc/uptime; }\n"
    "a=$(t); nc 169.254.10.1 5002 > /tmp/d1; b=$(t); echo \"NRL down $a $b $(wc -c < /tmp/d1)\"\n"
    "a=$(t); head -c 4194304 /dev/zero | nc 169.254.10.1 5001; b=$(t); echo \"NRL up $a $b 4194304\"\n"
    "echo NRL_PATCH_NOW\n"
    "i=0; until nc 169.254.10.1 5003 > /tmp/d2 && [ -s /tmp/d2 ]; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.2; done\n"
    "echo \"NRL_AFTER $(wc -c < /tmp/d2)\"\n"
    "a=$(t); nc 169.254.10.1 5004 > /tmp/d3; b=$(t); echo \"NRL patched $a $b $(wc -c < /tmp/d3)\"\n";

TEST(RateLimit, LimitedInterfaceMovesNoFasterThanItsLimitBothWaysAndPatchLiftsIt) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}, {"busybox", "busybox-static"}}));
  fs::path dir = scratch_dir("net-rate-limit");
  fs::path down = dir / "down.bin", console = dir / "console.log", metrics = dir / "metrics.json";
  sh("head -c 4194304 /dev/urandom > '" + down.string() + "'");
  NetNamespace ns("rltap0");
  // Host side: a source for each download (busybox nc sends the file and closes), and a
  // sink counting the upload.
  std::string started = sh("cd '" + dir.string() + "' && (busybox nc -l -p 5002 < down.bin > /dev/null 2>&1 &) ; "
                           "(busybox nc -l -p 5004 < down.bin > /dev/null 2>&1 &) ; echo started");
  ASSERT_NE(started.find("started"), std::string::npos);
  int listener = tcp_listen(kUploadPort);
  std::atomic<uint64_t> uploaded{0};
  std::atomic<bool> vm_done{false};
  std::thread sink([&] {
    pollfd p{listener, POLLIN, 0};
    while (!vm_done && ::poll(&p, 1, 200) == 0) {
    }
    if (vm_done) return;
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    std::vector<char> buf(1 << 16);
    for (ssize_t n; c >= 0 && (n = ::read(c, buf.data(), buf.size())) > 0;) uploaded += static_cast<uint64_t>(n);
    if (c >= 0) ::close(c);
  });
  // 1 MiB/s each way, starting with 256 KiB: 4 MiB take at least 3.75 s.
  std::ofstream(dir / "vm.toml")
      << boot_toml(kNetScript) << "[machine-config]\nmem_size_mib = 256\n"
      << "[[net]]\niface_id = \"eth0\"\nhost_dev_name = \"rltap0\"\n"
      << "rx_rate_limiter = { bandwidth = { size = 262144, refill_time = 250 } }\n"
      << "tx_rate_limiter = { bandwidth = { size = 262144, refill_time = 250 } }\n";
  // Once the PATCH is answered, the guest's retried download from 5003 can start.
  auto [r, patch_answer] = run_and_patch(
      dir, "NRL_PATCH_NOW", "/network-interfaces/eth0",
      "{\"iface_id\": \"eth0\", \"rx_rate_limiter\": {\"bandwidth\": {\"size\": 0, \"refill_time\": 0}}}",
      300 * time_scale(),
      [&] { sh("cd '" + dir.string() + "' && (busybox nc -l -p 5003 < down.bin > /dev/null 2>&1 &) ; echo started"); });
  vm_done = true;
  ::shutdown(listener, SHUT_RDWR);
  sink.join();
  ::close(listener);
  sh("busybox pkill -f 'nc -l -p 500[2-4]' ; true");
  std::string out = read_text(console);
  EXPECT_EQ(r.exit_code, 0) << out << describe(r);
  EXPECT_EQ(patch_answer, " HTTP204") << out;
  std::map<std::string, double> t;
  std::regex re("NRL ([a-z]+) ([0-9.]+) ([0-9.]+) ([0-9]+)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it) {
    EXPECT_EQ((*it)[4].str(), "4194304") << (*it)[0] << "\n" << out;
    t[(*it)[1]] = std::stod((*it)[3]) - std::stod((*it)[2]);
  }
  ASSERT_EQ(t.size(), 3u) << out << describe(r);
  EXPECT_NE(out.find("NRL_AFTER 4194304"), std::string::npos) << out;
  // Lower bounds only (the emulated host is slow, never fast): 0.8 x 4 MiB at 1 MiB/s.
  EXPECT_GE(t["down"], 3.2) << out;
  EXPECT_GE(t["up"], 3.2) << out;
  EXPECT_LT(t["patched"], 3.0) << "the PATCH did not lift the RX limit\n" << out;
  EXPECT_EQ(uploaded.load(), 4194304u) << "bytes the host received";
  std::string m = read_text(metrics);
  EXPECT_GT(last_metric(m, "net_eth0", "rx_rate_limiter_throttled"), 0u) << m;
  EXPECT_NE(last_metric(m, "net_eth0", "rx_rate_limiter_throttled"), ~0ull) << m;
  EXPECT_GT(last_metric(m, "net_eth0", "tx_rate_limiter_throttled"), 0u) << m;
  // Firecracker's names and its "net" group (one interface: the same figures).
  EXPECT_GE(last_metric(m, "net_eth0", "rx_bytes_count"), 2 * 4194304u) << m;  // down, then down after the PATCH
  EXPECT_NE(last_metric(m, "net_eth0", "rx_bytes_count"), ~0ull) << m;
  EXPECT_GE(last_metric(m, "net_eth0", "tx_bytes_count"), 4194304u) << m;
  EXPECT_NE(last_metric(m, "net_eth0", "tx_bytes_count"), ~0ull) << m;
  EXPECT_EQ(last_metric(m, "net", "rx_bytes_count"), last_metric(m, "net_eth0", "rx_bytes_count")) << m;
  EXPECT_EQ(last_metric(m, "net", "tx_packets_count"), last_metric(m, "net_eth0", "tx_packets_count")) << m;
  std::printf("guest transfer times (s): down %.2f, up %.2f, down after PATCH %.2f (4 MiB; limit 1 MiB/s)\n",
              t["down"], t["up"], t["patched"]);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
