// libFuzzer target: virtio-net headers (virtio 1.2 section 5.1.6) from a hostile
// driver (TX) and a tap (RX), under any set of acked features. A header accepted
// must satisfy the spec's rules for those features; what ember hands the driver
// must only use what it accepted.
#include <linux/if_tun.h>

#include <cstdlib>

#include "tests/fuzz/fuzz_input.h"
#include "virtio/net/net_header.h"
#include "virtio/spec.h"

namespace {

using namespace ember::virtio;
using namespace ember::virtio::net;

void check(bool ok) {
  if (!ok) std::abort();
}

// The GSO rules shared by both directions, for the features of one direction.
void check_gso(const NetHeader& h, bool tso4, bool tso6, bool ecn) {
  uint8_t type = h.gso_type & ~kGsoEcn;
  check(type == kGsoNone || type == kGsoTcpV4 || type == kGsoTcpV6);  // never UFO
  check(type != kGsoTcpV4 || tso4);
  check(type != kGsoTcpV6 || tso6);
  check(!(h.gso_type & kGsoEcn) || (ecn && type != kGsoNone));
}

void fuzz_tx(const NetHeader& h, uint64_t acked) {
  if (check_tx_header(h, acked) != nullptr) return;
  auto has = [acked](uint32_t f) { return (acked & bit(f)) != 0; };
  check((h.flags & ~(kHeaderNeedsCsum | kHeaderDataValid)) == 0);
  check(!(h.flags & kHeaderNeedsCsum) || has(kFeatureCsum));
  check_gso(h, has(kFeatureHostTso4), has(kFeatureHostTso6), has(kFeatureHostEcn));
  check(h.gso_type == kGsoNone || h.gso_size != 0);
}

void fuzz_rx(const NetHeader& from_tap, uint64_t acked, uint16_t num_buffers) {
  NetHeader h = from_tap;
  if (prepare_rx_header(h, acked, num_buffers) != nullptr) return;
  auto has = [acked](uint32_t f) { return (acked & bit(f)) != 0; };
  check(h.num_buffers == num_buffers);
  check(has(kFeatureGuestCsum) || h.flags == 0);
  check(!has(kFeatureGuestCsum) || h.flags == from_tap.flags);
  check_gso(h, has(kFeatureGuestTso4), has(kFeatureGuestTso6), has(kFeatureGuestEcn));
  check(h.gso_type == from_tap.gso_type && h.gso_size == from_tap.gso_size && h.hdr_len == from_tap.hdr_len &&
        h.csum_start == from_tap.csum_start && h.csum_offset == from_tap.csum_offset);
}

// The tap is told to deliver only what the driver accepts.
void fuzz_offloads(uint64_t acked) {
  unsigned flags = tap_offload_flags(acked);
  auto has = [acked](uint32_t f) { return (acked & bit(f)) != 0; };
  check((flags & ~(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)) == 0);
  check(!(flags & TUN_F_CSUM) || has(kFeatureGuestCsum));
  check(!(flags & (TUN_F_TSO4 | TUN_F_TSO6)) || (flags & TUN_F_CSUM));
  check(!(flags & TUN_F_TSO4) || has(kFeatureGuestTso4));
  check(!(flags & TUN_F_TSO6) || has(kFeatureGuestTso6));
  check(!(flags & TUN_F_TSO_ECN) || (has(kFeatureGuestEcn) && (flags & (TUN_F_TSO4 | TUN_F_TSO6))));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::FuzzInput in(data, size);
  // Acked features: a subset of what ember offers, or anything (a driver that lies).
  uint8_t how = in.u8();
  uint64_t acked = in.u64();
  if (!(how & 1)) acked &= offered_features() | bit(kFeatureVersion1);
  fuzz_offloads(acked);
  while (!in.empty()) {
    NetHeader h = in.take<NetHeader>();
    fuzz_tx(h, acked);
    fuzz_rx(h, acked, in.u16());
  }
  return 0;
}
