// Whole-file reads and complete writes with POSIX calls (no iostreams, see error.h).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember {

// The whole file; throws Error naming `what` and the path.
inline std::string read_file(const std::string& path, const char* what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) fail("cannot read ", what, " '", path, "': ", errno_text());
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read ", what, " '", path, "': ", errno_text());
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

// Opens a file ember reads or writes as data (kernel, initrd, drive) without waiting on
// it: open() of a FIFO that nobody writes would block forever (and SIGTERM could not end
// ember, whose threads take it through a signalfd). O_NONBLOCK is cleared again once `st`
// shows a regular file or block device: io_uring answers EAGAIN on non-blocking files
// instead of waiting for the disk. The caller refuses the other types by `st`. An invalid
// fd (errno set) when open or fstat fails.
inline UniqueFd open_data_file(const std::string& path, int flags, struct stat& st) {
  UniqueFd fd(::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return fd;
  if (::fstat(fd.get(), &st) < 0) return UniqueFd();
  if ((S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) && ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return UniqueFd();
  }
  return fd;
}

// "a FIFO", "a directory", ...: for messages refusing a file of the wrong type.
inline const char* file_type_name(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Writes all of `data`, retrying short writes; false (errno set) on failure.
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Writes all of `len` bytes at `offset`, retrying short writes; false (errno set) on failure.
inline bool pwrite_all(int fd, const void* data, size_t len, uint64_t offset) {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ENOSPC;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace ember
