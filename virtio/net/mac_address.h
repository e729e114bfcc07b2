// MAC addresses for guest interfaces that have none in the config.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace ember::virtio::net {

using MacAddress = std::array<uint8_t, 6>;

// A locally administered unicast address (IEEE 802: bit 1 of the first byte set,
// bit 0 clear): random per VM (per process), with `index` in the last byte so
// interfaces of one VM always differ.
MacAddress generate_mac(uint8_t index);
// "06:12:34:56:78:00".
std::string format_mac(const MacAddress& mac);

}  // namespace ember::virtio::net
