// End-to-end rate limiters: a guest reading a drive limited to 1 MiB/s takes at least the
// time the limit implies (an unlimited twin of the drive shows the guest can read faster),
// the throttling shows in the drive's metrics, and a PATCH /drives on the running VM lifts
// a limit the guest is waiting on. Run through tests/e2e/run-e2e.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <regex>
#include <thread>

#include "tests/e2e/e2e_util.h"

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

TEST(RateLimit, LimitedDriveReadsNoFasterThanItsLimitAndPatchLiftsALimit) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("rate-limit");
  fs::path disk = dir / "disk.img";
  sh("head -c 4194304 /dev/urandom > '" + disk.string() + "'");
  fs::path console = dir / "console.log", metrics = dir / "metrics.json", sock = dir / "api.sock";
  // 1 MiB/s, starting with 256 KiB: 4 MiB take at least 3.75 s. "patched" would take a
  // minute at 64 KiB/s. The same file three times, read-only.
  std::ofstream(dir / "vm.toml")
      << "[boot-source]\nkernel_image_path = \"" << env("EMBER_GUEST_DIR") << "/bzImage\"\ninitrd_path = \""
      << env("EMBER_GUEST_DIR") << "/initramfs.cpio.gz\"\nboot_args = \"" << cmdline(kScript) << "\"\n"
      << "[serial]\noutput = \"file\"\npath = \"console.log\"\n"
      << "[[drive]]\nid = \"limited\"\npath = \"disk.img\"\nread_only = true\n"
      << "rate_limiter = { bandwidth = { size = 262144, refill_time = 250 } }\n"
      << "[[drive]]\nid = \"free\"\npath = \"disk.img\"\nread_only = true\n"
      << "[[drive]]\nid = \"patched\"\npath = \"disk.img\"\nread_only = true\n"
      << "[drive.rate_limiter.bandwidth]\nsize = 65536\nrefill_time = 1000\n";
  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--config", (dir / "vm.toml").string(), "--api-sock", sock.string(),
                     "--metrics-path", metrics.string()},
                    240 * time_scale());
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(200 * time_scale());
  std::string patch_answer;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(console).find("RL_PATCH_NOW") != std::string::npos) {
      patch_answer = sh("curl -sS --unix-socket '" + sock.string() + "' -X PATCH http://localhost/drives/patched "
                        "-w ' HTTP%{http_code}' -d '{\"drive_id\": \"patched\", \"rate_limiter\": "
                        "{\"bandwidth\": {\"size\": 0, \"refill_time\": 0}}}'");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  vm.join();
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
  std::printf("guest read times (s): limited %.2f, free %.2f, patched %.2f\n", t["limited"], t["free"], t["patched"]);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
