// Points ember's log at a file for the lifetime of the object (warnings and up), so a
// test can count what a hostile guest or client made ember write.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/util/log.h"

namespace ember::test {

// Puts ember's log configuration back (to its stream, not a file) when it goes out of scope.
class RestoreLogConfig {
 public:
  RestoreLogConfig() : saved_(log::current_config()) {}
  ~RestoreLogConfig() {
    log::LoggerConfig back = saved_;
    back.log_path.clear();
    log::configure(back);
  }
  RestoreLogConfig(const RestoreLogConfig&) = delete;
  RestoreLogConfig& operator=(const RestoreLogConfig&) = delete;

 private:
  log::LoggerConfig saved_;
};

class LogCapture {
 public:
  LogCapture() {
    const char* tmp = ::getenv("TMPDIR");
    path_ = std::filesystem::path(tmp ? tmp : "/tmp") / ("ember-log-capture-" + std::to_string(::getpid()));
    std::filesystem::remove(path_);
    log::configure({path_.string(), log::Level::Warn, false, false});
  }
  // The file goes first; restore_ (a member) then points the log back at its stream.
  ~LogCapture() { std::filesystem::remove(path_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const {
    std::ifstream in(path_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  size_t lines() const {
    std::string t = text();
    return static_cast<size_t>(std::count(t.begin(), t.end(), '\n'));
  }

 private:
  RestoreLogConfig restore_;
  std::filesystem::path path_;
};

}  // namespace ember::test
