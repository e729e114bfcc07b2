#include "virtio/net/mac_address.h"

#include <sys/random.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace ember::virtio::net {

namespace {

std::array<uint8_t, 4> per_vm_bytes() {
  std::array<uint8_t, 4> bytes{};
  if (::getrandom(bytes.data(), bytes.size(), GRND_NONBLOCK) != static_cast<ssize_t>(bytes.size())) {
    // No entropy yet (early boot): the pid and the clock still differ between VMs.
    uint64_t mix = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ull ^
                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(mix >> (8 * i));
  }
  return bytes;
}

}  // namespace

MacAddress generate_mac(uint8_t index) {
  static const std::array<uint8_t, 4> vm = per_vm_bytes();
  return {0x06, vm[0], vm[1], vm[2], vm[3], index};
}

std::string format_mac(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return text;
}

}  // namespace ember::virtio::net
