#include "vmm/util/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <mutex>

#include "vmm/util/error.h"
#include "vmm/util/output_file.h"
#include "vmm/util/unique_fd.h"

namespace ember::log {
namespace {

std::atomic<Level> g_level{Level::Warn};
// The output and format change rarely (PUT /logger); a mutex keeps them consistent.
std::mutex g_mu;
UniqueFd g_file;  // invalid: stderr
LoggerConfig g_config{"", Level::Warn, true, false};

const char* short_name(Level level) {
  switch (level) {
    case Level::Error: return "ERROR";
    case Level::Warn: return "WARN";
    case Level::Info: return "INFO";
    case Level::Debug: return "DEBUG";
    case Level::Off: return "OFF";
  }
  return "?";
}

std::string timestamp() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm parts{};
  gmtime_r(&ts.tv_sec, &parts);
  char text[64];
  size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &parts);
  snprintf(text + n, sizeof(text) - n, ".%06ldZ", ts.tv_nsec / 1000);
  return text;
}

const std::string& thread_name() {
  thread_local std::string name = [] {
    char buf[16] = {};
    if (pthread_getname_np(pthread_self(), buf, sizeof(buf)) != 0 || !buf[0]) return std::string("?");
    return std::string(buf);
  }();
  return name;
}

}  // namespace

void set_level(Level level) {
  g_level = level;
  std::lock_guard lock(g_mu);
  g_config.level = level;
}
Level level() { return g_level; }

bool parse_level(const std::string& text, Level& out) {
  if (text == "error" || text == "Error") out = Level::Error;
  else if (text == "warn" || text == "Warning" || text == "warning") out = Level::Warn;
  else if (text == "info" || text == "Info") out = Level::Info;
  else if (text == "debug" || text == "Debug" || text == "trace" || text == "Trace") out = Level::Debug;
  else if (text == "off" || text == "Off") out = Level::Off;
  else return false;
  return true;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::Error: return "Error";
    case Level::Warn: return "Warning";
    case Level::Info: return "Info";
    case Level::Debug: return "Debug";
    case Level::Off: return "Off";
  }
  return "?";
}

void configure(const LoggerConfig& config) {
  UniqueFd file;
  if (!config.log_path.empty()) {
    file = open_output_file(config.log_path, "log_path");
  }
  std::lock_guard lock(g_mu);
  g_file = std::move(file);
  g_config.log_path = config.log_path;
  g_config.show_level = config.show_level;
  g_config.show_log_origin = config.show_log_origin;
  if (config.level) {
    g_config.level = config.level;
    g_level = *config.level;
  }
}

LoggerConfig current_config() {
  std::lock_guard lock(g_mu);
  return g_config;
}

void write(Level lvl, const std::string& message, const char* file, int file_line) {
  if (lvl > g_level.load() || lvl == Level::Off) return;
  std::string line = timestamp() + " [ember:" + thread_name() + "] ";
  std::lock_guard lock(g_mu);
  if (g_config.show_level) line += std::string(short_name(lvl)) + " ";
  if (g_config.show_log_origin) line += cat(file, ":", file_line, " ");
  line += message;
  line += "\n";
  // One write() per line so lines from different threads do not interleave. A full
  // FIFO drops the line rather than stalling a vCPU.
  ssize_t ignored = ::write(g_file.valid() ? g_file.get() : STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace ember::log
