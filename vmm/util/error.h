// Error type for setup-time failures, and helpers to build messages with context.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

namespace ember {

// Thrown during setup (config, loading, KVM creation); caught once in main.
// Hot paths (vCPU exits, device I/O) never throw.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(cat(parts...));
}

// "0x1f00" style rendering for addresses and sizes in messages.
inline std::string hex(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

inline std::string errno_text(int err = errno) { return std::strerror(err); }

}  // namespace ember
