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

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_seconds);

}  // namespace ember::e2e
