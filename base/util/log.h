// Leveled logging: one timestamped line per message, with the thread's name, to
// stderr or to the file/FIFO set by PUT /logger or --log-path.
// "2026-11-25T05:00:00.123456Z [ember:api] WARN message"
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ember::log {

// Off silences everything (Firecracker's "Off"); Debug also stands for "Trace".
enum class Level { Off = -1, Error = 0, Warn = 1, Info = 2, Debug = 3 };

// Firecracker's Logger object.
struct LoggerConfig {
  std::string log_path;        // empty: stderr
  std::optional<Level> level;  // unset: unchanged
  bool show_level = false;
  bool show_log_origin = false;  // "file:line" of the call
};

// "2026-11-25T05:00:00.123456Z" for a time at or after the epoch.
std::string utc_timestamp(int64_t epoch_seconds, long nanoseconds);

void set_level(Level level);
Level level();
// Accepts ember's names (error, warn, info, debug) and Firecracker's (Error, Warning,
// Info, Debug, Trace, Off).
bool parse_level(const std::string& text, Level& out);
const char* level_name(Level level);  // Firecracker's spelling: "Warning", ...
// Opens log_path (a file, appended, or a FIFO: base/util/output_file.h) and applies the rest. Throws Error naming the path if it cannot be opened.
void configure(const LoggerConfig& config);
LoggerConfig current_config();

// file and line are the caller's (std::source_location needs a newer clang for the fuzz build).
void write(Level level, const std::string& message, const char* file = __builtin_FILE(), int line = __builtin_LINE());

inline void error(const std::string& m, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  write(Level::Error, m, f, l);
}
inline void warn(const std::string& m, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  write(Level::Warn, m, f, l);
}
inline void info(const std::string& m, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  write(Level::Info, m, f, l);
}
inline void debug(const std::string& m, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  if (level() >= Level::Debug) write(Level::Debug, m, f, l);
}

}  // namespace ember::log
