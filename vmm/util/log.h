// Minimal leveled logging to stderr: "[ember LEVEL] message".
#pragma once

#include <string>

namespace ember::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_level(Level level);
Level level();
bool parse_level(const std::string& text, Level& out);
void write(Level level, const std::string& message);

inline void error(const std::string& m) { write(Level::Error, m); }
inline void warn(const std::string& m) { write(Level::Warn, m); }
inline void info(const std::string& m) { write(Level::Info, m); }
inline void debug(const std::string& m) {
  if (level() >= Level::Debug) write(Level::Debug, m);
}

}  // namespace ember::log
