#include "virtio/vsock/host_protocol.h"

#include <string_view>

namespace ember::virtio::vsock {

namespace {
constexpr std::string_view kPrefix = "CONNECT ";
}

ConnectLineParser::Status ConnectLineParser::invalid(std::string why) {
  error_ = std::move(why);
  return Status::Invalid;
}

ConnectLineParser::Status ConnectLineParser::feed(char c) {
  if (done_) return Status::Done;
  if (!error_.empty()) return Status::Invalid;
  if (c != '\n') {
    if (line_.size() >= kMaxLine) return invalid("request line longer than " + std::to_string(kMaxLine) + " bytes");
    line_.push_back(c);
    size_t n = line_.size();
    if (n <= kPrefix.size()) {
      if (line_.back() != kPrefix[n - 1]) return invalid("request does not start with \"CONNECT \"");
    }
    return Status::NeedMore;
  }
  std::string_view digits(line_);
  if (!digits.empty() && digits.back() == '\r') digits.remove_suffix(1);
  if (digits.size() < kPrefix.size()) return invalid("request does not start with \"CONNECT \"");
  digits.remove_prefix(kPrefix.size());
  if (digits.empty()) return invalid("CONNECT without a port");
  if (digits.size() > 10) return invalid("port out of range");
  port_ = 0;
  for (char d : digits) {
    if (d < '0' || d > '9') return invalid("port is not a decimal number");
    port_ = port_ * 10 + static_cast<uint64_t>(d - '0');
  }
  if (port_ >= 0xffffffffull) return invalid("port out of range (4294967295 is VMADDR_PORT_ANY)");
  done_ = true;
  return Status::Done;
}

std::string ok_line(uint32_t host_port) { return "OK " + std::to_string(host_port) + "\n"; }

}  // namespace ember::virtio::vsock
