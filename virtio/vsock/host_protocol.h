// The host side of hybrid vsock: a process connected to the VMM's Unix socket
// sends "CONNECT <port>\n" and is answered "OK <host_port>\n" once the guest
// accepts. This parses the request line one byte at a time, so a line split over
// several reads works and nothing after the newline is consumed.
#pragma once

#include <cstdint>
#include <string>

namespace ember::virtio::vsock {

class ConnectLineParser {
 public:
  enum class Status { NeedMore, Done, Invalid };
  static constexpr size_t kMaxLine = 32;  // "CONNECT 4294967295\r\n" is 20

  Status feed(char c);
  uint32_t port() const { return static_cast<uint32_t>(port_); }
  // Why the line was refused (Invalid).
  const std::string& error() const { return error_; }

 private:
  Status invalid(std::string why);

  std::string line_;
  uint64_t port_ = 0;
  bool done_ = false;
  std::string error_;
};

std::string ok_line(uint32_t host_port);

}  // namespace ember::virtio::vsock
