// How fast ember is ready to take API calls, and how little memory it holds while it
// waits for configuration (no guest): starts `ember --api-sock` N times and reports
//  - CPU time from exec to the first accepted connection (all threads, from
//    /proc/PID/task/*/schedstat, ns resolution) - Firecracker publishes 8 CPU ms;
//    and up to the first GET / answered;
//  - wall time to a connectable socket;
//  - RSS and PSS from /proc/PID/smaps_rollup after one GET / answered.
// No KVM is needed: once its socket listens, ember makes its KVM VM ahead on another thread
// (VmmRunner::prepare_machine), and without a usable /dev/kvm it just does not.
//   usage: api_startup EMBER_BINARY [RUNS [EMBER_ARGS...]]  (e.g. --no-seccomp, to compare)
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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"
#include "perf/task_cpu.h"

namespace fs = std::filesystem;

namespace {

std::string get_root(int fd) {
  std::string req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  if (::write(fd, req.data(), req.size()) < 0) return "";
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s EMBER_BINARY [RUNS [EMBER_ARGS...]]\n", argv[0]);
    return 2;
  }
  int runs = argc > 2 ? std::atoi(argv[2]) : 20;
  fs::path dir = fs::temp_directory_path() / ("ember-api-perf-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string sock = (dir / "api.sock").string();
  std::vector<char*> ember_argv = {argv[1], const_cast<char*>("--api-sock"), sock.data()};
  for (int a = 3; a < argc; ++a) ember_argv.push_back(argv[a]);
  ember_argv.push_back(nullptr);
  std::vector<double> cpu, cpu_answered, wall, rss, pss;
  for (int i = 0; i < runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      execv(argv[1], ember_argv.data());
      _exit(127);
    }
    int fd = -1;
    while ((fd = ember::perf::unix_connect(sock)) < 0) {
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(10)) {
        std::fprintf(stderr, "ember did not open its API socket within 10 s\n");
        ::kill(pid, SIGKILL);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    auto connectable = std::chrono::steady_clock::now();
    double cpu_at_connect = ember::perf::task_cpu_ms(pid);
    std::string answer = get_root(fd);
    if (answer.find("\"state\":\"Not started\"") == std::string::npos) {
      std::fprintf(stderr, "unexpected answer to GET /: %s\n", answer.c_str());
      return 1;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    cpu_answered.push_back(ember::perf::task_cpu_ms(pid));
    cpu.push_back(cpu_at_connect);
    wall.push_back(std::chrono::duration<double, std::milli>(connectable - start).count());
    rss.push_back(static_cast<double>(ember::perf::smaps_rollup_kib(pid, "Rss")));
    pss.push_back(static_cast<double>(ember::perf::smaps_rollup_kib(pid, "Pss")));
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    fs::remove(sock);
  }
  fs::remove_all(dir);
  auto [cmin, cmax] = std::minmax_element(cpu.begin(), cpu.end());
  std::printf("runs: %d\n", runs);
  std::printf("CPU time to a connectable API socket: median %.2f ms (min %.2f, max %.2f)\n", median(cpu), *cmin, *cmax);
  std::printf("CPU time up to GET / answered (one request served): median %.2f ms\n", median(cpu_answered));
  std::printf("wall time to a connectable API socket: median %.2f ms\n", median(wall));
  std::printf("memory waiting for configuration: RSS median %.0f KiB, PSS median %.0f KiB\n", median(rss), median(pss));
  return 0;
}
