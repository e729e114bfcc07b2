// Whole-file reads and complete writes with POSIX calls (no iostreams, see error.h).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include "vmm/util/error.h"
#include "vmm/util/unique_fd.h"

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

}  // namespace ember
