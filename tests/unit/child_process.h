// Runs a test body in a forked child with a deadline, for code that might block
// forever (open() of a FIFO) or kill its process: the test sees an exit code, or a
// timeout, instead of hanging the whole test binary.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace ember::test {

constexpr int kChildTimedOut = -1;

// The child's exit status (fn's return value), 128+signal, or kChildTimedOut once
// `timeout_ms` passed (the child is then killed).
inline int run_in_child(const std::function<int()>& fn, int timeout_ms) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn());
  if (pid < 0) return -2;
  for (int waited = 0;; waited += 10) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (waited >= timeout_ms) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return kChildTimedOut;
    }
    ::poll(nullptr, 0, 10);
  }
}

// A FIFO nobody writes, in $TMPDIR; removed on destruction.
struct TempFifo {
  std::string path;
  TempFifo() {
    const char* tmp = ::getenv("TMPDIR");
    path = std::string(tmp ? tmp : "/tmp") + "/ember-test-fifo-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    ::mkfifo(path.c_str(), 0600);
  }
  ~TempFifo() { ::unlink(path.c_str()); }
};

}  // namespace ember::test
