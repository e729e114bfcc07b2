// ember's own part of a snapshot restore: the CPU (all of ember's threads) from the moment the
// restore is requested to the first KVM_RUN, measured on the /dev/kvm of the machine it runs on.
// snapshot_bench times a restore to the guest's first answer, which needs a /dev/kvm that boots
// guests (else the emulated host, where ember's CPU is tens of times a native figure); this
// needs none: ember's restore does the same work whatever the guest was doing, so the source
// VM is paused after --source-ms whether or not its guest got anywhere (on kvm_pvm a stock
// guest is stuck early in its boot; the report says whether it had answered).
//   1. boot the project's guest with --api-sock, pause it after --source-ms (or its first
//      vsock echo, whichever is first), PUT /snapshot/create (Full, File);
//   2. --runs times, interleaved: an `ember --api-sock` given --settle-ms to make its KVM VM
//      ahead, then sent PUT /snapshot/load (File, resume_vm); and the launcher,
//      `ember --restore SNAP --mem-file MEM`; each SIGTERMed once running, its --boot-timings
//      read: restore_requested -> first_kvm_run, CPU and wall, and where the CPU went.
// Writes results.json and results.md into --out.
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"
#include "perf/echo_vm/ember.h"
#include "perf/echo_vm/process.h"
#include "perf/echo_vm/suite_options.h"

using json = nlohmann::json;
using ember::perf::percentile;
using ember::perf::strprintf;
using namespace ember::perf::echo_vm;
namespace fs = std::filesystem;

namespace {

struct Options : SuiteOptions {
  int runs = 30;
  int settle_ms = 200;   // an API ember's wait before the PUT: its KVM VM is made ahead meanwhile
  int source_ms = 3000;  // the source VM runs at most this long (less once its guest echoes)
  int running_ms = 100;  // after the restore is answered (API) or its socket listens (launcher)
};

// The phases a restore goes through, in order (see vmm/boot_timeline.h).
const std::vector<const char*> kSteps = {"restore_requested", "instance_start", "memory_ready", "vcpus_ready",
                                         "first_kvm_run"};

struct Sample {
  json phases;
  std::string error;
};

// Which KVM module serves /dev/kvm: what kind of host the figures come from.
std::string kvm_module() {
  for (const char* m : {"kvm_intel", "kvm_amd", "kvm_pvm"}) {
    if (fs::exists(std::string("/sys/module/") + m)) return m;
  }
  return "unknown";
}

// Boots the guest, lets it run, pauses it and writes the snapshot. "" or why it failed;
// `echoed` says whether the guest answered before the pause.
std::string take_snapshot(const Options& o, const fs::path& d, bool& echoed) {
  std::string api = (d / "source-api.sock").string(), uds = (d / "v.sock").string();
  std::vector<std::string> argv =
      ember_boot_argv(o.ember, o.guest, o.vcpus, o.mem_mib, uds, (d / "source-timings.json").string());
  argv.insert(argv.end(), {"--api-sock", api});
  auto start = Clock::now();
  Child vm(argv, (d / "source.log").string());
  if (!wait_for_socket(api, vm, later(start, o.timeout_s))) return "the source VM's API socket did not listen";
  std::string error;
  echoed = wait_for_echo(ember_echo(uds, o.retry_ms), vm, start, later(start, o.source_ms / 1000.0), error) >= 0;
  if (vm.exited()) return "the source VM ended before it was paused (see source.log)";
  error = pause_and_save(api, (d / "vm.snap").string(), (d / "vm.mem").string(), o.timeout_s, o.timeout_s);
  if (error.empty()) vm.stop();
  return error;
}

Sample restore(bool over_api, const Options& o, const fs::path& d) {
  Sample s;
  const std::string timings = (d / "timings.json").string(), api = (d / "api.sock").string();
  const std::string snap = (d / "vm.snap").string(), mem = (d / "vm.mem").string(), uds = (d / "v.sock").string();
  fs::remove(timings);
  std::vector<std::string> argv = {o.ember, "--api-sock", api, "--boot-timings", timings};
  if (!over_api) argv.insert(argv.end(), {"--restore", snap, "--mem-file", mem});
  auto start = Clock::now();
  Child vm(argv, (d / (over_api ? "api-restore.log" : "launcher-restore.log")).string());
  // The launcher's socket listens once the restore is done (api/main.cpp).
  if (!wait_for_socket(api, vm, later(start, o.timeout_s))) s.error = "no API socket";
  if (s.error.empty() && over_api) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.settle_ms));
    HttpAnswer a = http(api, "PUT", "/snapshot/load", load_body(snap, "File", mem, uds), o.timeout_s);
    if (a.status != 204) s.error = "PUT /snapshot/load: " + (a.status ? a.text : "no answer");
  }
  if (s.error.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(o.running_ms));
  vm.stop();  // SIGTERM: ember writes its timings
  s.phases = read_boot_timings(timings);
  for (const char* step : kSteps) {
    if (s.error.empty() && !s.phases.contains(step)) {
      s.error = std::string(step) + " missing from --boot-timings: " + s.phases.dump();
    }
  }
  return s;
}

Options parse(int argc, char** argv) {
  Options o;
  o.timeout_s = 120;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (o.take(flags)) continue;
    if (flags.is("--runs")) o.runs = ember::perf::int_in_range(flags.value(), "--runs", 1, 10000);
    else if (flags.is("--settle-ms")) o.settle_ms = ember::perf::int_in_range(flags.value(), "--settle-ms", 0, 600000);
    else if (flags.is("--source-ms")) o.source_ms = ember::perf::int_in_range(flags.value(), "--source-ms", 0, 600000);
    else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty()) throw std::runtime_error("--ember and --guest are required");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "restore_cpu_bench",
      "restore_cpu_bench --ember BIN --guest DIR [--runs N] [--out DIR] [--mem-mib N] [--vcpus N] [--settle-ms MS]"
      " [--source-ms MS] [--timeout S]",
      parse);
  if (!parsed) return 2;
  const Options o = *parsed;
  fs::path d = ember::perf::scratch_dir("ember-restore-cpu");
  utsname host{};
  uname(&host);
  const std::string module = kvm_module();
  json results = {{"runs", o.runs}, {"vcpus", o.vcpus}, {"mem_mib", o.mem_mib}, {"settle_ms", o.settle_ms},
                  {"host_kernel", host.release}, {"kvm_module", module}, {"samples", json::array()}};
  bool echoed = false;
  std::cerr << "restore_cpu_bench: booting the guest once to take the snapshot\n";
  std::string error = take_snapshot(o, d, echoed);
  if (!error.empty()) {
    keep_logs(d, o.out);
    std::cerr << "restore_cpu_bench: " << error << " (logs in " << o.out << "/logs)\n";
    fs::remove_all(d);
    return 1;
  }
  results["source_guest_echoed"] = echoed;
  std::map<std::string, std::vector<Sample>> by_variant;
  int failures = 0;
  for (int run = 0; run < o.runs; ++run) {
    for (int k = 0; k < 2; ++k) {
      bool over_api = (k + run) % 2 == 0;  // alternate which goes first
      const char* name = over_api ? "File, API" : "File, launcher";
      Sample s = restore(over_api, o, d);
      results["samples"].push_back({{"run", run}, {"variant", name}, {"phases", s.phases}, {"error", s.error}});
      if (s.error.empty()) by_variant[name].push_back(s);
      else {
        ++failures;
        std::cerr << "run " << run + 1 << " " << name << ": FAILED: " << s.error << "\n";
      }
    }
  }

  std::ostringstream md;
  md << "ember's own part of a restore on this host's /dev/kvm (" << module << ", Linux " << host.release
     << "), " << o.vcpus << " vCPU, " << o.mem_mib << " MiB, File backend; the source guest "
     << (echoed ? "had answered on vsock" : "had not answered on vsock (it did not get that far on this /dev/kvm)")
     << " when it was paused. restore_requested -> first_kvm_run, ms:\n\n"
     << "| variant | runs | CPU median | CPU p10 | CPU p90 | wall median |";
  for (size_t i = 1; i < kSteps.size(); ++i) md << " CPU to " << kSteps[i] << ", median |";
  md << "\n|---|---|---|---|---|---|";
  for (size_t i = 1; i < kSteps.size(); ++i) md << "---|";
  md << "\n";
  json summary = json::object();
  for (auto& [name, samples] : by_variant) {
    std::vector<double> cpu, wall;
    for (const Sample& s : samples) {
      cpu.push_back(phase_delta_ms(s.phases, kSteps.front(), kSteps.back(), "cpu_us"));
      wall.push_back(phase_delta_ms(s.phases, kSteps.front(), kSteps.back(), "wall_us"));
    }
    summary[name] = {{"cpu_median_ms", percentile(cpu, 0.5)}, {"cpu_p10_ms", percentile(cpu, 0.1)},
                     {"cpu_p90_ms", percentile(cpu, 0.9)}, {"wall_median_ms", percentile(wall, 0.5)}};
    md << strprintf("| %s | %zu | **%.2f** | %.2f | %.2f | %.2f |", name.c_str(), samples.size(), percentile(cpu, 0.5),
                    percentile(cpu, 0.1), percentile(cpu, 0.9), percentile(wall, 0.5));
    // Each step's CPU since the one before (memory_ready also covers taking the KVM VM).
    for (size_t i = 1; i < kSteps.size(); ++i) {
      std::vector<double> step;
      for (const Sample& s : samples) step.push_back(phase_delta_ms(s.phases, kSteps[i - 1], kSteps[i], "cpu_us"));
      summary[name]["cpu_step_median_ms"][kSteps[i]] = percentile(step, 0.5);
      md << strprintf(" %.2f |", percentile(step, 0.5));
    }
    md << "\n";
  }
  results["summary"] = summary;
  fs::create_directories(o.out);
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  if (failures > 0) {
    keep_logs(d, o.out);
    std::cerr << "restore_cpu_bench: " << failures << " failed; the logs are in " << o.out << "/logs\n";
  }
  fs::remove_all(d);
  return failures == 0 ? 0 : 1;
}
