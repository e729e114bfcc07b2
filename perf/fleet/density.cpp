#include "perf/fleet/density.h"

#include <deque>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "perf/bench_util.h"
#include "perf/echo_vm/ember.h"
#include "perf/task_cpu.h"

namespace ember::perf::fleet {

namespace fs = std::filesystem;
using namespace echo_vm;
using json = nlohmann::json;

namespace {

constexpr double kSettleSeconds = 5;  // after a batch answered: idle CPU is measured over this

// One batch's row of the report.
struct Row {
  int alive = 0, batch = 0;
  double ready_p50_ms = -1, ready_max_ms = -1;
  double oldest_echo_ms = -1;  // the first clone's echo, after the batch
  double host_kib_per_vm = 0, kernel_kib_per_vm = 0;
  double rss_kib = 0, pss_kib = 0;  // the batch's medians
  double idle_cores = 0;            // CPU of every clone over kSettleSeconds, in cores
  long available_mib = 0;
};

void write_report(const Options& o, const std::vector<Row>& rows, const std::string& stopped) {
  std::ostringstream md;
  md << "| clones alive | batch: ready p50 ms | max ms | oldest clone's echo ms | host memory per clone MiB |"
        " of it kernel KiB | batch RSS MiB | batch PSS MiB | idle clones' CPU, cores | MemAvailable MiB |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n";
  json j = {{"max", o.density}, {"batch", o.batch}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus},
            {"floor_mib", o.density_floor_mib}, {"settle_s", kSettleSeconds}, {"stopped", stopped},
            {"batches", json::array()}};
  std::ofstream dat(o.out + "/density.dat");
  dat << "clones \"host MiB per clone\" \"idle cores\" \"batch p50 s\"\n";
  for (const Row& r : rows) {
    md << "| " << r.alive << " | "
       << strprintf("%.0f | %.0f | %.0f | %.2f | %.0f | %.1f | %.1f | %.2f | %ld |\n", r.ready_p50_ms, r.ready_max_ms,
                    r.oldest_echo_ms, r.host_kib_per_vm / 1024, r.kernel_kib_per_vm, r.rss_kib / 1024,
                    r.pss_kib / 1024, r.idle_cores, r.available_mib);
    j["batches"].push_back({{"alive", r.alive}, {"batch", r.batch}, {"ready_p50_ms", r.ready_p50_ms},
                            {"ready_max_ms", r.ready_max_ms}, {"oldest_echo_ms", r.oldest_echo_ms},
                            {"host_kib_per_vm", r.host_kib_per_vm}, {"kernel_kib_per_vm", r.kernel_kib_per_vm},
                            {"rss_median_kib", r.rss_kib}, {"pss_median_kib", r.pss_kib},
                            {"idle_cores", r.idle_cores}, {"mem_available_mib", r.available_mib}});
    dat << r.alive << strprintf(" %.2f %.3f %.3f\n", r.host_kib_per_vm / 1024, r.idle_cores, r.ready_p50_ms / 1000);
  }
  md << "\n" << (rows.empty() ? 0 : rows.back().alive) << " clones alive at once (" << o.mem_mib << " MiB, "
     << o.vcpus << " vCPU each, restored " << o.batch << " at a time); stopped: " << stopped << "\n";
  std::ofstream(o.out + "/density.md") << md.str();
  std::ofstream(o.out + "/density.json") << j.dump(2) << "\n";
}

}  // namespace

int run_density(const Options& o, const Snapshot& s, const fs::path& dir) {
  const Variant& restore = kVariants[1];
  const fs::path clones = dir / "density";
  fs::create_directories(clones);
  const HostMemory start = HostMemory::now();
  std::deque<Vm> vms;  // stable addresses while it grows
  std::vector<Row> rows;
  std::string stopped;
  while (stopped.empty()) {
    if (static_cast<int>(vms.size()) >= o.density) {
      stopped = "reached --density " + std::to_string(o.density);
      break;
    }
    if (HostMemory::now().available / 1024 < o.density_floor_mib) {
      stopped = "the host's MemAvailable fell below " + std::to_string(o.density_floor_mib) + " MiB";
      break;
    }
    const int first = static_cast<int>(vms.size()), n = std::min(o.batch, o.density - first);
    std::vector<Vm*> batch;
    auto t0 = Clock::now();
    for (int i = first; i < first + n; ++i) {
      spawn_vm(restore, i, o, clones, vms.emplace_back());
      batch.push_back(&vms.back());
    }
    await_all(restore, batch, s, std::max(o.retry_ms, n), t0, later(t0, o.timeout_s));
    Row r;
    r.batch = n;
    std::vector<double> ready, rss, pss;
    for (int k = 0; k < n; ++k) {
      Vm* vm = batch[static_cast<size_t>(k)];
      if (!vm->error.empty()) {
        if (stopped.empty()) stopped = "clone " + std::to_string(first + k) + ": " + vm->error;
        continue;
      }
      ready.push_back(vm->ready_ms);
      read_memory(*vm);
      rss.push_back(double(vm->rss_kib));
      pss.push_back(double(vm->pss_kib));
    }
    for (size_t i = 0; i < vms.size() && stopped.empty(); ++i) {
      if (vms[i].process->exited()) stopped = "clone " + std::to_string(i) + " exited while idle";
    }
    // Settled: what the idle clones cost in CPU, then whether the oldest still answers.
    std::vector<double> before;
    for (Vm& vm : vms) before.push_back(task_cpu_ms(vm.process->pid()));
    auto settle_start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(kSettleSeconds));
    double used_ms = 0;
    for (size_t i = 0; i < vms.size(); ++i) used_ms += task_cpu_ms(vms[i].process->pid()) - before[i];
    r.idle_cores = used_ms / ms_between(settle_start, Clock::now());
    if (stopped.empty()) {
      std::string error;
      auto e0 = Clock::now();
      r.oldest_echo_ms = wait_for_echo(ember_echo(vms.front().uds, o.retry_ms), *vms.front().process, e0,
                                       later(e0, 60), error);
      if (r.oldest_echo_ms < 0) stopped = "the first clone stopped answering: " + error;
    }
    const HostMemory now = HostMemory::now();
    r.alive = static_cast<int>(vms.size());
    r.ready_p50_ms = percentile(ready, 0.5);
    r.ready_max_ms = percentile(ready, 1);
    r.host_kib_per_vm = double(start.available - now.available) / r.alive;
    r.kernel_kib_per_vm = double(now.kernel_since(start)) / r.alive;
    r.rss_kib = percentile(rss, 0.5);
    r.pss_kib = percentile(pss, 0.5);
    r.available_mib = now.available / 1024;
    rows.push_back(r);
    write_report(o, rows, stopped.empty() ? "(running)" : stopped);
    std::cerr << "density: " << r.alive << " clones alive, batch p50 " << strprintf("%.0f", r.ready_p50_ms)
              << " ms, host " << strprintf("%.1f", r.host_kib_per_vm / 1024) << " MiB per clone, idle CPU "
              << strprintf("%.2f", r.idle_cores) << " cores, MemAvailable " << r.available_mib << " MiB\n";
  }
  write_report(o, rows, stopped);
  std::cerr << "density: stopped: " << stopped << "\n";
  if (!stopped.starts_with("reached")) keep_logs(clones, o.out);
  for (Vm& vm : vms) vm.process->terminate();
  for (Vm& vm : vms) vm.process->wait(60);
  return stopped.starts_with("reached") ? 0 : 1;
}

}  // namespace ember::perf::fleet
