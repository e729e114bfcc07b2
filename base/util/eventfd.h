// Non-blocking eventfds: the wake-up, notification and interrupt signal used
// between ember's threads and with KVM (ioeventfd, irqfd).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember {

// Throws Error naming what the eventfd is for.
inline UniqueFd make_eventfd(const std::string& what) {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) fail("eventfd for ", what, ": ", errno_text());
  return fd;
}

// Adds 1 to the counter. Never throws: used on hot paths. It can only fail if the
// counter would overflow, and then the reader is already due to wake.
inline void signal_eventfd(int fd) {
  uint64_t one = 1;
  ssize_t ignored = ::write(fd, &one, sizeof(one));
  (void)ignored;
}

}  // namespace ember
