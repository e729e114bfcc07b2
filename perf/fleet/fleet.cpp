#include "perf/fleet/fleet.h"

#include <algorithm>
#include <fstream>
#include <thread>

#include "perf/bench_util.h"
#include "perf/echo_vm/ember.h"
#include "perf/echo_vm/qemu.h"

namespace ember::perf::fleet {

namespace fs = std::filesystem;
using namespace echo_vm;

void spawn_vm(const Variant& v, int index, const Options& o, const fs::path& dir, Vm& vm) {
  const std::string id = std::to_string(index), log = (dir / ("vm-" + id + ".log")).string();
  vm.uds = (dir / ("v-" + id + ".sock")).string();
  vm.api_sock = (dir / ("api-" + id + ".sock")).string();
  vm.cid = 3 + static_cast<unsigned>(index);
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

void await_ready(const Variant& v, Vm& vm, const Snapshot& s, int retry_ms, Clock::time_point start,
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
  EchoAttempt attempt = v.kind == Kind::QemuBoot
                            ? EchoAttempt([cid, retry_ms](Clock::time_point d) {
                                return vsock_echo(cid, 5000, kEchoMessage, retry_ms, d);
                              })
                            : ember_echo(vm.uds, retry_ms);
  vm.ready_ms = wait_for_echo(attempt, *vm.process, start, deadline, vm.error);
}

void await_all(const Variant& v, std::vector<Vm*>& vms, const Snapshot& s, int retry_ms, Clock::time_point start,
               Clock::time_point deadline) {
  std::vector<std::thread> waiters;
  for (Vm* vm : vms) waiters.emplace_back([&, vm] { await_ready(v, *vm, s, retry_ms, start, deadline); });
  for (auto& t : waiters) t.join();
}

void read_memory(Vm& vm) {
  vm.rss_kib = smaps_rollup_kib(vm.process->pid(), "Rss");
  vm.pss_kib = smaps_rollup_kib(vm.process->pid(), "Pss");
}

HostMemory HostMemory::now() {
  HostMemory m;
  std::ifstream in("/proc/meminfo");
  std::string key;
  long kib = 0;
  while (in >> key >> kib) {
    if (key == "MemAvailable:") m.available = kib;
    else if (key == "PageTables:") m.page_tables = kib;
    else if (key == "SUnreclaim:") m.slab_unreclaimable = kib;
    else if (key == "KernelStack:") m.kernel_stack = kib;
    in.ignore(64, '\n');
  }
  return m;
}

Fleet run_fleet(const Variant& v, int n, const Options& o, const Snapshot& s, const fs::path& dir) {
  fs::create_directories(dir);
  Fleet fleet;
  fleet.vms.resize(static_cast<size_t>(n));
  const int retry_ms = std::max(o.retry_ms, n);
  fleet.before = HostMemory::now();
  auto start = Clock::now(), deadline = later(start, o.timeout_s);
  for (int i = 0; i < n; ++i) spawn_vm(v, i, o, dir, fleet.vms[static_cast<size_t>(i)]);
  fleet.spawn_ms = ms_between(start, Clock::now());
  std::vector<Vm*> all;
  for (Vm& vm : fleet.vms) all.push_back(&vm);
  await_all(v, all, s, retry_ms, start, deadline);
  bool ok = std::all_of(fleet.vms.begin(), fleet.vms.end(), [](const Vm& vm) { return vm.error.empty(); });
  if (ok) {
    for (const Vm& vm : fleet.vms) fleet.all_ready_ms = std::max(fleet.all_ready_ms, vm.ready_ms);
  }
  // Memory while all N still run.
  fleet.ready = HostMemory::now();
  for (Vm& vm : fleet.vms) {
    if (vm.error.empty()) read_memory(vm);
  }
  for (Vm& vm : fleet.vms) vm.process->terminate();
  for (Vm& vm : fleet.vms) vm.process->wait(60);
  return fleet;
}

}  // namespace ember::perf::fleet
