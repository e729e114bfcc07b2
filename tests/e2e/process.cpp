#include "tests/e2e/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

namespace ember::e2e {

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_seconds,
                          const StdinScript* input, const std::string& sigterm_after) {
  ProcessResult result;
  int out_pipe[2], err_pipe[2], in_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) < 0 || ::pipe2(err_pipe, O_CLOEXEC) < 0) return result;
  if (input && ::pipe2(in_pipe, O_CLOEXEC) < 0) return result;
  auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    int in_fd = input ? in_pipe[0] : ::open("/dev/null", O_RDONLY);
    ::dup2(in_fd, STDIN_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (input) ::close(in_pipe[0]);
  bool input_sent = false, stop_sent = false;
  auto maybe_send_input = [&] {
    if (!input || input_sent || result.out.find(input->after) == std::string::npos) return;
    ssize_t n = ::write(in_pipe[1], input->data.data(), input->data.size());
    (void)n;
    input_sent = true;  // keep the pipe open: EOF would end forwarding, not the test
  };
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  maybe_send_input();
  auto deadline = start + std::chrono::duration<double>(timeout_seconds);
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !result.timed_out) {
      // SIGTERM first: ember then says where the guest was. SIGKILL if that takes long.
      result.timed_out = true;
      ::kill(pid, SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      continue;
    }
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 1000))) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
        maybe_send_input();
        if (!sigterm_after.empty() && !stop_sent && result.out.find(sigterm_after) != std::string::npos) {
          ::kill(pid, SIGTERM);
          stop_sent = true;
        }
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (input) ::close(in_pipe[1]);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace ember::e2e
