// Error type for setup-time failures, and helpers to build messages with context.
// Deliberately without iostreams: in a static binary the first stream built initialises
// every locale facet, which kept ~0.5 MiB more of ember's code resident (perf/boot-latency).
#pragma once

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace ember {

// Thrown during setup (config, loading, KVM creation); caught once in main.
// Hot paths (vCPU exits, device I/O) never throw.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <typename T>
void append(std::string& out, const T& part) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, char>) {
    out.push_back(part);
  } else if constexpr (std::is_integral_v<U>) {  // bool does not compile: say what it means
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof(buf), part);
    out.append(buf, r.ptr);
  } else {
    out += std::string_view(part);  // strings, string views, C strings
  }
}

}  // namespace detail

// Concatenates strings, characters and integers (decimal) into one message.
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (detail::append(out, parts), ...);
  return out;
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(cat(parts...));
}

// "0x1f00" style rendering for addresses and sizes in messages.
inline std::string hex(uint64_t value) {
  char buf[19] = "0x";
  auto r = std::to_chars(buf + 2, buf + sizeof(buf), value, 16);
  return std::string(buf, r.ptr);
}

inline std::string errno_text(int err = errno) { return std::strerror(err); }

}  // namespace ember
