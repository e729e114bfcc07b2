// Snapshot suite driver: how much sooner a restored guest answers than a booted one, and
// how little memory clones of one snapshot take. The guest runs `vsock-io listen 5000 echo`;
// "responsive" means a host process got its first echo through ember's vsock Unix socket.
// In one run, interleaved, N times each:
//  - cold boot: spawn ember with the kernel -> first echo;
//  - restore from a snapshot of that guest (taken once, after its first echo), File or Uffd
//    memory backend, by the launcher (spawn `ember --restore` -> first echo) or over the
//    API (PUT /snapshot/load sent to a waiting `ember --api-sock` -> first echo);
// with ember's own phase timeline (--boot-timings) for the CPU it spends from the start of
// the restore to the first KVM_RUN, and RSS/PSS/private memory after the echo. Then C clones
// restored at once from the same files (File backend, one vsock socket each) for density.
// In the same rounds, the same guest under QEMU microvm (vhost-vsock, echoed through AF_VSOCK):
// cold boot, and restore from a migration file written once after its first echo (spawn
// `qemu -incoming` -> first echo); --no-qemu leaves QEMU out, and says so in the table.
// Writes results.json, results.md, cdf-*.dat and medians.dat (for run.sh's charts) into --out.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
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

using json = nlohmann::json;
using ember::perf::percentile;
using namespace ember::perf::echo_vm;
namespace echo_vm = ember::perf::echo_vm;
namespace fs = std::filesystem;

namespace {

// SuiteOptions' timeout is per VM, spawn to first echo.
struct Options : SuiteOptions {
  int runs = 10;
  std::string uffd_handler;
  std::vector<int> clones = {10};
  // API restores: how long an ember waits after its socket listens before the PUT is sent. 0
  // sends it at once (start-up and restore overlap); a pool of started embers, as a FaaS
  // runtime keeps, has long finished starting (the KVM VM made ahead) when a request comes.
  int settle_ms = 0;
};

// ---- the measurements ----

struct Files {
  fs::path dir;       // scratch: sockets, logs, timings
  std::string snap, mem;
  std::string uds;    // the snapshot's vsock socket (cold boots and launcher restores use it too)
  std::string qemu_migration;  // QEMU's migration file of the same guest
};

struct Sample {
  bool ok = false;
  double ready_ms = 0;     // spawn (launcher) or PUT /snapshot/load sent (API) -> first echo
  double load_ms = -1;     // API: PUT /snapshot/load sent -> its answer
  double vmm_up_ms = -1;   // QEMU: spawn -> its QMP socket listens (before the guest runs)
  long rss_kib = -1, pss_kib = -1, private_kib = -1;  // after the echo
  int echo_attempts = 0;   // connections tried until one echoed (the guest refused the others)
  json phases;             // ember's --boot-timings
  std::string error;
};

struct Variant {
  std::string name;
  std::string backend;  // "" (cold boot), "File", "Uffd"; QEMU: "" or "incoming"
  bool api = false;
  bool qemu = false;
};

std::string load_body(const Files& f, const std::string& backend, const std::string& backend_path,
                      const std::string& uds) {
  return echo_vm::load_body(f.snap, backend, backend_path, uds);
}

std::vector<std::string> boot_argv(const Options& o, const std::string& uds, const std::string& timings) {
  return ember_boot_argv(o.ember, o.guest, o.vcpus, o.mem_mib, uds, timings);
}

void read_memory(Sample& s, pid_t pid) {
  s.rss_kib = ember::perf::smaps_rollup_kib(pid, "Rss");
  s.pss_kib = ember::perf::smaps_rollup_kib(pid, "Pss");
  s.private_kib = ember::perf::smaps_rollup_kib(pid, "Private_Clean") + ember::perf::smaps_rollup_kib(pid, "Private_Dirty");
}

QemuGuest qemu_guest(const Options& o) {
  return {o.qemu, o.guest + "/bzImage", o.guest + "/initramfs.cpio.gz", guest_cmdline(), o.vcpus, o.mem_mib, 3};
}

EchoAttempt qemu_echo(const Options& o) {
  return [retry_ms = o.retry_ms](Clock::time_point deadline) { return vsock_echo(3, 5000, kEchoMessage, retry_ms, deadline); };
}

// Spawn QEMU (booting, or loading the migration file) -> first echo; also when its QMP socket
// listened (QEMU's own start-up, before the guest runs or the file is read).
Sample measure_qemu(const Variant& v, const Options& o, const Files& f) {
  Sample s;
  const std::string qmp_sock = (f.dir / "qemu-qmp.sock").string(), log = (f.dir / (v.name + ".log")).string();
  auto start = Clock::now(), deadline = later(start, o.timeout_s);
  Child vm(qemu_argv(qemu_guest(o), qmp_sock, v.backend == "incoming" ? f.qemu_migration : ""), log);
  if (wait_for_listener(qmp_sock, vm, deadline)) s.vmm_up_ms = ms_between(start, Clock::now());
  s.ready_ms = wait_for_echo(qemu_echo(o), vm, start, deadline, s.error, &s.echo_attempts);
  if (s.error.empty()) read_memory(s, vm.pid());
  vm.stop();
  // The guest's init prints this line once, at boot: a restored guest must not print it again.
  std::ifstream in(log);
  std::string console((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (s.error.empty() && v.backend == "incoming" && console.find("EMBER_GUEST_USERSPACE") != std::string::npos) {
    s.error = "QEMU booted the guest instead of restoring it";
  }
  s.ok = s.error.empty();
  return s;
}

Sample measure(const Variant& v, const Options& o, const Files& f) {
  if (v.qemu) return measure_qemu(v, o, f);
  Sample s;
  const fs::path d = f.dir;
  const std::string timings = (d / "timings.json").string(), handler_sock = (d / "uffd.sock").string();
  const std::string api_sock = (d / "api.sock").string(), log = (d / (v.name + ".log")).string();
  fs::remove(timings);
  std::unique_ptr<Child> handler;
  std::string backend_path = f.mem;
  if (v.backend == "Uffd") {
    handler = std::make_unique<Child>(std::vector<std::string>{o.uffd_handler, handler_sock, f.mem},
                                      (d / "uffd-handler.log").string());
    if (!wait_for_listener(handler_sock, *handler, Clock::now() + std::chrono::seconds(60))) {
      s.error = "the page-fault handler did not listen";
      return s;
    }
    backend_path = handler_sock;
  }
  std::vector<std::string> argv;
  if (v.backend.empty()) argv = boot_argv(o, f.uds, timings);
  else if (v.api) argv = {o.ember, "--api-sock", api_sock, "--boot-timings", timings};
  else argv = {o.ember, "--restore", f.snap, v.backend == "File" ? "--mem-file" : "--uffd-socket", backend_path,
               "--boot-timings", timings, "--api-sock", api_sock};
  auto start = Clock::now();
  Child vm(argv, log);
  if (!v.backend.empty() && !wait_for_socket(api_sock, vm, start + std::chrono::seconds(60))) {
    s.error = "no API socket";
    return s;
  }
  if (v.api) {
    if (o.settle_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.settle_ms));
    start = Clock::now();
    HttpAnswer a = http(api_sock, "PUT", "/snapshot/load", load_body(f, v.backend, backend_path, f.uds), o.timeout_s);
    s.load_ms = ms_between(start, Clock::now());
    if (a.status != 204) s.error = "PUT /snapshot/load: " + (a.status ? a.text : "no answer");
  }
  if (s.error.empty()) {
    s.ready_ms = wait_for_echo(ember_echo(f.uds, o.retry_ms), vm, start, later(start, o.timeout_s), s.error,
                               &s.echo_attempts);
  }
  if (s.error.empty()) read_memory(s, vm.pid());
  vm.stop();  // SIGTERM: ember stops the VM and writes its timings
  if (handler) handler->wait(30);  // it ends when ember closes its connection
  s.phases = read_boot_timings(timings);
  s.ok = s.error.empty();
  return s;
}

// Boots the guest once with the API, waits for its echo, pauses it and writes the snapshot.
std::string take_snapshot(const Options& o, const Files& f) {
  return echo_vm::take_snapshot(boot_argv(o, f.uds, (f.dir / "source-timings.json").string()),
                                (f.dir / "source-api.sock").string(), (f.dir / "source.log").string(), f.uds, f.snap,
                                f.mem, o.timeout_s, o.retry_ms);
}

struct Clone {
  std::unique_ptr<Child> vm;
  std::string api_sock, uds, timings;
  Sample s;
};

// `n` embers wait on their API sockets; all are sent PUT /snapshot/load (File backend, a vsock
// socket each) at once, then each is echoed and its memory read while all still run.
json measure_density(int n, const Options& o, const Files& f) {
  fs::path d = f.dir / ("clones-" + std::to_string(n));
  fs::create_directories(d);
  std::vector<Clone> clones(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Clone& c = clones[static_cast<size_t>(i)];
    std::string id = std::to_string(i);
    c.api_sock = (d / ("api-" + id + ".sock")).string();
    c.uds = (d / ("v-" + id + ".sock")).string();
    c.timings = (d / ("timings-" + id + ".json")).string();
    c.vm = std::make_unique<Child>(std::vector<std::string>{o.ember, "--api-sock", c.api_sock, "--boot-timings", c.timings},
                                   (d / ("clone-" + id + ".log")).string());
  }
  json result = {{"clones", n}};
  for (auto& c : clones) {
    if (!wait_for_socket(c.api_sock, *c.vm, Clock::now() + std::chrono::seconds(120))) c.s.error = "no API socket";
  }
  auto start = Clock::now(), deadline = later(start, o.timeout_s * 2);
  std::vector<int> fds;
  for (auto& c : clones) fds.push_back(http_send(c.api_sock, "PUT", "/snapshot/load", load_body(f, "File", f.mem, c.uds)));
  for (size_t i = 0; i < clones.size(); ++i) {
    HttpAnswer a = http_receive(fds[i], deadline);
    clones[i].s.load_ms = ms_between(start, Clock::now());
    if (a.status != 204 && clones[i].s.error.empty()) clones[i].s.error = "PUT /snapshot/load: " + a.text;
  }
  for (auto& c : clones) {
    if (c.s.error.empty()) c.s.ready_ms = wait_for_echo(ember_echo(c.uds, o.retry_ms), *c.vm, start, deadline, c.s.error);
  }
  result["all_ready_ms"] = ms_between(start, Clock::now());
  for (auto& c : clones) {
    if (c.s.error.empty()) read_memory(c.s, c.vm->pid());
  }
  for (auto& c : clones) c.vm->terminate();
  for (auto& c : clones) {
    c.vm->wait();
    c.s.phases = read_boot_timings(c.timings);
    c.s.ok = c.s.error.empty();
    result["samples"].push_back({{"ok", c.s.ok}, {"ready_ms", c.s.ready_ms}, {"load_ms", c.s.load_ms},
                                 {"rss_kib", c.s.rss_kib}, {"pss_kib", c.s.pss_kib},
                                 {"private_kib", c.s.private_kib}, {"phases", c.s.phases}, {"error", c.s.error}});
  }
  return result;
}

// ---- the report ----

// Where ember's own part begins: a restore's request (before the snapshot file is read), else
// the boot's instance_start.
const char* start_phase(const json& phases) {
  return phases.is_object() && phases.contains("restore_requested") ? "restore_requested" : "instance_start";
}

template <typename T>
std::vector<double> field(const std::vector<Sample>& v, T Sample::* f) {
  std::vector<double> out;
  for (const Sample& s : v) {
    if (s.*f >= 0) out.push_back(static_cast<double>(s.*f));
  }
  return out;
}

// Each sample's start_phase -> first KVM_RUN.
std::vector<double> deltas(const std::vector<Sample>& v, const char* clock) {
  std::vector<double> out;
  for (const Sample& s : v) {
    double d = phase_delta_ms(s.phases, start_phase(s.phases), "first_kvm_run", clock);
    if (d >= 0) out.push_back(d);
  }
  return out;
}

// "restore File, API" -> "restore_File_API": the variant's name in its CDF file.
std::string file_name(const std::string& variant) {
  std::string name;
  for (char c : variant) {
    if (std::isalnum(static_cast<unsigned char>(c))) name += c;
    else if (!name.empty() && name.back() != '_') name += '_';
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

// The variants' table (Markdown) and their `summary` entries; writes cdf-NAME.dat (sorted
// times with their cumulative fraction) and medians.dat ("name" median colour) for run.sh's charts.
std::string variants_table(const std::vector<Variant>& variants, const Options& o,
                           std::map<std::string, std::vector<Sample>>& by_variant, json& summary) {
  std::ostringstream md;
  std::ofstream medians(o.out + "/medians.dat");
  double cold = percentile(field(by_variant["cold boot"], &Sample::ready_ms), 0.5);
  double qemu_cold = percentile(field(by_variant["QEMU cold boot"], &Sample::ready_ms), 0.5);
  md << "| variant | runs | to first echo, median ms | p90 ms | connections tried, median (max) |"
        " / ember cold boot (medians) | / QEMU cold boot |"
        " PUT answered, median ms | ember CPU, restore request (cold boot: instance_start) -> first KVM_RUN, median"
        " (p90) ms | same, wall ms |"
        " RSS after echo, MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Variant& v : variants) {
    if (v.qemu && o.no_qemu) {
      md << "| " << v.name << " | 0 | not measured (--no-qemu) | - | - | - | - | - | - | - | - |\n";
      summary[v.name] = "not measured (--no-qemu)";
      continue;
    }
    const auto& samples = by_variant[v.name];
    auto ready = field(samples, &Sample::ready_ms), load = field(samples, &Sample::load_ms),
         rss = field(samples, &Sample::rss_kib), up = field(samples, &Sample::vmm_up_ms),
         tries = field(samples, &Sample::echo_attempts);
    auto cpu = deltas(samples, "cpu_us"), wall = deltas(samples, "wall_us");
    double med = percentile(ready, 0.5), to_cold = cold > 0 ? med / cold : 0, to_qemu = qemu_cold > 0 ? med / qemu_cold : 0;
    summary[v.name] = {{"runs", samples.size()}, {"median_ms", med}, {"p90_ms", percentile(ready, 0.9)},
                       {"ratio_to_cold", to_cold}, {"median_rss_kib", percentile(rss, 0.5)}, {"ready_ms", ready},
                       {"median_echo_attempts", percentile(tries, 0.5)}, {"max_echo_attempts", percentile(tries, 1)}};
    if (v.qemu) {
      summary[v.name]["ratio_to_qemu_cold"] = to_qemu;
      summary[v.name]["median_qmp_listening_ms"] = percentile(up, 0.5);
    } else {
      summary[v.name].update({{"median_load_ms", percentile(load, 0.5)},
                              {"median_cpu_to_first_kvm_run_ms", percentile(cpu, 0.5)},
                              {"p90_cpu_to_first_kvm_run_ms", percentile(cpu, 0.9)},
                              {"median_wall_to_first_kvm_run_ms", percentile(wall, 0.5)}});
    }
    md << "| " << v.name << " | " << samples.size() << " | " << ember::perf::strprintf("%.1f | %.1f | ", med, percentile(ready, 0.9))
       << ember::perf::strprintf("%.0f (%.0f) | ", percentile(tries, 0.5), percentile(tries, 1))
       << (v.backend.empty() && !v.qemu ? "1" : ember::perf::strprintf("%.3f", to_cold)) << " | "
       << (!v.qemu ? "-" : v.backend.empty() ? "1" : ember::perf::strprintf("%.3f", to_qemu)) << " | "
       << (v.api ? ember::perf::strprintf("%.1f", percentile(load, 0.5)) : "-") << " | "
       << (v.qemu ? "- | - | " : ember::perf::strprintf("%.2f (%.2f) | %.1f | ", percentile(cpu, 0.5), percentile(cpu, 0.9), percentile(wall, 0.5)))
       << ember::perf::strprintf("%.1f |\n", percentile(rss, 0.5) / 1024);
    if (!ready.empty()) medians << "\"" << (v.qemu ? "" : "ember ") << v.name << "\" " << med << " " << (v.qemu ? 2 : 1) << "\n";
    std::sort(ready.begin(), ready.end());
    std::ofstream cdf(o.out + "/cdf-" + file_name(v.name) + ".dat");
    if (!ready.empty()) cdf << ready.front() << " 0\n";
    for (size_t i = 0; i < ready.size(); ++i) cdf << ready[i] << " " << double(i + 1) / ready.size() << "\n";
  }
  return md.str();
}

// QEMU's start-up in both variants, and its migration file.
std::string qemu_notes(const json& summary, const json& results) {
  if (!summary["QEMU cold boot"].is_object() || !summary["QEMU restore (-incoming)"].is_object()) return "";
  const json& m = results["qemu_migration"];
  const json ram = m.value("ram", json::object());
  return "\nQEMU: spawn -> its QMP socket listening (QEMU's own start-up, before the guest runs or the file is read),"
         " median ms: cold boot " + ember::perf::strprintf("%.1f", summary["QEMU cold boot"]["median_qmp_listening_ms"].get<double>()) +
         ", restore " + ember::perf::strprintf("%.1f", summary["QEMU restore (-incoming)"]["median_qmp_listening_ms"].get<double>()) +
         ". Migration file: " + ember::perf::strprintf("%.1f MiB", results["qemu_migration_file_bytes"].get<double>() / 1048576) + " (" +
         ember::perf::strprintf("%.0f pages with data, %.0f zero pages", ram.value("normal", 0.0), ram.value("duplicate", 0.0)) +
         "), written by the stopped source in " + ember::perf::strprintf("%.0f ms", m.value("total-time", 0.0)) + ".\n";
}

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (o.take(flags)) continue;
    if (flags.is("--runs")) o.runs = std::stoi(flags.value());
    else if (flags.is("--uffd-handler")) o.uffd_handler = flags.value();
    else if (flags.is("--settle-ms")) o.settle_ms = ember::perf::int_in_range(flags.value(), "--settle-ms", 0, 600000);
    else if (flags.is("--clones")) {
      o.clones.clear();
      for (int n : ember::perf::int_list(flags.value(), "--clones", 0, 1000)) {
        if (n > 0) o.clones.push_back(n);
      }
    } else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty() || o.uffd_handler.empty()) {
    throw std::runtime_error("--ember, --uffd-handler and --guest are required");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "snapshot_bench",
      "snapshot_bench --ember BIN --uffd-handler BIN --guest DIR [--runs N] [--out DIR] [--clones N[,N...]|0]"
      " [--mem-mib N] [--vcpus N] [--timeout S] [--retry-ms MS] [--settle-ms MS] [--qemu BIN | --no-qemu]",
      parse);
  if (!parsed) return 2;
  Options o = *parsed;
  if (!o.no_qemu && !qemu_usable(o.qemu, "snapshot_bench")) return 1;
  Files f;
  f.dir = ember::perf::scratch_dir("ember-snapshot-bench");
  f.snap = (f.dir / "vm.snap").string();
  f.mem = (f.dir / "vm.mem").string();
  f.uds = (f.dir / "v.sock").string();
  f.qemu_migration = (f.dir / "qemu.migration").string();

  json results = {{"runs", o.runs}, {"settle_ms", o.settle_ms}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus}, {"guest", o.guest},
                  {"guest_script", kGuestScript}, {"retry_ms", o.retry_ms}, {"samples", json::array()},
                  {"qemu", o.no_qemu ? "not measured (--no-qemu)" : o.qemu}};
  std::cerr << "snapshot_bench: booting the guest once to take the snapshot\n";
  std::string error = take_snapshot(o, f);
  if (error.empty() && !o.no_qemu) {
    std::cerr << "snapshot_bench: booting the guest once under QEMU to write its migration file\n";
    MigrationFile m = qemu_save(qemu_guest(o), qemu_echo(o), f.dir, f.qemu_migration, o.timeout_s);
    results["qemu_migration"] = m.stats;
    if (!m.error.empty()) error = "QEMU's migration file: " + m.error;
  }
  if (!error.empty()) {
    keep_logs(f.dir, o.out);
    std::cerr << "snapshot_bench: " << error << " (logs in " << o.out << "/logs)\n";
    fs::remove_all(f.dir);
    return 1;
  }
  results["snapshot_bytes"] = fs::file_size(f.snap);
  results["mem_file_bytes"] = fs::file_size(f.mem);
  if (!o.no_qemu) results["qemu_migration_file_bytes"] = fs::file_size(f.qemu_migration);

  const std::vector<Variant> all = {{"cold boot", "", false},
                                    {"restore File, launcher", "File", false},
                                    {"restore File, API", "File", true},
                                    {"restore Uffd, launcher", "Uffd", false},
                                    {"restore Uffd, API", "Uffd", true},
                                    {"QEMU cold boot", "", false, true},
                                    {"QEMU restore (-incoming)", "incoming", false, true}};
  std::vector<Variant> variants;
  std::copy_if(all.begin(), all.end(), std::back_inserter(variants), [&](const Variant& v) { return !v.qemu || !o.no_qemu; });
  std::map<std::string, std::vector<Sample>> by_variant;
  int failures = 0;
  for (int run = 0; run < o.runs; ++run) {
    // Each run starts with the next variant, so none always follows the same one.
    for (size_t k = 0; k < variants.size(); ++k) {
      const Variant& v = variants[(k + static_cast<size_t>(run)) % variants.size()];
      Sample s = measure(v, o, f);
      std::cerr << "run " << run + 1 << "/" << o.runs << " " << v.name << ": "
                << (s.ok ? ember::perf::strprintf("%.1f ms", s.ready_ms) : "FAILED: " + s.error) << "\n";
      results["samples"].push_back({{"run", run}, {"variant", v.name}, {"ok", s.ok}, {"ready_ms", s.ready_ms},
                                    {"load_ms", s.load_ms}, {"vmm_up_ms", s.vmm_up_ms}, {"echo_attempts", s.echo_attempts}, {"rss_kib", s.rss_kib},
                                    {"pss_kib", s.pss_kib}, {"private_kib", s.private_kib}, {"phases", s.phases},
                                    {"error", s.error}});
      if (s.ok) by_variant[v.name].push_back(s);
      else ++failures;
    }
  }

  std::ostringstream md;
  json summary = json::object();
  md << variants_table(all, o, by_variant, summary);
  // The launcher's whole process up to the first KVM_RUN: exec, reading the snapshot file, restore.
  md << "\nember CPU from process start to first KVM_RUN (launcher, median ms): ";
  for (const char* name : {"restore File, launcher", "restore Uffd, launcher", "cold boot"}) {
    std::vector<double> total;
    for (const Sample& s : by_variant[name]) {
      if (s.phases.contains("first_kvm_run")) total.push_back(s.phases["first_kvm_run"]["cpu_us"].get<double>() / 1000);
    }
    summary[name]["median_cpu_process_to_first_kvm_run_ms"] = percentile(total, 0.5);
    md << name << " " << ember::perf::strprintf("%.2f", percentile(total, 0.5)) << "; ";
  }
  md << "\n" << qemu_notes(summary, results);
  double cold_rss = summary["cold boot"]["median_rss_kib"].get<double>();

  for (int n : o.clones) {
    std::cerr << "snapshot_bench: " << n << " clones at once\n";
    json d = measure_density(n, o, f);
    std::vector<double> rss, pss, priv, ready, cpu;
    int ok = 0;
    for (const json& s : d["samples"]) {
      if (!s["ok"].get<bool>()) {
        std::cerr << "clone FAILED: " << s["error"].get<std::string>() << "\n";
        ++failures;
        continue;
      }
      ++ok;
      rss.push_back(s["rss_kib"].get<double>());
      pss.push_back(s["pss_kib"].get<double>());
      priv.push_back(s["private_kib"].get<double>());
      ready.push_back(s["ready_ms"].get<double>());
      double c = phase_delta_ms(s["phases"], start_phase(s["phases"]), "first_kvm_run", "cpu_us");
      if (c >= 0) cpu.push_back(c);
    }
    double total_priv = 0, total_pss = 0;
    for (double p : priv) total_priv += p;
    for (double p : pss) total_pss += p;
    d["summary"] = {{"ok", ok}, {"median_rss_kib", percentile(rss, 0.5)}, {"median_pss_kib", percentile(pss, 0.5)},
                    {"median_private_kib", percentile(priv, 0.5)}, {"max_private_kib", percentile(priv, 1)},
                    {"total_private_kib", total_priv}, {"total_pss_kib", total_pss},
                    {"median_ready_ms", percentile(ready, 0.5)}, {"max_ready_ms", percentile(ready, 1)},
                    {"median_cpu_to_first_kvm_run_ms", percentile(cpu, 0.5)}};
    results["density"].push_back(d);
    md << "\n" << n << " clones restored at once (File backend, PUT /snapshot/load to " << n
       << " waiting embers), " << ok << " answered: all echoed after " << ember::perf::strprintf("%.0f ms", d["all_ready_ms"].get<double>())
       << " (median clone " << ember::perf::strprintf("%.0f ms", percentile(ready, 0.5)) << ")\n\n"
       << "| per clone, after its echo (KiB) | median | max |\n|---|---|---|\n"
       << ember::perf::strprintf("| RSS | %.0f | %.0f |\n", percentile(rss, 0.5), percentile(rss, 1))
       << ember::perf::strprintf("| PSS | %.0f | %.0f |\n", percentile(pss, 0.5), percentile(pss, 1))
       << ember::perf::strprintf("| private (Private_Clean + Private_Dirty) | %.0f | %.0f |\n", percentile(priv, 0.5), percentile(priv, 1))
       << "\nall " << ok << " clones: private " << ember::perf::strprintf("%.1f MiB", total_priv / 1024) << ", PSS "
       << ember::perf::strprintf("%.1f MiB", total_pss / 1024) << "; one cold-booted VM's RSS after its echo: "
       << ember::perf::strprintf("%.1f MiB", cold_rss / 1024) << " (" << ok << " of them: " << ember::perf::strprintf("%.1f MiB", ok * cold_rss / 1024)
       << ")\n";
  }

  results["summary"] = summary;
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  if (failures > 0) {
    keep_logs(f.dir, o.out);
    std::cerr << "snapshot_bench: " << failures << " failed; the VMMs' logs are in " << o.out << "/logs\n";
  }
  fs::remove_all(f.dir);
  return failures == 0 ? 0 : 1;
}
