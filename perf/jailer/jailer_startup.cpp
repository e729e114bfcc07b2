// What the jailer costs at start-up: starts `ember --api-sock` RUNS times with and without
// ember-jailer, PARALLELISM at once, and reports for each the wall time from spawning to the
// API socket accepting a connection and the CPU time spent by then (the started process's
// threads, from /proc/PID/task/*/schedstat, ns resolution: the jailer execs ember in the same
// task, so its CPU is counted too). No KVM is needed: ember touches /dev/kvm only at
// InstanceStart. Run as root (perf/jailer/run.sh).
//   usage: jailer_startup EMBER JAILER RUNS PARALLELISM...
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/util/file_io.h"
#include "jailer/cgroup.h"
#include "perf/task_cpu.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

bool accepts(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

pid_t spawn(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

struct Sample {
  double wall_ms, cpu_ms;
};

struct Setup {
  std::string ember, jailer, scratch, cgroup_v2;  // cgroup_v2: the jailer's hierarchy ("" if none)
};

// One batch of `n` started together; appends one sample per instance that got ready.
void run_batch(const Setup& s, bool jailed, int n, int batch, std::vector<Sample>& out) {
  struct Instance {
    std::string id, sock;
    pid_t pid;
    Clock::time_point start;
    bool ready = false;
  };
  std::vector<Instance> all;
  for (int i = 0; i < n; ++i) {
    std::string id = "perf-" + std::to_string(batch) + "-" + std::to_string(i);
    Instance inst{id, "", -1, Clock::now()};
    if (jailed) {
      inst.sock = s.scratch + "/jails/ember/" + id + "/root/api.sock";
      inst.pid = spawn({s.jailer, "--id", id, "--exec-file", s.ember, "--uid", "1234", "--gid", "2345",
                        "--chroot-base-dir", s.scratch + "/jails", "--", "--api-sock", "/api.sock"});
    } else {
      inst.sock = s.scratch + "/" + id + ".sock";
      inst.pid = spawn({s.ember, "--api-sock", inst.sock, "--id", id});
    }
    all.push_back(inst);
  }
  for (auto deadline = Clock::now() + std::chrono::seconds(10); Clock::now() < deadline;) {
    bool pending = false;
    for (Instance& inst : all) {
      if (inst.ready || !accepts(inst.sock)) {
        pending = pending || !inst.ready;
        continue;
      }
      inst.ready = true;
      double wall = std::chrono::duration<double, std::milli>(Clock::now() - inst.start).count();
      out.push_back({wall, ember::perf::task_cpu_ms(inst.pid)});
    }
    if (!pending) break;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  for (Instance& inst : all) {
    ::kill(inst.pid, SIGTERM);
    ::waitpid(inst.pid, nullptr, 0);
    if (!inst.ready) std::fprintf(stderr, "instance %s never accepted\n", inst.id.c_str());
    if (jailed) {
      fs::remove_all(s.scratch + "/jails/ember/" + inst.id);
      if (!s.cgroup_v2.empty()) ::rmdir((s.cgroup_v2 + "/ember/" + inst.id).c_str());
    } else {
      fs::remove(inst.sock);
    }
  }
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s EMBER JAILER RUNS PARALLELISM...\n", argv[0]);
    return 2;
  }
  Setup s{argv[1], argv[2], "", ""};
  int runs = std::atoi(argv[3]);
  const char* tmp = std::getenv("TMPDIR");
  s.scratch = std::string(tmp ? tmp : "/tmp") + "/ember-jailer-perf-" + std::to_string(::getpid());
  fs::create_directories(s.scratch);
  ember::jailer::CgroupMounts mounts = ember::jailer::parse_mountinfo(ember::read_file("/proc/self/mountinfo", "mountinfo"));
  if (!mounts.v2.empty()) s.cgroup_v2 = mounts.v2.front().path;

  std::printf("| parallelism | mode | runs | wall median ms | wall p90 ms | CPU median ms | CPU p90 ms |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (int a = 4; a < argc; ++a) {
    int parallelism = std::atoi(argv[a]);
    std::vector<Sample> samples[2];  // [0] plain, [1] jailed
    // Alternate the modes batch by batch, so that both see the same machine load.
    for (int batch = 0; batch * parallelism < runs; ++batch) {
      for (int jailed = 0; jailed < 2; ++jailed) run_batch(s, jailed, parallelism, batch, samples[jailed]);
    }
    double cpu_median[2];
    for (int jailed = 0; jailed < 2; ++jailed) {
      std::vector<double> wall, cpu;
      for (const Sample& x : samples[jailed]) wall.push_back(x.wall_ms), cpu.push_back(x.cpu_ms);
      cpu_median[jailed] = percentile(cpu, 0.5);
      std::printf("| %d | %s | %zu | %.2f | %.2f | %.2f | %.2f |\n", parallelism, jailed ? "jailed" : "plain",
                  samples[jailed].size(), percentile(wall, 0.5), percentile(wall, 0.9), cpu_median[jailed],
                  percentile(cpu, 0.9));
    }
    std::printf("| %d | jailer adds (CPU median) | | | | %.2f | |\n", parallelism, cpu_median[1] - cpu_median[0]);
    std::fflush(stdout);
  }
  if (!s.cgroup_v2.empty()) ::rmdir((s.cgroup_v2 + "/ember").c_str());
  fs::remove_all(s.scratch);
  return 0;
}
