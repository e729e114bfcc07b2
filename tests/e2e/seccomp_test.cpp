// Seccomp on a running ember: every one of its threads is filtered while the guest runs
// (its devices, metrics and API included), and --no-seccomp turns that off with a warning.
// The filters' contents are unit-tested (tests/unit/seccomp_test.cpp); that the whole
// suite runs with them on shows no real workload needs more.
#include <gtest/gtest.h>

#include <map>
#include <regex>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Starts ember with a drive, vsock, metrics and 2 vCPUs, waits until the guest is in
// userspace, then prints "TASK <comm> <Seccomp mode>" for each of ember's threads.
ProcessResult threads_of_running_ember(const fs::path& dir, const std::string& extra_args) {
  std::string d = dir.string(), guest = env("EMBER_GUEST_DIR");
  std::string script =
      "set -u\n"
      "truncate -s 16M " + d + "/disk.img\n"
      "'" + env("EMBER_BIN") + "' --kernel " + guest + "/bzImage --initrd " + guest + "/initramfs.cpio.gz"
      " --cmdline '" + cmdline("echo SECCOMP_READY; sleep " + std::to_string(static_cast<int>(4 * time_scale())) + "\n") +
      "' --vcpus 2 --mem-mib 128 --drive id=scratch,path=" + d + "/disk.img --vsock cid=3,uds=" + d + "/v.sock"
      " --metrics-path " + d + "/metrics.json " + extra_args + " > " + d + "/console.txt 2> " + d + "/stderr.txt &\n"
      "pid=$!\n"
      "for i in $(seq 2400); do grep -q SECCOMP_READY " + d + "/console.txt && break; sleep 0.25; done\n"
      "for t in /proc/$pid/task/*; do echo \"TASK $(cat $t/comm) $(awk '/^Seccomp:/{print $2}' $t/status)\"; done\n"
      "wait $pid; echo EXIT=$?\n";
  return run_process({"/bin/sh", "-c", script}, 120 * time_scale());
}

std::map<std::string, std::string> modes_by_thread(const std::string& out) {
  std::map<std::string, std::string> modes;
  std::regex re("TASK ([^\\n]+) (\\d+)\n");  // vCPU threads' names hold a space: "fc_vcpu 0"
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) modes[(*it)[1]] = (*it)[2];
  return modes;
}

TEST(Seccomp, EveryThreadOfARunningEmberIsFiltered) {
  fs::path dir = scratch_dir("seccomp-threads");
  ProcessResult r = threads_of_running_ember(dir, "");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + read_text(dir / "console.txt") + "\n--- stderr ---\n" +
               read_text(dir / "stderr.txt"));
  std::map<std::string, std::string> modes = modes_by_thread(r.out);
  for (const char* name : {"ember", "ember-event", "fc_vcpu 0", "fc_vcpu 1", "ember-console", "ember-metrics"}) {
    EXPECT_TRUE(modes.count(name)) << "no thread named " << name;
  }
  for (const auto& [name, mode] : modes) EXPECT_EQ(mode, "2") << name << " runs without its seccomp filter";
  EXPECT_NE(r.out.find("EXIT=0"), std::string::npos);
}

TEST(Seccomp, NoSeccompRunsUnfilteredAndSaysSo) {
  fs::path dir = scratch_dir("seccomp-off");
  ProcessResult r = threads_of_running_ember(dir, "--no-seccomp");
  std::string err = read_text(dir / "stderr.txt");
  SCOPED_TRACE(describe(r) + "\n--- stderr ---\n" + err);
  std::map<std::string, std::string> modes = modes_by_thread(r.out);
  ASSERT_TRUE(modes.count("fc_vcpu 0"));
  for (const auto& [name, mode] : modes) EXPECT_EQ(mode, "0") << name;
  EXPECT_NE(err.find("--no-seccomp: ember's threads run without seccomp filters"), std::string::npos);
  EXPECT_NE(r.out.find("EXIT=0"), std::string::npos);
}

}  // namespace
}  // namespace ember::e2e
