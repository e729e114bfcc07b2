// End-to-end HTTP API: guests configured and started with `curl --unix-socket` only,
// as in Firecracker's getting-started guide; pause/resume, Ctrl+Alt+Del, two VMs side
// by side, pre-boot endpoints refused after start, and --config-file boots.
// Each test is one shell script (ember in the background, curl in the foreground) so
// the API is driven exactly as a user would.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Shell helpers: api METHOD PATH [curl args] prints the body then " HTTP<code>".
std::string prelude() {
  return "set -u\n"
         + api_shell_functions() +
         "wait_for() { for i in $(seq 2400); do grep -q \"$2\" \"$1\" 2>/dev/null && return 0; sleep 0.25; done; "
         "echo \"TIMEOUT waiting for $2\"; return 1; }\n";
}

// As ember's default command line: without them Linux looks for the i8042 through PNP,
// finds none, and has no keyboard to receive Ctrl+Alt+Del.
constexpr const char* kI8042Args = " i8042.noaux i8042.nomux i8042.dumbkbd";

// The JSON bodies of the getting-started guide, written to files for curl -d @file.
void write_boot_bodies(const fs::path& dir, const std::string& script) {
  std::string guest = env("EMBER_GUEST_DIR");
  std::ofstream(dir / "boot-source.json") << R"({"kernel_image_path": ")" << guest << R"(/bzImage", "initrd_path": ")"
                                          << guest << R"(/initramfs.cpio.gz", "boot_args": ")" << cmdline(script)
                                          << kI8042Args << "\"}";
  std::ofstream(dir / "machine-config.json") << R"({"vcpu_count": 1, "mem_size_mib": 128})";
}

// Starts ember on dir/api.sock (console to dir/console.txt) and configures it.
std::string start_over_api(const fs::path& dir, const std::string& name = "api") {
  std::string d = dir.string();
  std::string sock = d + "/" + name + ".sock";
  return "'" + env("EMBER_BIN") + "' --api-sock " + sock + " --id " + name + " > " + d + "/" + name +
         "-console.txt 2> " + d + "/" + name + "-stderr.txt &\n" + name + "_pid=$!\n" +
         // A watchdog, so a guest that never ends fails the test instead of the whole run.
         "(sleep " + std::to_string(static_cast<int>(40 * time_scale())) + "; kill $" + name +
         "_pid) >/dev/null 2>&1 &\n" +
         "wait_sock " + sock + "\n" +
         "api " + sock + " GET / \n" +
         "api " + sock + " PUT /boot-source -d @" + d + "/boot-source.json\n" +
         "api " + sock + " PUT /machine-config -d @" + d + "/machine-config.json\n" +
         "api " + sock + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n";
}

std::string wait_exit(const std::string& name = "api") {
  return "wait $" + name + "_pid; echo " + name + "_EXIT=$?\n";
}

ProcessResult run_script(const std::string& script, double timeout = 600) {
  return run_process({"/bin/sh", "-c", prelude() + script}, timeout * time_scale());
}

// Every test drives ember with curl.
class Api : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(host_tools({{"curl", "curl"}})); }
};

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST_F(Api, CurlConfiguresAndStartsAGuestThenEmberExitsZero) {
  fs::path dir = scratch_dir("api-curl-boot");
  write_boot_bodies(dir, "echo API_GUEST_RAN\n");
  std::string d = dir.string();
  ProcessResult r = run_script(start_over_api(dir) +
                               "api " + d + "/api.sock GET /\n"
                               "api " + d + "/api.sock PUT /boot-source -d @" + d + "/boot-source.json\n"
                               "api " + d + "/api.sock PUT /balloon -d '{\"amount_mib\": 1}'\n" +
                               wait_exit() + "test -e " + d + "/api.sock && echo SOCKET_LEFT_BEHIND\n");
  std::string console = read_text(dir / "api-console.txt");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + console + "\n--- stderr ---\n" + read_text(dir / "api-stderr.txt"));
  EXPECT_NE(r.out.find(R"("state":"Not started")"), std::string::npos);
  EXPECT_EQ(count_of(r.out, " HTTP204"), 3);  // boot-source, machine-config, InstanceStart
  EXPECT_NE(r.out.find(R"("state":"Running")"), std::string::npos);
  EXPECT_NE(r.out.find("PUT /boot-source is only allowed before InstanceStart\"} HTTP400"), std::string::npos);
  EXPECT_NE(r.out.find("(/balloon) is not supported by ember\"} HTTP400"), std::string::npos);
  EXPECT_NE(r.out.find("api_EXIT=0"), std::string::npos);
  EXPECT_EQ(r.out.find("SOCKET_LEFT_BEHIND"), std::string::npos);
  EXPECT_NE(console.find("API_GUEST_RAN"), std::string::npos);
  EXPECT_NE(console.find("EMBER_TEST_EXIT=0"), std::string::npos);
}

TEST_F(Api, FailingInstanceStartIs400AndEmberStaysConfigurable) {
  fs::path dir = scratch_dir("api-bad-start");
  write_boot_bodies(dir, "echo SECOND_TRY_RAN\n");
  std::string d = dir.string(), s = d + "/api.sock";
  ProcessResult r = run_script("'" + env("EMBER_BIN") + "' --api-sock " + s + " > " + d + "/console.txt 2>&1 &\npid=$!\n"
                               "(sleep " + std::to_string(static_cast<int>(40 * time_scale())) +
                               "; kill $pid) >/dev/null 2>&1 &\n"  // a hang fails this test, not the run
                               "wait_sock " + s + "\n"
                               "api " + s + " PUT /boot-source -d '{\"kernel_image_path\": \"/no/such/kernel\"}'\n"
                               "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n"
                               "api " + s + " PUT /boot-source -d @" + d + "/boot-source.json\n"
                               "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n"
                               "wait $pid; echo EXIT=$?\n");
  std::string console = read_text(dir / "console.txt");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + console);
  EXPECT_NE(r.out.find("cannot open kernel '/no/such/kernel'"), std::string::npos);
  EXPECT_NE(r.out.find("EXIT=0"), std::string::npos);
  EXPECT_NE(console.find("SECOND_TRY_RAN"), std::string::npos);
}

// As Firecracker: PUT /boot-source and PUT /drives open their files when they arrive, so a
// missing file or a FIFO is a 400 there (at once: curl gives up after 10 s), not at
// InstanceStart; with the files right, the same VM then boots with its drive. Also the
// payload limit (--http-api-max-payload-size), a GET with a body and the Deprecation header.
TEST_F(Api, FilesAreCheckedWhenPutNotFirstAtInstanceStart) {
  fs::path dir = scratch_dir("api-put-checks");
  write_boot_bodies(dir, "test -b /dev/vda && echo DRIVE_SEEN\n");
  std::string guest = env("EMBER_GUEST_DIR"), d = dir.string(), s = d + "/api.sock";
  auto drive = [](const std::string& id, const std::string& path) {
    return "'{\"drive_id\": \"" + id + "\", \"path_on_host\": \"" + path + "\", \"is_root_device\": false}'";
  };
  ProcessResult r = run_script(
      "mkfifo " + d + "/fifo; truncate -s 1M " + d + "/data.img\n"
      "'" + env("EMBER_BIN") + "' --api-sock " + s + " --http-api-max-payload-size 1000 > " + d +
      "/console.txt 2>&1 &\npid=$!\n"
      "(sleep " + std::to_string(static_cast<int>(40 * time_scale())) + "; kill $pid) >/dev/null 2>&1 &\n"
      "wait_sock " + s + "\n"
      "api " + s + " PUT /boot-source -m 10 -d '{\"kernel_image_path\": \"" + d + "/no-kernel\"}'\n"
      "api " + s + " PUT /boot-source -m 10 -d '{\"kernel_image_path\": \"" + d + "/fifo\"}'\n"
      "api " + s + " PUT /boot-source -m 10 -d '{\"kernel_image_path\": \"" + guest + "/bzImage\", "
      "\"initrd_path\": \"" + d + "/no-initrd\"}'\n"
      "api " + s + " PUT /drives/data -m 10 -d " + drive("data", d + "/no-disk") + "\n"
      "api " + s + " PUT /drives/data -m 10 -d " + drive("data", d + "/fifo") + "\n"
      "api " + s + " PUT /drives/my-disk -m 10 -d " + drive("my-disk", d + "/data.img") + "\n"
      "api " + s + " GET / -d '{}'\n"
      "big=$(head -c 1100 /dev/zero | tr '\\0' a)\n"
      "api " + s + " PUT /machine-config -m 10 -d \"{\\\"x\\\": \\\"$big\\\"}\"\n"
      "curl -si --unix-socket " + s + " -X PUT http://localhost/machine-config "
      "-d '{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"None\"}' | tr -d '\\r' | grep -i '^deprecation'\n"
      "api " + s + " PUT /drives/data -d " + drive("data", d + "/data.img") + "\n"
      "api " + s + " PUT /boot-source -d @" + d + "/boot-source.json\n"
      "api " + s + " PUT /machine-config -d @" + d + "/machine-config.json\n"
      "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n"
      "wait $pid; echo EXIT=$?\n");
  std::string console = read_text(dir / "console.txt");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + console);
  const std::string& out = r.out;
  EXPECT_NE(out.find("cannot open kernel '" + d + "/no-kernel': No such file or directory\"} HTTP400"), std::string::npos);
  EXPECT_NE(out.find("kernel '" + d + "/fifo' is not a regular file (it is a FIFO)\"} HTTP400"), std::string::npos);
  EXPECT_NE(out.find("cannot open initrd '" + d + "/no-initrd'"), std::string::npos);
  EXPECT_NE(out.find("cannot open drive 'data' at '" + d + "/no-disk': No such file or directory\"} HTTP400"),
            std::string::npos);
  EXPECT_NE(out.find("(it is a FIFO)\"} HTTP400"), std::string::npos);
  EXPECT_NE(out.find("API Resource IDs can only contain alphanumeric characters and underscores.\"} HTTP400"),
            std::string::npos);
  EXPECT_NE(out.find("GET request cannot have a body.\"} HTTP400"), std::string::npos);
  EXPECT_NE(out.find("is larger than the limit of 1000 allowed by server."), std::string::npos);
  EXPECT_NE(out.find("Deprecation: true"), std::string::npos);
  EXPECT_EQ(count_of(out, " HTTP204"), 4);  // the drive, boot-source, machine-config, InstanceStart
  EXPECT_EQ(out.find("curl: (28)"), std::string::npos) << "a request waited on a FIFO";
  EXPECT_NE(out.find("EXIT=0"), std::string::npos);
  EXPECT_NE(console.find("DRIVE_SEEN"), std::string::npos);
}

// The guest prints a counter; while paused, it does not advance.
TEST_F(Api, PauseStopsTheGuestAndResumeContinuesIt) {
  fs::path dir = scratch_dir("api-pause");
  write_boot_bodies(dir, "i=0; while [ $i -lt 25 ]; do echo TICK $i; i=$((i+1)); sleep 1; done\n");
  std::string d = dir.string(), s = d + "/api.sock", console = d + "/api-console.txt";
  ProcessResult r = run_script(
      start_over_api(dir) + "wait_for " + console + " 'TICK 3'\n"
      "api " + s + " PATCH /vm -d '{\"state\": \"Paused\"}'\n"
      "api " + s + " GET /\n"
      "before=$(grep -c TICK " + console + ")\n"
      "sleep " + std::to_string(static_cast<int>(3 * time_scale() / 10 + 3)) + "\n"
      "after=$(grep -c TICK " + console + ")\n"
      "echo PAUSED_TICKS $before $after\n"
      "api " + s + " PATCH /vm -d '{\"state\": \"Resumed\"}'\n"
      "api " + s + " GET /\n"
      "wait_for " + console + " \"TICK $((after + 2))\" && echo ADVANCED_AFTER_RESUME\n" + wait_exit());
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + read_text(console) + "\n--- stderr ---\n" +
               read_text(dir / "api-stderr.txt"));
  EXPECT_NE(r.out.find(R"("state":"Paused")"), std::string::npos);
  std::smatch m;
  std::string out = r.out;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("PAUSED_TICKS (\\d+) (\\d+)")));
  EXPECT_EQ(m[1], m[2]) << "the guest advanced while paused";
  EXPECT_NE(r.out.find("ADVANCED_AFTER_RESUME"), std::string::npos);
  EXPECT_NE(r.out.find("api_EXIT=0"), std::string::npos);
  EXPECT_NE(read_text(console).find("TICK 24"), std::string::npos);
}

TEST_F(Api, CtrlAltDelRebootsTheGuestAndEmberExitsZero) {
  fs::path dir = scratch_dir("api-cad");
  write_boot_bodies(dir, "echo WAITING_FOR_CAD; sleep 1000\n");
  std::string d = dir.string(), s = d + "/api.sock";
  ProcessResult r = run_script(start_over_api(dir) + "wait_for " + d + "/api-console.txt WAITING_FOR_CAD\n"
                               "api " + s + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n" + wait_exit());
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + read_text(dir / "api-console.txt"));
  EXPECT_NE(r.out.find(" HTTP204\napi_EXIT=0"), std::string::npos);
  EXPECT_EQ(read_text(dir / "api-console.txt").find("EMBER_TEST_EXIT"), std::string::npos)
      << "the script finished: the reboot did not come from Ctrl+Alt+Del";
}

TEST_F(Api, TwoEmbersSideBySideWithTheirOwnSockets) {
  fs::path dir = scratch_dir("api-two");
  write_boot_bodies(dir, "echo SIDE_BY_SIDE\n");
  ProcessResult r = run_script(start_over_api(dir, "one") + start_over_api(dir, "two") + wait_exit("one") +
                               wait_exit("two"));
  SCOPED_TRACE(describe(r));
  EXPECT_NE(r.out.find("one_EXIT=0"), std::string::npos);
  EXPECT_NE(r.out.find("two_EXIT=0"), std::string::npos);
  EXPECT_EQ(count_of(r.out, " HTTP204"), 6);
  EXPECT_NE(r.out.find(R"("id":"one")"), std::string::npos);
  EXPECT_NE(r.out.find(R"("id":"two")"), std::string::npos);
  EXPECT_NE(read_text(dir / "one-console.txt").find("EMBER_TEST_EXIT=0"), std::string::npos);
  EXPECT_NE(read_text(dir / "two-console.txt").find("EMBER_TEST_EXIT=0"), std::string::npos);
}

// --config-file boots at once; the API still answers; GET /vm/config boots again as is.
TEST_F(Api, ConfigFileBootsWithoutApiCallsAndVmConfigRoundTrips) {
  fs::path dir = scratch_dir("api-config-file");
  std::string guest = env("EMBER_GUEST_DIR"), d = dir.string(), s = d + "/api.sock";
  std::ofstream(dir / "vm.json") << R"({"boot-source": {"kernel_image_path": ")" << guest
                                 << R"(/bzImage", "initrd_path": ")" << guest << R"(/initramfs.cpio.gz", "boot_args": ")"
                                 << cmdline("echo CONFIG_FILE_READY; sleep 3\n") << " ember_boot_marker=1"
                                 << R"("}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},)"
                                 << R"( "metrics": {"metrics_path": ")" << d << R"(/metrics.json"}})";
  ProcessResult r = run_script(
      "'" + env("EMBER_BIN") + "' --config-file " + d + "/vm.json --api-sock " + s + " > " + d +
      "/console.txt 2>&1 &\npid=$!\n"
      "wait_sock " + s + "\n"
      "wait_for " + d + "/console.txt CONFIG_FILE_READY\n"
      "api " + s + " GET /\n"
      "curl -sS --unix-socket " + s + " http://localhost/vm/config > " + d + "/exported.json\n"
      "api " + s + " PUT /actions -d '{\"action_type\": \"FlushMetrics\"}'\n"
      "wait $pid; echo FIRST_EXIT=$?\n"
      "'" + env("EMBER_BIN") + "' --config-file " + d + "/exported.json --no-api > " + d + "/console2.txt 2>&1\n"
      "echo SECOND_EXIT=$?\n");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + read_text(dir / "console.txt") + "\n--- exported ---\n" +
               read_text(dir / "exported.json") + "\n--- second console ---\n" + read_text(dir / "console2.txt"));
  EXPECT_NE(r.out.find(R"("state":"Running")"), std::string::npos);
  EXPECT_NE(r.out.find("FIRST_EXIT=0"), std::string::npos);
  EXPECT_NE(r.out.find("SECOND_EXIT=0"), std::string::npos);
  EXPECT_NE(read_text(dir / "console2.txt").find("CONFIG_FILE_READY"), std::string::npos);
  // Metrics: the FlushMetrics line and the one at exit, with boot timings and API counters.
  std::string metrics = read_text(dir / "metrics.json");
  EXPECT_GE(count_of(metrics, "utc_timestamp_ms"), 2) << metrics;
  EXPECT_NE(metrics.find("\"boot_complete_wall_us\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"get_vm_config_200\""), std::string::npos) << metrics;
}

// Firecracker's PUT /serial: the console goes to a file, and a rate limiter bounds what a guest
// writing without end can put there (what the FaaS runtime relies on for its VMs' logs).
TEST_F(Api, SerialRateLimiterBoundsTheConsoleFile) {
  fs::path dir = scratch_dir("api-serial");
  // 64 KiB of console output, then the guest ends normally.
  write_boot_bodies(dir, "echo SERIAL_GUEST_STARTED; head -c 65536 /dev/zero | tr '\\0' x; echo\n");
  std::string d = dir.string(), s = d + "/api.sock";
  ProcessResult r = run_script(
      "'" + env("EMBER_BIN") + "' --api-sock " + s + " > " + d + "/stdout.txt 2>&1 &\npid=$!\n"
      "(sleep " + std::to_string(static_cast<int>(40 * time_scale())) + "; kill $pid) >/dev/null 2>&1 &\n"
      "wait_sock " + s + "\n"
      "api " + s + " PUT /serial -d '{\"serial_out_path\": \"" + d + "/serial.txt\", "
      "\"rate_limiter\": {\"size\": 2048, \"refill_time\": 3600000}}'\n"
      "api " + s + " PUT /metrics -d '{\"metrics_path\": \"" + d + "/metrics.json\"}'\n"
      "api " + s + " PUT /boot-source -d @" + d + "/boot-source.json\n"
      "api " + s + " PUT /machine-config -d @" + d + "/machine-config.json\n"
      "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n"
      "api " + s + " PUT /serial -d '{\"serial_out_path\": \"" + d + "/other.txt\"}'\n"
      "wait $pid; echo EMBER_EXIT=$?\n");
  std::string serial = read_text(dir / "serial.txt"), metrics = read_text(dir / "metrics.json");
  SCOPED_TRACE(describe(r) + "\n--- stdout ---\n" + read_text(dir / "stdout.txt") + "\n--- metrics ---\n" + metrics);
  EXPECT_EQ(count_of(r.out, " HTTP204"), 5);
  EXPECT_NE(r.out.find("PUT /serial is only allowed before InstanceStart\"} HTTP400"), std::string::npos);
  EXPECT_NE(r.out.find("EMBER_EXIT=0"), std::string::npos) << "the guest ran to its end";
  // The bucket's 2048 bytes, plus what an hour's refill adds in the test's minutes.
  EXPECT_GT(serial.size(), 100u);
  EXPECT_LE(serial.size(), 2048u + 600u) << serial.size() << " bytes of console";
  EXPECT_EQ(read_text(dir / "stdout.txt").find("SERIAL_GUEST_STARTED"), std::string::npos) << "console went to the file";
  std::smatch m;
  ASSERT_TRUE(std::regex_search(metrics, m, std::regex(R"("rate_limiter_dropped_bytes":(\d+))")));
  EXPECT_GE(std::stoull(m[1]), 65536u - 2048u - 600u);
}

}  // namespace
}  // namespace ember::e2e
