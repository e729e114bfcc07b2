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
// ready (p50, p99, max), the time until all N were ready, VMs per second (N / that time), the
// VMMs' resident memory while all N run and the host memory they take (the kernel's part too).
// `--density MAX` is the density run instead (perf/fleet/density.h): idle restored clones added
// a batch at a time and kept alive, as many as the host holds. Writes results.json, results.md
// and latency.dat (for run.sh's chart; its first line names the columns) into --out.
#include <sys/resource.h>
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
#include "perf/echo_vm/suite_options.h"
#include "perf/fleet/density.h"
#include "perf/fleet/fleet.h"

using json = nlohmann::json;
using ember::perf::percentile;
using ember::perf::strprintf;
using namespace ember::perf::echo_vm;
using namespace ember::perf::fleet;
namespace fs = std::filesystem;

namespace {

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (o.take(flags)) continue;
    if (flags.is("--sizes")) o.sizes = ember::perf::int_list(flags.value(), "--sizes", 1, 1000);
    else if (flags.is("--rounds")) o.rounds = std::stoi(flags.value());
    else if (flags.is("--density")) o.density = std::stoi(flags.value());
    else if (flags.is("--batch")) o.batch = std::stoi(flags.value());
    else if (flags.is("--density-floor-mib")) o.density_floor_mib = std::stoi(flags.value());
    else if (flags.is("--variants")) {
      o.variants.clear();
      std::stringstream ss(flags.value());
      for (std::string name; std::getline(ss, name, ',');) {
        bool known = std::any_of(kVariants.begin(), kVariants.end(), [&](const Variant& v) { return name == v.file; });
        if (!known) throw std::runtime_error("--variants: unknown variant '" + name + "' (ember_boot, ember_restore, qemu_boot)");
        o.variants.push_back(name);
      }
    }
    else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty()) throw std::runtime_error("--ember and --guest are required");
  if (o.rounds < 1) throw std::runtime_error("--rounds must be at least 1");
  if (o.density < 0 || o.batch < 1 || o.density_floor_mib < 0) {
    throw std::runtime_error("--density must be 0 (no density run) or more, --batch at least 1, --density-floor-mib 0 or more");
  }
  if (o.density > 0) o.no_qemu = true;  // the density run is ember's restores alone
  if (std::find(o.variants.begin(), o.variants.end(), "qemu_boot") == o.variants.end()) o.no_qemu = true;
  return o;
}

// Per (variant, N): every VM's ready time over all rounds, each round's all-ready time and
// VMs per second, each VM's RSS and PSS, and each round's host memory per VM (all, and the
// kernel's part).
struct Acc {
  std::vector<double> ready, all_ready, rate, rss, pss, host, kernel;
};

// The table (returned, and written to results.md), results.json with its summary and
// latency.dat, from what was measured so far: written after every fleet, so that a run the
// emulated host's death cuts short still leaves its rounds.
std::string write_report(const Options& o, const std::vector<Variant>& variants,
                         std::map<std::pair<std::string, int>, Acc>& acc, json& results) {
  std::ostringstream md;
  std::ofstream dat(o.out + "/latency.dat");
  dat << "N";
  for (const Variant& v : variants) dat << " \"" << v.name << " p50\" \"" << v.name << " p99\"";
  dat << "\n";
  md << "| variant | N | VMs measured | time to ready per VM, p50 ms | p99 ms | max ms | all N ready, median ms |"
        " VMs/s, median | p50 / QEMU's | all ready / QEMU's | RSS per VM, median MiB | PSS per VM, median MiB |"
        " host memory per VM, median MiB | of it kernel, KiB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
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
                      {"rss_median_kib", percentile(a.rss, 0.5)}, {"pss_median_kib", percentile(a.pss, 0.5)},
                      {"host_median_kib_per_vm", percentile(a.host, 0.5)},
                      {"kernel_median_kib_per_vm", percentile(a.kernel, 0.5)}};
      bool vs_qemu = !o.no_qemu && v.kind != Kind::QemuBoot && q50 > 0 && qall > 0;
      if (vs_qemu) summary[key].update({{"p50_to_qemu", p50 / q50}, {"all_ready_to_qemu", all / qall}});
      md << "| " << v.name << " | " << n << " | " << a.ready.size() << " | "
         << strprintf("%.0f | %.0f | %.0f | %.0f | ", p50, p99, percentile(a.ready, 1), all)
         << strprintf("%.2f | ", percentile(a.rate, 0.5))
         << (v.kind == Kind::QemuBoot ? "1 | 1 | " : vs_qemu ? strprintf("%.2f | %.2f | ", p50 / q50, all / qall) : "- | - | ")
         << strprintf("%.1f | %.1f | ", percentile(a.rss, 0.5) / 1024, percentile(a.pss, 0.5) / 1024)
         << strprintf("%.1f | %.0f |\n", percentile(a.host, 0.5) / 1024, percentile(a.kernel, 0.5));
      dat << " " << (a.ready.empty() ? "NaN" : strprintf("%.1f %.1f", p50, p99));
      if (a.ready.empty()) dat << " NaN";
    }
    dat << "\n";
  }
  md << "\nTime to ready: from the first of the N VMMs spawned to the VM's first vsock echo. "
     << results["rounds_done"].get<int>() << " of " << o.rounds << " rounds, " << o.mem_mib << " MiB, " << o.vcpus << " vCPU(s) per VM, no pre-fault. Host memory"
        " per VM: the drop in the host's MemAvailable from before the first spawn to all N answering, over N"
        " (page cache the VMs read counts too); its kernel part: PageTables + SUnreclaim + KernelStack.\n";
  results["summary"] = summary;
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  return md.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "fleet_bench",
      "fleet_bench --ember BIN --guest DIR [--sizes 1,10,50] [--rounds N] [--out DIR] [--mem-mib N] [--vcpus N]"
      " [--timeout S] [--retry-ms MS] [--variants ember_boot,ember_restore,qemu_boot] [--qemu BIN | --no-qemu]\n"
      "       fleet_bench --ember BIN --guest DIR --density MAX [--batch N] [--density-floor-mib MIB] [--out DIR] ...",
      parse);
  if (!parsed) return 2;
  Options o = *parsed;
  // N waiters each hold a socket while they poll: lift the soft descriptor limit to the hard one.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  if (!o.no_qemu && !qemu_usable(o.qemu, "fleet_bench")) return 1;
  const fs::path dir = ember::perf::scratch_dir("ember-fleet-bench");
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

  if (o.density > 0) {
    int rc = run_density(o, snapshot, dir);
    std::cout << std::ifstream(o.out + "/density.md").rdbuf();
    fs::remove_all(dir);
    return rc;
  }

  std::vector<Variant> variants;
  std::copy_if(kVariants.begin(), kVariants.end(), std::back_inserter(variants),
               [&](const Variant& v) {
                 return std::find(o.variants.begin(), o.variants.end(), v.file) != o.variants.end() &&
                        (v.kind != Kind::QemuBoot || !o.no_qemu);
               });
  json results = {{"rounds", o.rounds}, {"sizes", o.sizes}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus},
                  {"guest", o.guest}, {"guest_script", kGuestScript}, {"retry_ms", o.retry_ms},
                  {"qemu", o.no_qemu ? "not measured (--no-qemu)" : o.qemu}, {"fleets", json::array()},
                  {"rounds_done", 0}, {"snapshot_bytes", fs::file_size(snapshot.snap)}};
  std::map<std::pair<std::string, int>, Acc> acc;
  int failures = 0;
  for (int round = 0; round < o.rounds; ++round) {
    for (int n : o.sizes) {
      // Each round starts with the next variant, so none always follows the same one.
      for (size_t k = 0; k < variants.size(); ++k) {
        const Variant& v = variants[(k + static_cast<size_t>(round)) % variants.size()];
        fs::path fleet_dir = dir / (std::string(v.file) + "-" + std::to_string(n) + "-" + std::to_string(round));
        Fleet f = run_fleet(v, n, o, snapshot, fleet_dir);
        const double host_kib = double(f.before.available - f.ready.available) / n;
        const double kernel_kib = double(f.ready.kernel_since(f.before)) / n;
        json record = {{"round", round}, {"variant", v.name}, {"n", n}, {"all_ready_ms", f.all_ready_ms},
                       {"spawn_ms", f.spawn_ms}, {"host_kib_per_vm", host_kib}, {"kernel_kib_per_vm", kernel_kib},
                       {"page_tables_kib", {f.before.page_tables, f.ready.page_tables}},
                       {"slab_unreclaimable_kib", {f.before.slab_unreclaimable, f.ready.slab_unreclaimable}},
                       {"kernel_stack_kib", {f.before.kernel_stack, f.ready.kernel_stack}},
                       {"vms", json::array()}};
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
          a.host.push_back(host_kib);
          a.kernel.push_back(kernel_kib);
          fs::remove_all(fleet_dir);
        } else {
          failures += failed;
          keep_logs(fleet_dir, o.out);
        }
        results["fleets"].push_back(record);
        results["rounds_done"] = n == o.sizes.back() && k + 1 == variants.size() ? round + 1 : round;
        write_report(o, variants, acc, results);
        std::cerr << "round " << round + 1 << "/" << o.rounds << " " << v.name << " N=" << n << ": "
                  << (failed ? std::to_string(failed) + " of " + std::to_string(n) + " failed"
                             : strprintf("all ready after %.0f ms (spawned within %.0f ms)", f.all_ready_ms, f.spawn_ms))
                  << "\n";
      }
    }
  }

  std::cout << write_report(o, variants, acc, results);
  if (failures > 0) std::cerr << "fleet_bench: " << failures << " VMs failed; their VMMs' logs are in " << o.out << "/logs\n";
  fs::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
