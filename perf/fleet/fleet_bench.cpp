// Fleet suite driver: how fast ember starts many microVMs at once, and what each costs. For
// each fleet size N (default 1, 10, 50), in every round, interleaved:
//  - ember cold boot: N `ember --kernel ...` spawned at once;
//  - ember restore: N `ember --api-sock` spawned at once, each sent PUT /snapshot/load (File
//    backend, the memory file shared by all, a vsock socket each) as soon as its socket listens;
//  - QEMU cold boot: N QEMU microvm spawned at once (the same guest, a vhost-vsock CID each).
// Every VM runs the project's guest with `vsock-io listen 5000 echo` (the stand-in for a FaaS
// agent); a VM is ready when a host process got its first echo, and its time is counted from
// the moment the first of the N was spawned. No VM pre-faults its memory (ember --prefault off,
// as the FaaS runtime starts it; QEMU does not by default). Per (variant, N): every VM's time to
// ready (p50, p99, max), the time until all N were ready, VMs per second (N / that time), and
// the VMMs' resident memory while all N run. Writes results.json, results.md and latency.dat
// (for run.sh's chart; its first line names the columns) into --out.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"
#include "perf/echo_vm/ember.h"
#include "perf/echo_vm/process.h"
#include "perf/echo_vm/qemu.h"

using json = nlohmann::json;
using ember::perf::percentile;
using namespace ember::perf::echo_vm;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string ember, guest, out = ".";
  std::string qemu = "qemu-system-x86_64";  // made absolute by qemu_unavailable()
  bool no_qemu = false;
  std::vector<int> sizes = {1, 10, 50};
  int rounds = 3, mem_mib = 128, vcpus = 1;
  double timeout_s = 900;  // per fleet: the first spawn to the last echo
  int retry_ms = 25;       // between one VM's echo attempts (N of them poll at once)
};

enum class Kind { EmberBoot, EmberRestore, QemuBoot };

struct Variant {
  const char* name;
  const char* file;  // its name in file names
  Kind kind;
};

const std::vector<Variant> kVariants = {{"ember cold boot", "ember_boot", Kind::EmberBoot},
                                        {"ember restore", "ember_restore", Kind::EmberRestore},
                                        {"QEMU cold boot", "qemu_boot", Kind::QemuBoot}};

struct Snapshot {
  std::string snap, mem;
};

struct Vm {
  std::unique_ptr<Child> process;
  std::string api_sock, uds;
  unsigned cid = 0;
  double ready_ms = -1;
  long rss_kib = -1, pss_kib = -1;
  std::string error;
};

// One VM's way from spawned to its first echo (run on its own thread, all N at once).
void await_ready(const Variant& v, Vm& vm, const Options& o, const Snapshot& s, Clock::time_point start,
                 Clock::time_point deadline) {
  if (v.kind == Kind::EmberRestore) {
    // N of these wait at once: every 2 ms, not every 0.5.
    if (!wait_for_socket(vm.api_sock, *vm.process, deadline, std::chrono::milliseconds(2))) {
      vm.error = "no API socket";
      return;
    }
    HttpAnswer a = http_receive(http_send(vm.api_sock, "PUT", "/snapshot/load", load_body(s.snap, "File", s.mem, vm.uds)),
                                deadline);
    if (a.status != 204) {
      vm.error = "PUT /snapshot/load: " + (a.status ? a.text : "no answer");
      return;
    }
  }
  unsigned cid = vm.cid;
  int retry_ms = o.retry_ms;
  EchoAttempt attempt = v.kind == Kind::QemuBoot
                            ? EchoAttempt([cid, retry_ms](Clock::time_point d) {
                                return vsock_echo(cid, 5000, kEchoMessage, retry_ms, d);
                              })
                            : ember_echo(vm.uds, o.retry_ms);
  vm.ready_ms = wait_for_echo(attempt, *vm.process, start, deadline, vm.error);
}

struct Fleet {
  double all_ready_ms = -1;  // the first spawn -> the last echo; -1 if any VM failed
  double spawn_ms = 0;       // the first spawn -> the last
  std::vector<Vm> vms;
};

Fleet run_fleet(const Variant& v, int n, const Options& o, const Snapshot& s, const fs::path& dir) {
  fs::create_directories(dir);
  Fleet fleet;
  fleet.vms.resize(static_cast<size_t>(n));
  auto start = Clock::now(), deadline = later(start, o.timeout_s);
  for (int i = 0; i < n; ++i) {
    Vm& vm = fleet.vms[static_cast<size_t>(i)];
    const std::string id = std::to_string(i), log = (dir / ("vm-" + id + ".log")).string();
    vm.uds = (dir / ("v-" + id + ".sock")).string();
    vm.api_sock = (dir / ("api-" + id + ".sock")).string();
    vm.cid = 3 + static_cast<unsigned>(i);
    std::vector<std::string> argv;
    switch (v.kind) {
      case Kind::EmberBoot:
        argv = ember_boot_argv(o.ember, o.guest, o.vcpus, o.mem_mib, vm.uds, (dir / ("timings-" + id + ".json")).string());
        argv.insert(argv.end(), {"--prefault", "off"});
        break;
      case Kind::EmberRestore:
        argv = {o.ember, "--api-sock", vm.api_sock};
        break;
      case Kind::QemuBoot:
        argv = qemu_argv({o.qemu, o.guest + "/bzImage", o.guest + "/initramfs.cpio.gz", guest_cmdline(), o.vcpus,
                          o.mem_mib, vm.cid},
                         (dir / ("qmp-" + id + ".sock")).string(), "");
        break;
    }
    vm.process = std::make_unique<Child>(argv, log);
  }
  fleet.spawn_ms = ms_between(start, Clock::now());
  std::vector<std::thread> waiters;
  for (Vm& vm : fleet.vms) waiters.emplace_back([&, start, deadline] { await_ready(v, vm, o, s, start, deadline); });
  for (auto& t : waiters) t.join();
  bool all = std::all_of(fleet.vms.begin(), fleet.vms.end(), [](const Vm& vm) { return vm.error.empty(); });
  if (all) {
    for (const Vm& vm : fleet.vms) fleet.all_ready_ms = std::max(fleet.all_ready_ms, vm.ready_ms);
  }
  // Memory while all N still run.
  for (Vm& vm : fleet.vms) {
    if (!vm.error.empty()) continue;
    vm.rss_kib = ember::perf::smaps_rollup_kib(vm.process->pid(), "Rss");
    vm.pss_kib = ember::perf::smaps_rollup_kib(vm.process->pid(), "Pss");
  }
  for (Vm& vm : fleet.vms) vm.process->terminate();
  for (Vm& vm : fleet.vms) vm.process->wait(60);
  return fleet;
}

// Copies the VMMs' logs of failed fleets out of the scratch folder (which may be inside the
// emulated host) to --out.
void keep_logs(const fs::path& from, const std::string& out) {
  fs::create_directories(out + "/logs");
  for (const auto& e : fs::recursive_directory_iterator(from)) {
    if (e.path().extension() != ".log") continue;
    std::string name = e.path().parent_path().filename().string() + "-" + e.path().filename().string();
    fs::copy_file(e.path(), out + "/logs/" + name, fs::copy_options::overwrite_existing);
  }
}

std::vector<int> parse_sizes(const std::string& list) {
  std::vector<int> sizes;
  std::stringstream ss(list);
  for (std::string n; std::getline(ss, n, ',');) {
    int k = std::stoi(n);
    if (k < 1 || k > 1000) throw std::runtime_error("--sizes: each size must be between 1 and 1000 (got " + n + ")");
    sizes.push_back(k);
  }
  if (sizes.empty()) throw std::runtime_error("--sizes needs at least one size");
  return sizes;
}

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (flags.is("--ember")) o.ember = flags.value();
    else if (flags.is("--guest")) o.guest = flags.value();
    else if (flags.is("--out")) o.out = flags.value();
    else if (flags.is("--sizes")) o.sizes = parse_sizes(flags.value());
    else if (flags.is("--rounds")) o.rounds = std::stoi(flags.value());
    else if (flags.is("--mem-mib")) o.mem_mib = std::stoi(flags.value());
    else if (flags.is("--vcpus")) o.vcpus = std::stoi(flags.value());
    else if (flags.is("--timeout")) o.timeout_s = std::stod(flags.value());
    else if (flags.is("--retry-ms")) o.retry_ms = std::stoi(flags.value());
    else if (flags.is("--qemu")) o.qemu = flags.value();
    else if (flags.is("--no-qemu")) o.no_qemu = true;
    else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty()) throw std::runtime_error("--ember and --guest are required");
  if (o.rounds < 1) throw std::runtime_error("--rounds must be at least 1");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "fleet_bench",
      "fleet_bench --ember BIN --guest DIR [--sizes 1,10,50] [--rounds N] [--out DIR] [--mem-mib N] [--vcpus N]"
      " [--timeout S] [--retry-ms MS] [--qemu BIN | --no-qemu]",
      parse);
  if (!parsed) return 2;
  Options o = *parsed;
  if (!o.no_qemu && !qemu_usable(o.qemu, "fleet_bench")) return 1;
  const char* tmp = std::getenv("TMPDIR");
  const fs::path dir = fs::path(tmp ? tmp : "/tmp") / ("ember-fleet-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  Snapshot snapshot{(dir / "vm.snap").string(), (dir / "vm.mem").string()};
  const std::string source_uds = (dir / "source-v.sock").string();

  std::cerr << "fleet_bench: booting the guest once to take the snapshot\n";
  std::string error = take_snapshot(ember_boot_argv(o.ember, o.guest, o.vcpus, o.mem_mib, source_uds,
                                                    (dir / "source-timings.json").string()),
                                    (dir / "source-api.sock").string(), (dir / "source.log").string(), source_uds,
                                    snapshot.snap, snapshot.mem, o.timeout_s, o.retry_ms);
  if (!error.empty()) {
    keep_logs(dir, o.out);
    std::cerr << "fleet_bench: " << error << " (logs in " << o.out << "/logs)\n";
    fs::remove_all(dir);
    return 1;
  }

  std::vector<Variant> variants;
  std::copy_if(kVariants.begin(), kVariants.end(), std::back_inserter(variants),
               [&](const Variant& v) { return v.kind != Kind::QemuBoot || !o.no_qemu; });
  json results = {{"rounds", o.rounds}, {"sizes", o.sizes}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus},
                  {"guest", o.guest}, {"guest_script", kGuestScript}, {"retry_ms", o.retry_ms},
                  {"qemu", o.no_qemu ? "not measured (--no-qemu)" : o.qemu}, {"fleets", json::array()}};
  // Per (variant, N): every VM's ready time over all rounds, each round's all-ready time and
  // VMs per second, and each VM's RSS and PSS.
  struct Acc {
    std::vector<double> ready, all_ready, rate, rss, pss;
  };
  std::map<std::pair<std::string, int>, Acc> acc;
  int failures = 0;
  for (int round = 0; round < o.rounds; ++round) {
    for (int n : o.sizes) {
      // Each round starts with the next variant, so none always follows the same one.
      for (size_t k = 0; k < variants.size(); ++k) {
        const Variant& v = variants[(k + static_cast<size_t>(round)) % variants.size()];
        fs::path fleet_dir = dir / (std::string(v.file) + "-" + std::to_string(n) + "-" + std::to_string(round));
        Fleet f = run_fleet(v, n, o, snapshot, fleet_dir);
        json record = {{"round", round}, {"variant", v.name}, {"n", n}, {"all_ready_ms", f.all_ready_ms},
                       {"spawn_ms", f.spawn_ms}, {"vms", json::array()}};
        Acc& a = acc[{v.name, n}];
        int failed = 0;
        for (const Vm& vm : f.vms) {
          record["vms"].push_back({{"ready_ms", vm.ready_ms}, {"rss_kib", vm.rss_kib}, {"pss_kib", vm.pss_kib},
                                   {"error", vm.error}});
          if (!vm.error.empty()) {
            ++failed;
            std::cerr << "  " << v.name << " N=" << n << ": FAILED: " << vm.error << "\n";
            continue;
          }
          a.ready.push_back(vm.ready_ms);
          a.rss.push_back(static_cast<double>(vm.rss_kib));
          a.pss.push_back(static_cast<double>(vm.pss_kib));
        }
        if (failed == 0) {
          a.all_ready.push_back(f.all_ready_ms);
          a.rate.push_back(n / (f.all_ready_ms / 1000));
          fs::remove_all(fleet_dir);
        } else {
          failures += failed;
          keep_logs(fleet_dir, o.out);
        }
        results["fleets"].push_back(record);
        std::cerr << "round " << round + 1 << "/" << o.rounds << " " << v.name << " N=" << n << ": "
                  << (failed ? std::to_string(failed) + " of " + std::to_string(n) + " failed"
                             : ember::perf::strprintf("all ready after %.0f ms (spawned within %.0f ms)", f.all_ready_ms, f.spawn_ms))
                  << "\n";
      }
    }
  }

  std::ostringstream md;
  std::ofstream dat(o.out + "/latency.dat");
  dat << "N";
  for (const Variant& v : variants) dat << " \"" << v.name << " p50\" \"" << v.name << " p99\"";
  dat << "\n";
  md << "| variant | N | VMs measured | time to ready per VM, p50 ms | p99 ms | max ms | all N ready, median ms |"
        " VMs/s, median | p50 / QEMU's | all ready / QEMU's | RSS per VM, median MiB | PSS per VM, median MiB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  json summary = json::object();
  for (int n : o.sizes) {
    dat << n;
    const Acc& q = acc[{"QEMU cold boot", n}];
    double q50 = percentile(q.ready, 0.5), qall = percentile(q.all_ready, 0.5);
    for (const Variant& v : variants) {
      const Acc& a = acc[{v.name, n}];
      double p50 = percentile(a.ready, 0.5), p99 = percentile(a.ready, 0.99), all = percentile(a.all_ready, 0.5);
      std::string key = std::string(v.name) + " N=" + std::to_string(n);
      summary[key] = {{"vms", a.ready.size()}, {"p50_ms", p50}, {"p99_ms", p99}, {"max_ms", percentile(a.ready, 1)},
                      {"all_ready_median_ms", all}, {"vms_per_s_median", percentile(a.rate, 0.5)},
                      {"rss_median_kib", percentile(a.rss, 0.5)}, {"pss_median_kib", percentile(a.pss, 0.5)}};
      bool vs_qemu = !o.no_qemu && v.kind != Kind::QemuBoot && q50 > 0 && qall > 0;
      if (vs_qemu) summary[key].update({{"p50_to_qemu", p50 / q50}, {"all_ready_to_qemu", all / qall}});
      md << "| " << v.name << " | " << n << " | " << a.ready.size() << " | "
         << ember::perf::strprintf("%.0f | %.0f | %.0f | %.0f | ", p50, p99, percentile(a.ready, 1), all)
         << ember::perf::strprintf("%.2f | ", percentile(a.rate, 0.5))
         << (v.kind == Kind::QemuBoot ? "1 | 1 | " : vs_qemu ? ember::perf::strprintf("%.2f | %.2f | ", p50 / q50, all / qall) : "- | - | ")
         << ember::perf::strprintf("%.1f | %.1f |\n", percentile(a.rss, 0.5) / 1024, percentile(a.pss, 0.5) / 1024);
      dat << " " << (a.ready.empty() ? "NaN" : ember::perf::strprintf("%.1f %.1f", p50, p99));
      if (a.ready.empty()) dat << " NaN";
    }
    dat << "\n";
  }
  md << "\nTime to ready: from the first of the N VMMs spawned to the VM's first vsock echo. "
     << o.rounds << " rounds, " << o.mem_mib << " MiB, " << o.vcpus << " vCPU(s) per VM, no pre-fault.\n";
  results["summary"] = summary;
  results["snapshot_bytes"] = fs::file_size(snapshot.snap);
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  if (failures > 0) std::cerr << "fleet_bench: " << failures << " VMs failed; their VMMs' logs are in " << o.out << "/logs\n";
  fs::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
