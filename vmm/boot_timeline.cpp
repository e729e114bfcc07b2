#include "vmm/boot_timeline.h"

#include <time.h>

namespace ember {

namespace {
int64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

const char* boot_phase_name(BootPhase phase) {
  switch (phase) {
    case BootPhase::ArgsParsed: return "args_parsed";
    case BootPhase::RestoreRequested: return "restore_requested";
    case BootPhase::InstanceStart: return "instance_start";
    case BootPhase::KvmReady: return "kvm_ready";
    case BootPhase::MemoryReady: return "memory_ready";
    case BootPhase::KernelLoaded: return "kernel_loaded";
    case BootPhase::VcpusReady: return "vcpus_ready";
    case BootPhase::FirstKvmRun: return "first_kvm_run";
    case BootPhase::BootComplete: return "boot_complete";
    case BootPhase::Count: break;
  }
  return "?";
}

// CPU time is the whole process's (all threads, including guest time of vCPU
// threads), like Firecracker's boot timer reports it.
BootTimeline::BootTimeline()
    : start_wall_ns_(now_ns(CLOCK_MONOTONIC)), start_cpu_ns_(now_ns(CLOCK_PROCESS_CPUTIME_ID)) {
  for (auto& v : wall_us_) v.store(-1);
  for (auto& v : cpu_us_) v.store(-1);
}

void BootTimeline::mark(BootPhase phase) {
  int64_t wall = (now_ns(CLOCK_MONOTONIC) - start_wall_ns_) / 1000;
  int64_t cpu = (now_ns(CLOCK_PROCESS_CPUTIME_ID) - start_cpu_ns_) / 1000;
  int64_t unset = -1;
  if (wall_us_[index(phase)].compare_exchange_strong(unset, wall)) cpu_us_[index(phase)].store(cpu);
}

void BootTimeline::unmark(BootPhase phase) {
  cpu_us_[index(phase)].store(-1);
  wall_us_[index(phase)].store(-1);
}

std::string BootTimeline::to_json() const {
  std::string out = "{";
  bool first = true;
  for (size_t i = 0; i < wall_us_.size(); ++i) {
    if (wall_us_[i].load() < 0) continue;
    if (!first) out += ", ";
    first = false;
    out += "\"" + std::string(boot_phase_name(static_cast<BootPhase>(i))) + "\": {\"wall_us\": " +
           std::to_string(wall_us_[i].load()) + ", \"cpu_us\": " + std::to_string(cpu_us_[i].load()) + "}";
  }
  return out + "}";
}

}  // namespace ember
