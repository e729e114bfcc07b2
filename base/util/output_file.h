// Opening the log and metrics outputs: a regular file (appended, created 0600) or a FIFO.
// A FIFO is opened read-write and non-blocking, as Firecracker does: the open does not
// wait for a reader, and a full pipe drops a line instead of stalling the writer.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <string>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember {

inline UniqueFd open_output_file(const std::string& path, const char* what) {
  struct stat st{};
  bool fifo = ::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
  int flags = fifo ? O_RDWR | O_NONBLOCK | O_CLOEXEC : O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), flags, 0600));
  if (!fd.valid()) fail("cannot open ", what, " '", path, "': ", errno_text());
  return fd;
}

}  // namespace ember
