// A host tap device opened through /dev/net/tun for virtio-net: frames carry a
// 12-byte virtio_net_hdr_v1 in both directions, and offloads follow what the
// guest's driver acked.
#pragma once

#include <string>

#include "base/util/unique_fd.h"

namespace ember::virtio::net {

// Attaches to the existing tap `name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), sets the
// header size to 12 and turns every offload off until the driver acks some.
// Throws Error naming the device when it does not exist or cannot be attached.
UniqueFd open_tap(const std::string& name);

// TUNSETOFFLOAD; returns 0 or an errno value.
int set_tap_offloads(int fd, unsigned flags);

}  // namespace ember::virtio::net
