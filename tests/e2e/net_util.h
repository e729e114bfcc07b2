// The host side of end-to-end network tests: a network namespace of the test's own
// with a tap in it, and a TCP listener on the host's address there.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e::util {

inline constexpr const char* kHostIp = "169.254.10.1";
inline constexpr const char* kGuestIp = "169.254.10.2";
inline constexpr uint16_t kUploadPort = 5001;    // guest -> host
inline constexpr uint16_t kDownloadPort = 5002;  // host -> guest

// Moves the calling thread (and what it starts afterwards) into a fresh network
// namespace holding one tap; restores the original namespace on destruction.
class NetNamespace {
 public:
  explicit NetNamespace(const std::string& tap) {
    EXPECT_TRUE(host_tools({{"ip", "iproute2"}}));
    original_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    EXPECT_GE(original_, 0);
    EXPECT_EQ(::unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): " << std::strerror(errno);
    if (!tap.empty()) {
      sh("ip link set lo up && ip tuntap add dev " + tap + " mode tap && ip addr add " + kHostIp + "/24 dev " + tap +
         " && ip link set " + tap + " up");
    }
  }
  ~NetNamespace() {
    if (original_ >= 0) {
      EXPECT_EQ(::setns(original_, CLONE_NEWNET), 0);
      ::close(original_);
    }
  }

 private:
  int original_ = -1;
};

inline int tcp_listen(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, kHostIp, &a.sin_addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(fd, 1), 0);
  return fd;
}

}  // namespace ember::e2e::util
