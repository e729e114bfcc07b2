// What the fuzz targets share: a cursor that hands out values from the input
// (zeros once it runs dry, so every input means something), silenced logs, and
// scratch files that leave nothing behind (memfds, per-process socket paths).
#pragma once

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "base/memory/guest_memory.h"
#include "base/util/log.h"
#include "base/util/unique_fd.h"

namespace ember::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ == size_; }
  size_t remaining() const { return size_ - at_; }

  // The next sizeof(T) bytes, zero-padded past the end.
  template <typename T>
  T take() {
    T value{};
    size_t n = std::min(sizeof(T), remaining());
    std::memcpy(&value, data_ + at_, n);
    at_ += n;
    return value;
  }
  uint8_t u8() { return take<uint8_t>(); }
  uint16_t u16() { return take<uint16_t>(); }
  uint32_t u32() { return take<uint32_t>(); }
  uint64_t u64() { return take<uint64_t>(); }
  // Up to `n` bytes (fewer at the end).
  std::span<const uint8_t> bytes(size_t n) {
    n = std::min(n, remaining());
    std::span<const uint8_t> out(data_ + at_, n);
    at_ += n;
    return out;
  }
  std::span<const uint8_t> rest() { return bytes(remaining()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// Hostile inputs make ember warn on every iteration: keep the fuzzer's output readable.
// Guest RAM back to all zeros for the next input. GuestMemory maps it private and anonymous,
// so dropping the pages zeroes them and costs only the pages the last input touched; a
// memset wrote every byte of it, most of the slower targets' time per input.
inline void zero_guest_memory(GuestMemory& memory) {
  if (::madvise(memory.span(0, memory.size(), "guest memory").data(), memory.size(), MADV_DONTNEED) != 0) {
    std::abort();
  }
}

inline void quiet_logs() {
  static const bool done = [] {
    log::set_level(log::Level::Off);
    return true;
  }();
  (void)done;
}

// A file holding `bytes` that lives only in memory, opened through its
// /proc/self/fd path as ember opens a drive or a kernel named in a config.
struct MemFile {
  UniqueFd fd{::memfd_create("ember-fuzz", MFD_CLOEXEC)};
  explicit MemFile(std::span<const uint8_t> bytes, size_t min_size = 0) {
    if (!fd.valid()) std::abort();
    if (!bytes.empty() && ::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      std::abort();
    }
    if (bytes.size() < min_size && ::ftruncate(fd.get(), static_cast<off_t>(min_size)) != 0) std::abort();
  }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd.get()); }
};

// A socket path private to this process, under $TMPDIR.
inline std::string temp_socket_path(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp ? tmp : "/tmp") + "/ember-fuzz-" + std::to_string(::getpid()) + "-" + name;
}

// A non-blocking Unix stream socket listening at `path`, or connected to it (invalid
// when nobody listens there).
inline UniqueFd unix_listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd.get(), 16) != 0) std::abort();
  return fd;
}
inline UniqueFd unix_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return UniqueFd();
  return fd;
}
inline UniqueFd unix_accept(int listener) {
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
}
// Whatever the peer takes of `bytes` without waiting.
inline void send_some(int fd, std::span<const uint8_t> bytes) {
  ssize_t ignored = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
}
inline void drain(int fd) {
  uint8_t buf[4096];
  while (::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

}  // namespace ember::fuzz
