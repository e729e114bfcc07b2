// What the fleet suite's runs share (perf/fleet): its options, the three ways a VM starts
// (ember cold boot, ember restore, QEMU cold boot), one VM's way from spawn to its guest's
// first vsock echo, a fleet of N started at once, and the host memory counters they move.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "perf/echo_vm/process.h"
#include "perf/echo_vm/suite_options.h"

namespace ember::perf::fleet {

struct Options : echo_vm::SuiteOptions {
  Options() {
    timeout_s = 900;  // per fleet: the first spawn to the last echo (density: per batch)
    retry_ms = 25;    // between one VM's echo attempts; N ms when N is larger (N poll at once)
  }
  std::vector<int> sizes = {1, 10, 50};
  int rounds = 3;
  std::vector<std::string> variants = {"ember_boot", "ember_restore", "qemu_boot"};
  // Density run (--density MAX): restored clones added `batch` at a time and kept alive, until
  // MAX or until the host stops it; nothing else is measured then.
  int density = 0, batch = 10;
  int density_floor_mib = 256;  // stop adding once the host's MemAvailable is below this
};

enum class Kind { EmberBoot, EmberRestore, QemuBoot };

struct Variant {
  const char* name;
  const char* file;  // its name in file names
  Kind kind;
};

inline const std::vector<Variant> kVariants = {{"ember cold boot", "ember_boot", Kind::EmberBoot},
                                               {"ember restore", "ember_restore", Kind::EmberRestore},
                                               {"QEMU cold boot", "qemu_boot", Kind::QemuBoot}};

struct Snapshot {
  std::string snap, mem;
};

struct Vm {
  std::unique_ptr<echo_vm::Child> process;
  std::string api_sock, uds;
  unsigned cid = 0;
  double ready_ms = -1;
  long rss_kib = -1, pss_kib = -1;
  std::string error;
};

// Spawns VM number `index` of variant `v` with its sockets and log in `dir` (not waiting).
void spawn_vm(const Variant& v, int index, const Options& o, const std::filesystem::path& dir, Vm& vm);

// One VM's way from spawned to its first echo (run on its own thread, all N at once):
// ready_ms counted from `start`, or error.
void await_ready(const Variant& v, Vm& vm, const Snapshot& s, int retry_ms, echo_vm::Clock::time_point start,
                 echo_vm::Clock::time_point deadline);

// await_ready for every one of `vms` (spawned already) at once, one thread each.
void await_all(const Variant& v, std::vector<Vm*>& vms, const Snapshot& s, int retry_ms,
               echo_vm::Clock::time_point start, echo_vm::Clock::time_point deadline);

// Reads a VM's RSS and PSS (KiB) into it.
void read_memory(Vm& vm);

// The host's memory counters (/proc/meminfo, KiB) that N VMs move: what they take in all
// (MemAvailable), and the kernel's part (page tables, unreclaimable slab such as KVM's
// structures, kernel stacks).
struct HostMemory {
  long available = 0, page_tables = 0, slab_unreclaimable = 0, kernel_stack = 0;
  static HostMemory now();
  // The kernel's part of what was taken since `before`.
  long kernel_since(const HostMemory& before) const {
    return page_tables - before.page_tables + slab_unreclaimable - before.slab_unreclaimable + kernel_stack -
           before.kernel_stack;
  }
};

struct Fleet {
  double all_ready_ms = -1;  // the first spawn -> the last echo; -1 if any VM failed
  double spawn_ms = 0;       // the first spawn -> the last
  HostMemory before, ready;  // before the first spawn; once all N answered (or failed)
  std::vector<Vm> vms;
};

// N VMs of variant `v` started at once in `dir`, timed, measured while all run, then stopped.
Fleet run_fleet(const Variant& v, int n, const Options& o, const Snapshot& s, const std::filesystem::path& dir);

}  // namespace ember::perf::fleet
