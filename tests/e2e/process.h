// Runs a command with a deadline and captures its output, for end-to-end tests.
#pragma once

#include <string>
#include <vector>

namespace ember::e2e {

struct ProcessResult {
  int exit_code = -1;   // exit status, or 128+signal
  bool timed_out = false;
  std::string out;      // stdout
  std::string err;      // stderr
  double seconds = 0;
};

// Input for the process's stdin (a pipe), written once its stdout contains `after`
// (right away when `after` is empty). Without it stdin is /dev/null.
struct StdinScript {
  std::string data;
  std::string after;
};

// `sigterm_after`: once stdout contains it, the process gets SIGTERM (not a timeout).
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_seconds,
                          const StdinScript* input = nullptr, const std::string& sigterm_after = "");

}  // namespace ember::e2e
