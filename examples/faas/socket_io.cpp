#include "examples/faas/socket_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "base/util/error.h"

namespace ember::faas {

namespace {

void wait_for(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw Timeout(cat(what, ": timed out"));
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, int(std::min<long>(left.count(), 1000)) + 1);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) fail(what, ": poll: ", std::strerror(errno));
  }
}

}  // namespace

UniqueFd connect_unix(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) fail(path, ": socket path too long");
  std::memcpy(a.sun_path, path.data(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) fail("socket: ", std::strerror(errno));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    fail("connecting to ", path, ": ", std::strerror(errno));
  }
  return fd;
}

void write_all(int fd, const void* data, size_t len, Deadline deadline, const char* what) {
  const char* p = static_cast<const char*>(data);
  while (len) {
    wait_for(fd, POLLOUT, deadline, what);
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail(what, ": ", std::strerror(errno));
    p += n;
    len -= size_t(n);
  }
}

size_t read_some(int fd, void* data, size_t len, Deadline deadline, const char* what) {
  for (;;) {
    wait_for(fd, POLLIN, deadline, what);
    ssize_t n = recv(fd, data, len, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail(what, ": ", std::strerror(errno));
    return size_t(n);
  }
}

void read_exact(int fd, void* data, size_t len, Deadline deadline, const char* what) {
  char* p = static_cast<char*>(data);
  while (len) {
    size_t n = read_some(fd, p, len, deadline, what);
    if (n == 0) fail(what, ": connection closed");
    p += n;
    len -= n;
  }
}

}  // namespace ember::faas
