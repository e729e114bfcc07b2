// Boot-latency suite driver: boots the same guest N times with ember and N times
// with QEMU's microvm machine, interleaved, and measures each boot the same way:
// wall time from spawning the VMM to the guest init's userspace line on the
// console, the VMM's CPU time and peak RSS (wait4), and, for ember, its own phase
// timeline (--boot-timings). One extra boot of each VMM measures its memory
// overhead: RSS (and PSS) from /proc/PID/smaps minus the guest-RAM mapping, after boot.
// --ember-also LABEL=PATH adds another ember binary to the same interleaved run (e.g. two
// builds compared side by side), or the same binary with other flags ('no-acpi=PATH --no-acpi').
// --guest/--kernels/--initrd/--qemu-acpi measure another guest, e.g. Debian's stock kernel, which
// needs ACPI under both VMMs. Writes results.json and results.md into --out.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "perf/bench_util.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using ember::perf::percentile;

namespace {

struct Options {
  int runs = 10;
  std::string ember, qemu = "qemu-system-x86_64", guest, out = ".";
  std::vector<std::string> kernels = {"bzImage", "vmlinux"};
  std::string initrd = "initramfs.cpio.gz";  // in --guest
  bool qemu_acpi = false;  // microvm with its ACPI tables (a kernel that needs ACPI, like Debian's)
  int mem_mib = 128, vcpus = 1;
  double timeout_s = 600;
  std::vector<std::string> ember_extra;  // extra ember flags (e.g. --no-prefault)
  // label, "binary [flag...]": another ember, or the same one with other flags (--no-acpi)
  std::vector<std::pair<std::string, std::string>> ember_also;
  // Every ember binary measured, by label: "ember" (--ember) first.
  std::vector<std::pair<std::string, std::string>> embers() const {
    std::vector<std::pair<std::string, std::string>> all = {{"ember", ember}};
    all.insert(all.end(), ember_also.begin(), ember_also.end());
    return all;
  }
};

constexpr const char* kMarker = "EMBER_GUEST_USERSPACE";
const std::string kCmdline = "console=ttyS0 reboot=k panic=1 pci=off quiet ember_boot_marker=1";

struct Boot {
  bool ok = false;
  double ttu_ms = 0;     // spawn -> userspace line
  double total_ms = 0;   // spawn -> exit
  double cpu_ms = 0;     // user + system, whole process
  long max_rss_kib = 0;
  long overhead_kib = -1;  // RSS without guest RAM, sampled after boot (memory runs only)
  long overhead_pss_kib = -1;  // the same as PSS
  json phases;           // ember only
  std::string error;
};

// RSS and PSS without the guest-RAM mapping.
std::pair<long, long> smaps_overhead_kib(pid_t pid, long guest_kib) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  long rss = 0, pss = 0, size = 0;
  bool guest_ram = false;
  while (std::getline(in, line)) {
    // A mapping header: "start-end perms offset dev inode [name]".
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 17) {
      guest_ram = line.find("[anon:ember-guest-ram]") != std::string::npos;
      size = 0;
    } else if (line.rfind("Size:", 0) == 0) {
      size = std::stol(line.substr(5));
      // QEMU does not name its RAM: treat an anonymous mapping of at least the guest size as RAM.
      if (size >= guest_kib) guest_ram = true;
    } else if (line.rfind("Rss:", 0) == 0 && !guest_ram) {
      rss += std::stol(line.substr(4));
    } else if (line.rfind("Pss:", 0) == 0 && !guest_ram) {
      pss += std::stol(line.substr(4));
    }
  }
  return {rss, pss};
}

Boot run_boot(const std::vector<std::string>& argv, const Options& o, bool sample_memory) {
  Boot b;
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) < 0) return b;
  auto start = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  std::string out;
  bool seen = false;
  auto deadline = start + std::chrono::duration<double>(o.timeout_s);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      b.error = "timed out";
      break;
    }
    pollfd p{out_pipe[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<long>(left, 500))) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out_pipe[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (!seen && out.find(kMarker) != std::string::npos) {
      seen = true;
      b.ttu_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (sample_memory) std::tie(b.overhead_kib, b.overhead_pss_kib) = smaps_overhead_kib(pid, long{o.mem_mib} * 1024);
    }
  }
  close(out_pipe[0]);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  b.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  b.cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
  b.max_rss_kib = ru.ru_maxrss;
  bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  b.ok = seen && exited_ok;
  if (!b.ok && b.error.empty()) {
    b.error = seen ? "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1)
                   : "no userspace line; output tail: " + out.substr(out.size() > 300 ? out.size() - 300 : 0);
  }
  return b;
}

std::vector<std::string> ember_argv(const Options& o, const std::string& binary_and_flags, const std::string& kernel,
                                    const std::string& timings, const std::string& script) {
  std::vector<std::string> words;
  std::stringstream ss(binary_and_flags);
  for (std::string w; ss >> w;) words.push_back(w);
  std::string binary = words.empty() ? "" : words.front();
  std::vector<std::string> a = {binary, "--kernel", o.guest + "/" + kernel, "--initrd",
                                o.guest + "/" + o.initrd, "--cmdline", kCmdline + script,
                                "--vcpus", std::to_string(o.vcpus), "--mem-mib", std::to_string(o.mem_mib),
                                "--boot-timings", timings};
  a.insert(a.end(), o.ember_extra.begin(), o.ember_extra.end());
  if (!words.empty()) a.insert(a.end(), words.begin() + 1, words.end());
  return a;
}

std::vector<std::string> qemu_argv(const Options& o, const std::string& kernel, const std::string& script) {
  return ember::perf::qemu_microvm_argv(o.qemu, o.qemu_acpi, o.vcpus, o.mem_mib, o.guest + "/" + kernel,
                                        o.guest + "/" + o.initrd, kCmdline + script);
}

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (flags.is("--runs")) o.runs = std::stoi(flags.value());
    else if (flags.is("--ember")) o.ember = flags.value();
    else if (flags.is("--qemu")) o.qemu = flags.value();
    else if (flags.is("--guest")) o.guest = flags.value();
    else if (flags.is("--out")) o.out = flags.value();
    else if (flags.is("--initrd")) o.initrd = flags.value();
    else if (flags.is("--qemu-acpi")) o.qemu_acpi = true;
    else if (flags.is("--mem-mib")) o.mem_mib = std::stoi(flags.value());
    else if (flags.is("--vcpus")) o.vcpus = std::stoi(flags.value());
    else if (flags.is("--timeout")) o.timeout_s = std::stod(flags.value());
    else if (flags.is("--kernels")) {
      o.kernels.clear();
      std::stringstream ss(flags.value());
      for (std::string k; std::getline(ss, k, ',');) o.kernels.push_back(k);
    } else if (flags.is("--ember-flag")) {
      o.ember_extra.push_back(flags.value());
    } else if (flags.is("--ember-also")) {
      std::string v = flags.value();
      auto eq = v.find('=');
      if (eq == 0 || eq == std::string::npos || v.find('/') < eq || v.substr(0, eq) == "qemu") {
        throw std::runtime_error("--ember-also needs LABEL=PATH[ FLAG...] (a label without '/', not \"qemu\")");
      }
      o.ember_also.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty()) throw std::runtime_error("--ember and --guest are required");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "boot_latency",
      "boot_latency --ember BIN --guest DIR [--qemu BIN] [--runs N] [--out DIR] [--kernels bzImage,vmlinux]"
      " [--initrd NAME] [--qemu-acpi] [--mem-mib N] [--vcpus N] [--ember-flag FLAG]..."
      " [--ember-also 'LABEL=PATH[ FLAG...]']...",
      parse);
  if (!parsed) return 2;
  Options o = *parsed;
  json results = {{"runs", o.runs}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus}, {"cmdline", kCmdline},
                  {"guest", o.guest}, {"initrd", o.initrd}, {"qemu_acpi", o.qemu_acpi},
                  {"ember_flags", o.ember_extra}, {"ember_binaries", json::object()}, {"boots", json::array()}};
  for (const auto& [label, binary] : o.embers()) results["ember_binaries"][label] = binary;
  std::map<std::string, std::vector<Boot>> by_variant;
  int failures = 0;
  const std::string timings = o.out + "/ember-timings.json";
  for (int run = 0; run < o.runs; ++run) {
    for (const auto& kernel : o.kernels) {
      auto vmms = o.embers();
      vmms.emplace_back("qemu", "");
      // Each run starts with the next VMM: a boot right after another VMM exited can find the
      // host still tearing that one down, and no VMM should always be the one that does.
      std::rotate(vmms.begin(), vmms.begin() + run % vmms.size(), vmms.end());
      for (const auto& [vmm, binary] : vmms) {
        bool is_ember = vmm != "qemu";
        Boot b = is_ember ? run_boot(ember_argv(o, binary, kernel, timings, ""), o, false)
                          : run_boot(qemu_argv(o, kernel, ""), o, false);
        if (is_ember && b.ok) {
          std::ifstream in(timings);
          b.phases = json::parse(in, nullptr, false);
        }
        std::string variant = vmm + "/" + kernel;
        std::cerr << "run " << run + 1 << "/" << o.runs << " " << variant << ": "
                  << (b.ok ? std::to_string(b.ttu_ms) + " ms" : "FAILED: " + b.error) << "\n";
        if (!b.ok) ++failures;
        results["boots"].push_back({{"run", run}, {"variant", variant}, {"ok", b.ok}, {"ttu_ms", b.ttu_ms},
                                    {"total_ms", b.total_ms}, {"cpu_ms", b.cpu_ms},
                                    {"max_rss_kib", b.max_rss_kib}, {"phases", b.phases}, {"error", b.error}});
        if (b.ok) by_variant[variant].push_back(b);
      }
    }
  }
  // Memory overhead: boot once more with a guest that waits, sample smaps after boot.
  const std::string wait_script = " ember_test=c2xlZXAgMgo=";  // "sleep 2"
  std::vector<std::pair<std::string, Boot>> memory;
  for (const auto& [label, binary] : o.embers()) {
    memory.emplace_back(label, run_boot(ember_argv(o, binary, o.kernels.front(), timings, wait_script), o, true));
  }
  memory.emplace_back("qemu", run_boot(qemu_argv(o, o.kernels.front(), wait_script), o, true));
  for (const auto& [vmm, b] : memory) {
    results["memory_overhead_kib"][vmm] = b.overhead_kib;
    results["memory_overhead_pss_kib"][vmm] = b.overhead_pss_kib;
  }

  json summary = json::object();
  std::ostringstream md;
  md << "| variant | boots | median ms | p90 ms | median CPU ms | peak RSS MiB |\n|---|---|---|---|---|---|\n";
  for (auto& [variant, boots] : by_variant) {
    std::vector<double> ttu, cpu, rss;
    for (auto& b : boots) {
      ttu.push_back(b.ttu_ms);
      cpu.push_back(b.cpu_ms);
      rss.push_back(b.max_rss_kib / 1024.0);
    }
    summary[variant] = {{"boots", boots.size()}, {"median_ms", percentile(ttu, 0.5)}, {"p90_ms", percentile(ttu, 0.9)},
                        {"median_cpu_ms", percentile(cpu, 0.5)}, {"peak_rss_mib", percentile(rss, 1.0)},
                        {"ttu_ms", ttu}};
    char row[256];
    std::snprintf(row, sizeof(row), "| %s | %zu | %.0f | %.0f | %.0f | %.1f |\n", variant.c_str(), boots.size(),
                  percentile(ttu, 0.5), percentile(ttu, 0.9), percentile(cpu, 0.5), percentile(rss, 1.0));
    md << row;
    // Sorted times with their cumulative fraction, for the CDF chart.
    std::sort(ttu.begin(), ttu.end());
    std::string name = variant;
    std::replace(name.begin(), name.end(), '/', '_');
    std::ofstream cdf(o.out + "/cdf-" + name + ".dat");
    if (!ttu.empty()) cdf << ttu.front() << " 0\n";  // the curve starts at 0
    for (size_t i = 0; i < ttu.size(); ++i) cdf << ttu[i] << " " << double(i + 1) / ttu.size() << "\n";
  }
  md << "\n| ember, kernel | ember/QEMU median | ember first KVM_RUN (median) | share of ember's time to userspace |\n"
        "|---|---|---|---|\n";
  for (const auto& [label, binary] : o.embers()) {
    for (const auto& kernel : o.kernels) {
      std::string e = label + "/" + kernel, q = "qemu/" + kernel;
      std::string key = label == "ember" ? kernel : label + "_" + kernel;
      if (!summary.contains(e) || !summary.contains(q)) continue;
      double ratio = summary[e]["median_ms"].get<double>() / summary[q]["median_ms"].get<double>();
      std::vector<double> first_run;
      for (auto& b : by_variant[e]) {
        if (b.phases.contains("first_kvm_run")) {
          first_run.push_back(b.phases["first_kvm_run"]["wall_us"].get<double>() / 1000);
        }
      }
      double fr = percentile(first_run, 0.5);
      summary[key + "_ratio"] = ratio;
      summary[key + "_first_kvm_run_ms"] = fr;
      char row[256];
      std::snprintf(row, sizeof(row), "| %s | %.2f | %.0f ms | %.1f%% |\n", e.c_str(), ratio, fr,
                    100.0 * fr / summary[e]["median_ms"].get<double>());
      md << row;
    }
  }
  // Each ember's phase breakdown, medians over its boots (first kernel).
  for (const auto& [label, binary] : o.embers()) {
    std::string e0 = label + "/" + o.kernels.front();
    md << "\n" << label << " phases (" << e0 << ", median wall ms since process start): ";
    for (const char* phase : {"args_parsed", "kvm_ready", "memory_ready", "kernel_loaded", "vcpus_ready",
                              "first_kvm_run", "boot_complete"}) {
      std::vector<double> v;
      for (auto& b : by_variant[e0]) {
        if (b.phases.contains(phase)) v.push_back(b.phases[phase]["wall_us"].get<double>() / 1000);
      }
      summary[label + "_phases_ms"][phase] = percentile(v, 0.5);
      char part[64];
      std::snprintf(part, sizeof(part), "%s %.0f; ", phase, percentile(v, 0.5));
      md << part;
    }
  }
  md << "\n\nmemory overhead (without guest RAM, after boot):";
  for (const auto& [vmm, b] : memory) {
    md << " " << (vmm == "qemu" ? "QEMU" : vmm) << " RSS " << b.overhead_kib << " KiB, PSS " << b.overhead_pss_kib
       << " KiB;";
  }
  md << "\n";
  results["summary"] = summary;
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  return failures == 0 ? 0 : 1;
}
