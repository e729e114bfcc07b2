// When each phase of a boot happened, in wall and CPU microseconds since ember's
// process start: the figures the boot-latency suite (perf/boot-latency) reports.
// Plain data with atomic slots: vCPU threads mark the last phases.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace ember {

enum class BootPhase {
  ArgsParsed,      // command line and config read
  // Restores only: PUT /snapshot/load reached the VMM (or the launcher began --restore),
  // before the snapshot file is read: where ember's own part of a restore starts.
  RestoreRequested,
  InstanceStart,   // the VM is started: right after ArgsParsed, or at the API's InstanceStart
  // KvmReady and VcpusReady come from the thread that builds the machine while the
  // main thread loads the kernel: they may fall before or after KernelLoaded.
  KvmReady,        // VM, irqchip and PIT created
  MemoryReady,     // guest RAM mapped (and pre-faulted with --prefault sync)
  KernelLoaded,    // kernel and initrd in guest memory
  VcpusReady,      // devices and vCPUs created and configured (boot registers: once both are done)
  FirstKvmRun,     // the boot vCPU enters KVM_RUN for the first time
  BootComplete,    // the guest wrote 123 to the boot-complete marker
  Count,
};

const char* boot_phase_name(BootPhase phase);

class BootTimeline {
 public:
  // Starts the clock: call first thing in main().
  BootTimeline();
  // Records the phase once (later marks of the same phase are ignored).
  void mark(BootPhase phase);
  // Forgets a mark: a request that failed (a refused snapshot load) did not start the phase.
  void unmark(BootPhase phase);
  bool marked(BootPhase phase) const { return wall_us_[index(phase)].load() >= 0; }
  int64_t wall_us(BootPhase phase) const { return wall_us_[index(phase)].load(); }
  int64_t cpu_us(BootPhase phase) const { return cpu_us_[index(phase)].load(); }
  // {"args_parsed": {"wall_us": N, "cpu_us": N}, ...} for the phases reached.
  std::string to_json() const;

 private:
  static size_t index(BootPhase p) { return static_cast<size_t>(p); }
  int64_t start_wall_ns_;
  int64_t start_cpu_ns_;
  std::array<std::atomic<int64_t>, static_cast<size_t>(BootPhase::Count)> wall_us_;
  std::array<std::atomic<int64_t>, static_cast<size_t>(BootPhase::Count)> cpu_us_;
};

}  // namespace ember
