// CPU time of a process so far, for the start-up benchmarks (perf/api, perf/jailer).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace ember::perf {

// Milliseconds on CPU of every thread of `pid`, from /proc/PID/task/*/schedstat (ns
// resolution, unlike the clock ticks of /proc/PID/stat). A task's figure survives execve.
inline double task_cpu_ms(pid_t pid) {
  double total_ns = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "schedstat");
    double ns = 0;
    in >> ns;
    total_ns += ns;
  }
  return total_ns / 1e6;
}

}  // namespace ember::perf
