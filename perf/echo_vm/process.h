// The echo VMs' processes and sockets (perf/snapshot, perf/fleet): a child VMM (or page-fault
// handler) with its output in a log file, deadlines, waiting for a Unix socket to listen,
// reading a socket up to a length or a line.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"

namespace ember::perf::echo_vm {

using Clock = std::chrono::steady_clock;

// `from` plus `seconds`.
inline Clock::time_point later(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A child process with stdout and stderr in a log file; SIGTERM (then SIGKILL) when dropped.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int null_fd = ::open("/dev/null", O_RDONLY);
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(); }

  pid_t pid() const { return pid_; }
  bool exited() {
    if (!done_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) done_ = true;
    return done_;
  }
  void terminate() {
    if (!exited()) ::kill(pid_, SIGTERM);
  }
  // Waits for the end, SIGKILL after `timeout_s`; the exit status (128+signal if killed).
  int wait(double timeout_s = 60) {
    auto deadline = later(Clock::now(), timeout_s);
    while (!exited()) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        done_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  int stop() {
    terminate();
    return wait();
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool done_ = false;
};

// Waits until `path` accepts a connection, trying every `interval`; false at the deadline or
// once `owner` exited.
inline bool wait_for_socket(const std::string& path, Child& owner, Clock::time_point deadline,
                            std::chrono::microseconds interval = std::chrono::microseconds(500)) {
  while (Clock::now() < deadline && !owner.exited()) {
    int fd = ember::perf::unix_connect(path);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(interval);
  }
  return false;
}

// Whether a socket listens at `path`, from /proc/net/unix (flag __SO_ACCEPTCON), without
// connecting: the page-fault handler takes the first connection as ember's and removes its socket.
inline bool listening_without_connect(const std::string& path) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string num, refs, protocol, flags, type, state, inode, name;
    words >> num >> refs >> protocol >> flags >> type >> state >> inode >> name;
    if (name == path && flags == "00010000") return true;
  }
  return false;
}

// Waits until a socket listens at `path` (not connecting to it); false at the deadline or once
// `owner` exited.
inline bool wait_for_listener(const std::string& path, Child& owner, Clock::time_point deadline) {
  while (Clock::now() < deadline && !owner.exited()) {
    if (listening_without_connect(path)) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return false;
}

// Reads into `out` until it holds `want` bytes or the line ends ('\n' in `until_newline`
// mode); false on EOF, error or the deadline.
inline bool read_until(int fd, std::string& out, size_t want, bool until_newline, Clock::time_point deadline) {
  char c;
  for (;;) {
    if (until_newline ? (!out.empty() && out.back() == '\n') : out.size() >= want) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    if (::read(fd, &c, 1) != 1) return false;
    out += c;
  }
}

// One attempt at the guest's echo: an empty `error` when it came back; else why not, and how
// long to wait before the next attempt.
struct EchoTry {
  std::string error;
  std::chrono::microseconds retry_after{0};
};
using EchoAttempt = std::function<EchoTry(Clock::time_point deadline)>;

// Repeats `attempt` until the guest echoes: its time since `start` in ms, or -1 with `error`.
// `attempts`, if given, counts the tries (1: the first one echoed).
inline double wait_for_echo(const EchoAttempt& attempt, Child& vm, Clock::time_point start,
                            Clock::time_point deadline, std::string& error, int* attempts = nullptr) {
  for (;;) {
    EchoTry t = attempt(deadline);
    if (attempts) ++*attempts;
    if (t.error.empty()) return ms_between(start, Clock::now());
    if (vm.exited()) {
      error = "the VMM exited before the guest echoed (" + t.error + ")";
      return -1;
    }
    if (Clock::now() >= deadline) {
      error = "no echo in time (" + t.error + ")";
      return -1;
    }
    std::this_thread::sleep_for(t.retry_after);
  }
}

}  // namespace ember::perf::echo_vm
