#include "virtio/net/net_header.h"

#include <linux/if_tun.h>

#include "virtio/spec.h"

namespace ember::virtio::net {

uint64_t offered_features() {
  return bit(kFeatureCsum) | bit(kFeatureGuestCsum) | bit(kFeatureMac) | bit(kFeatureGuestTso4) |
         bit(kFeatureGuestTso6) | bit(kFeatureGuestEcn) | bit(kFeatureHostTso4) | bit(kFeatureHostTso6) |
         bit(kFeatureHostEcn) | bit(kFeatureMrgRxbuf);
}

unsigned tap_offload_flags(uint64_t acked) {
  auto has = [acked](uint32_t feature) { return (acked & bit(feature)) != 0; };
  // The tap ignores TSO bits without CSUM: segments need checksums filled in.
  if (!has(kFeatureGuestCsum)) return 0;
  unsigned flags = TUN_F_CSUM;
  if (has(kFeatureGuestTso4)) flags |= TUN_F_TSO4;
  if (has(kFeatureGuestTso6)) flags |= TUN_F_TSO6;
  if ((flags & (TUN_F_TSO4 | TUN_F_TSO6)) && has(kFeatureGuestEcn)) flags |= TUN_F_TSO_ECN;
  return flags;
}

namespace {

// Whether `gso_type` is one the features in `tso4`, `tso6` and `ecn` allow.
bool gso_allowed(uint8_t gso_type, bool tso4, bool tso6, bool ecn) {
  if ((gso_type & kGsoEcn) && !ecn) return false;
  switch (gso_type & ~kGsoEcn) {
    case kGsoNone: return (gso_type & kGsoEcn) == 0;
    case kGsoTcpV4: return tso4;
    case kGsoTcpV6: return tso6;
    default: return false;  // UDP (UFO) and anything unknown: never offered
  }
}

}  // namespace

const char* check_tx_header(const NetHeader& header, uint64_t acked) {
  auto has = [acked](uint32_t feature) { return (acked & bit(feature)) != 0; };
  if (header.flags & ~(kHeaderNeedsCsum | kHeaderDataValid)) return "unknown flags";
  if ((header.flags & kHeaderNeedsCsum) && !has(kFeatureCsum)) return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
  if (!gso_allowed(header.gso_type, has(kFeatureHostTso4), has(kFeatureHostTso6), has(kFeatureHostEcn))) {
    return "gso_type not negotiated";
  }
  if (header.gso_type != kGsoNone && header.gso_size == 0) return "GSO with gso_size 0";
  return nullptr;
}

const char* prepare_rx_header(NetHeader& header, uint64_t acked, uint16_t num_buffers) {
  auto has = [acked](uint32_t feature) { return (acked & bit(feature)) != 0; };
  if (!gso_allowed(header.gso_type, has(kFeatureGuestTso4), has(kFeatureGuestTso6), has(kFeatureGuestEcn))) {
    return "the tap delivered GSO the driver did not accept";
  }
  if (!has(kFeatureGuestCsum)) {
    if (header.flags & kHeaderNeedsCsum) return "the tap delivered a partial checksum the driver did not accept";
    header.flags = 0;
  }
  header.num_buffers = num_buffers;
  return nullptr;
}

}  // namespace ember::virtio::net
