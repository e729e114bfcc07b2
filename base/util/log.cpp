#include "base/util/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <ctime>
#include <mutex>

#include "base/util/error.h"
#include "base/util/output_file.h"
#include "base/util/thread.h"
#include "base/util/unique_fd.h"

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
  return utc_timestamp(ts.tv_sec, ts.tv_nsec);
}

}  // namespace

// By arithmetic (the proleptic Gregorian calendar in 400-year eras): gmtime_r reads
// /etc/localtime on its first call, which a thread under its seccomp filter may not open.
std::string utc_timestamp(int64_t epoch_seconds, long nanoseconds) {
  int64_t days = epoch_seconds / 86400, secs = epoch_seconds % 86400;
  days += 719468;  // from 1970-01-01 to 0000-03-01
  int64_t era = days / 146097, doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  char text[80];  // room for any int64 fields (FORTIFY's checked snprintf warns otherwise)
  snprintf(text, sizeof(text), "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06ldZ", static_cast<long long>(year),
           static_cast<long long>(month), static_cast<long long>(day), static_cast<long long>(secs / 3600),
           static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60), nanoseconds / 1000);
  return text;
}

void set_level(Level level) {
  g_level = level;
  std::lock_guard lock(g_mu);
  g_config.level = level;
}
Level level() { return g_level; }

// Any letter case, as Firecracker's API ("DEBUG", "debug", "Debug"); "warn" is ember's
// spelling for the command line.
bool parse_level(const std::string& text, Level& out) {
  std::string t = text;
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "error") out = Level::Error;
  else if (t == "warn" || t == "warning") out = Level::Warn;
  else if (t == "info") out = Level::Info;
  else if (t == "debug" || t == "trace") out = Level::Debug;
  else if (t == "off") out = Level::Off;
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
  std::string line = timestamp() + " [ember:" + current_thread_name() + "] ";
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
