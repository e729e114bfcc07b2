#include "vmm/util/log.h"

#include <unistd.h>

#include <atomic>

namespace ember::log {
namespace {
std::atomic<Level> g_level{Level::Warn};
const char* name(Level level) {
  switch (level) {
    case Level::Error: return "ERROR";
    case Level::Warn: return "WARN";
    case Level::Info: return "INFO";
    case Level::Debug: return "DEBUG";
  }
  return "?";
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

bool parse_level(const std::string& text, Level& out) {
  if (text == "error" || text == "Error") out = Level::Error;
  else if (text == "warn" || text == "Warning" || text == "warning") out = Level::Warn;
  else if (text == "info" || text == "Info") out = Level::Info;
  else if (text == "debug" || text == "Debug") out = Level::Debug;
  else return false;
  return true;
}

void write(Level lvl, const std::string& message) {
  if (lvl > g_level.load()) return;
  // One write() per line so lines from different threads do not interleave.
  std::string line = std::string("[ember ") + name(lvl) + "] " + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace ember::log
