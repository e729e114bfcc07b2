#include "virtio/vsock/unix_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/util/error.h"

namespace ember::virtio::vsock {

namespace {

bool make_address(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

UniqueFd stream_socket() { return UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)); }

// A socket file nobody accepts on any more is stale and may be replaced.
void remove_stale(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) return;  // nothing there
  if (!S_ISSOCK(st.st_mode)) fail("vsock: uds_path '", path, "' exists and is not a socket; refusing to replace it");
  UniqueFd probe = connect_unix(path);
  if (probe.valid() || errno == EAGAIN) fail("vsock: uds_path '", path, "' is in use by a running process");
  if (errno != ECONNREFUSED) fail("vsock: cannot probe uds_path '", path, "': ", errno_text());
  if (::unlink(path.c_str()) < 0) fail("vsock: cannot remove the stale socket '", path, "': ", errno_text());
}

}  // namespace

UniqueFd listen_unix(const std::string& path, ino_t* inode) {
  sockaddr_un addr;
  if (!make_address(path, addr)) fail("vsock: uds_path '", path, "' is empty or longer than ", sizeof(addr.sun_path) - 1, " bytes");
  remove_stale(path);
  UniqueFd fd = stream_socket();
  if (!fd.valid()) fail("vsock: socket: ", errno_text());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    fail("vsock: cannot bind '", path, "': ", errno_text());
  }
  if (::listen(fd.get(), 128) < 0) fail("vsock: cannot listen on '", path, "': ", errno_text());
  struct stat st {};
  *inode = ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  return fd;
}

UniqueFd connect_unix(const std::string& path) {
  sockaddr_un addr;
  if (!make_address(path, addr)) {
    errno = ENAMETOOLONG;
    return UniqueFd();
  }
  UniqueFd fd = stream_socket();
  if (!fd.valid()) return fd;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return UniqueFd();
  return fd;
}

void unlink_if_same(const std::string& path, ino_t inode) {
  struct stat st {};
  if (inode != 0 && ::lstat(path.c_str(), &st) == 0 && st.st_ino == inode) ::unlink(path.c_str());
}

}  // namespace ember::virtio::vsock
