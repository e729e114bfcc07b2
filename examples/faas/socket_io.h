// Blocking socket I/O with deadlines, for the daemon's clients of ember's API socket and of
// the guest agent (through ember's hybrid-vsock socket). Errors throw ember::Error.
#pragma once

#include <chrono>
#include <string>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember::faas {

using Deadline = std::chrono::steady_clock::time_point;

// A deadline passed (told apart from other failures: the daemon answers 504 rather than 502).
class Timeout : public Error {
 public:
  using Error::Error;
};

// Connects a Unix stream socket; throws Error naming the path.
UniqueFd connect_unix(const std::string& path);
void write_all(int fd, const void* data, size_t len, Deadline deadline, const char* what);
// Reads exactly len bytes; throws on EOF or at the deadline ("<what>: ...").
void read_exact(int fd, void* data, size_t len, Deadline deadline, const char* what);
// One read of at most len bytes: 0 at EOF.
size_t read_some(int fd, void* data, size_t len, Deadline deadline, const char* what);

}  // namespace ember::faas
