// What seccomp costs ember: CPU to install one role's filter in a new thread (ember does
// this once per thread; the programs are compiled at build time, so this is the whole
// start-up cost), and the added cost of a filtered system call.
//   build/perf/seccomp_bench
#include <benchmark/benchmark.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <thread>

#include "vmm/seccomp/seccomp.h"

namespace {

using ember::ThreadRole;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Each iteration installs the filter in a fresh thread (filters stack within a thread)
// and times only the installation, in that thread's CPU time.
void BM_InstallFilter(benchmark::State& state) {
  auto role = static_cast<ThreadRole>(state.range(0));
  for (auto _ : state) {
    double seconds = 0;
    std::thread([&] {
      double start = thread_cpu_seconds();
      ember::seccomp::install_filter(role);
      seconds = thread_cpu_seconds() - start;
    }).join();
    state.SetIterationTime(seconds);
  }
  state.SetLabel(ember::thread_role_name(role));
}
BENCHMARK(BM_InstallFilter)
    ->Arg(static_cast<int>(ThreadRole::Main))
    ->Arg(static_cast<int>(ThreadRole::Vcpu))
    ->Arg(static_cast<int>(ThreadRole::Event))
    ->Arg(static_cast<int>(ThreadRole::Api))
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// gettid, allowed to every role: what running the filter adds to an allowed call.
void BM_SyscallUnfiltered(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(::syscall(SYS_gettid));
}
BENCHMARK(BM_SyscallUnfiltered);

void BM_SyscallUnderTheEventFilter(benchmark::State& state) {
  std::thread([&] {
    ember::seccomp::install_filter(ThreadRole::Event);
    for (auto _ : state) benchmark::DoNotOptimize(::syscall(SYS_gettid));
  }).join();
}
BENCHMARK(BM_SyscallUnderTheEventFilter);

}  // namespace

BENCHMARK_MAIN();
