// virtio-net's feature bits and the per-packet header (virtio 1.2 section 5.1.6):
// which offloads ember offers, what the tap must be told for the ones the driver
// acked, and the checks on headers in both directions. Pure logic, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ember::virtio::net {

// 5.1.3 Feature bits.
constexpr uint32_t kFeatureCsum = 0;        // driver sends partially checksummed packets
constexpr uint32_t kFeatureGuestCsum = 1;   // driver accepts partially checksummed packets
constexpr uint32_t kFeatureMac = 5;         // config space holds the MAC
constexpr uint32_t kFeatureGuestTso4 = 7;
constexpr uint32_t kFeatureGuestTso6 = 8;
constexpr uint32_t kFeatureGuestEcn = 9;
constexpr uint32_t kFeatureHostTso4 = 11;
constexpr uint32_t kFeatureHostTso6 = 12;
constexpr uint32_t kFeatureHostEcn = 13;
constexpr uint32_t kFeatureMrgRxbuf = 15;

// 5.1.6 struct virtio_net_hdr: with VERSION_1 (always negotiated by ember's
// transport) num_buffers is always present, so the header is 12 bytes.
struct NetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(NetHeader) == 12);
constexpr size_t kNetHeaderSize = sizeof(NetHeader);
constexpr size_t kNumBuffersOffset = 10;

constexpr uint8_t kHeaderNeedsCsum = 1;
constexpr uint8_t kHeaderDataValid = 2;
constexpr uint8_t kGsoNone = 0;
constexpr uint8_t kGsoTcpV4 = 1;
constexpr uint8_t kGsoUdp = 3;
constexpr uint8_t kGsoTcpV6 = 4;
constexpr uint8_t kGsoEcn = 0x80;

// The largest frame a driver may send or receive with TSO (5.1.6.3: 65550 bytes
// after the header), so the largest buffer a packet needs.
constexpr size_t kMaxFrame = 65550;
constexpr size_t kMaxPacket = kNetHeaderSize + kMaxFrame;

// Device-specific features ember offers.
uint64_t offered_features();
// TUNSETOFFLOAD flags matching the GUEST_* features the driver acked: the tap may
// hand ember only what the driver accepts.
unsigned tap_offload_flags(uint64_t acked);
// Why a TX header is invalid for the acked features (e.g. TSO the driver did not
// negotiate), or nullptr. The tap checks the rest (lengths against the packet).
const char* check_tx_header(const NetHeader& header, uint64_t acked);
// Makes a header read from the tap fit the acked features before the driver sees
// it (5.1.6.3.1): flags cleared without GUEST_CSUM, num_buffers filled in. Returns
// why the packet cannot be given to this driver (GSO it did not accept), or nullptr.
const char* prepare_rx_header(NetHeader& header, uint64_t acked, uint16_t num_buffers);

}  // namespace ember::virtio::net
