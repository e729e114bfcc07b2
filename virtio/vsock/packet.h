// virtio-vsock packet headers (virtio 1.2 section 5.10.6): the wire layout, the
// constants, and the checks a packet from the guest's tx queue must pass.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/util/result.h"

namespace ember::virtio::vsock {

constexpr uint32_t kDeviceTypeVsock = 19;
constexpr uint64_t kHostCid = 2;  // VMADDR_CID_HOST

// 5.10.2 queues.
constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;
constexpr uint16_t kEventQueue = 2;
// 5.10.6.6 Device Events: the only event id.
constexpr uint32_t kEventTransportReset = 0;

// 5.10.6 struct virtio_vsock_hdr, little-endian on the wire (x86 hosts only).
struct __attribute__((packed)) PacketHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(PacketHeader) == 44);
constexpr size_t kHeaderSize = sizeof(PacketHeader);

constexpr uint16_t kTypeStream = 1;

enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};

// SHUTDOWN flags: the sender will receive (RCV) / send (SEND) no more data.
constexpr uint32_t kShutdownRcv = 1;
constexpr uint32_t kShutdownSend = 2;
constexpr uint32_t kShutdownBoth = kShutdownRcv | kShutdownSend;

// The largest payload one packet may carry, either way (Linux uses the same).
constexpr uint32_t kMaxPayload = 64 * 1024;

// Why a packet from the guest is refused.
enum class PacketError {
  TooShort,       // fewer readable bytes than a header
  LenMismatch,    // `len` larger than the payload the chain carries
  LenTooLarge,    // `len` above kMaxPayload
  PayloadNotRw,   // a control packet with a payload
  WrongSrcCid,    // not the guest's CID
  WrongDstCid,    // not the host
  BadType,        // not a stream packet
  UnknownOp,
};
const char* describe(PacketError error);

// Whether the guest should get an RST for a packet with this error (it names a
// connection we can answer), or the packet is just dropped (it cannot be trusted
// to name anything: truncated, or addressed from/to a CID that is not this link).
bool answer_with_rst(PacketError error);

// Checks a header from the tx queue. `payload_bytes` is how many readable bytes
// follow the header in the chain.
Result<void, PacketError> validate_tx(const PacketHeader& header, uint64_t guest_cid, size_t payload_bytes);

// A header from the host to the guest, with our side's credit filled in later.
PacketHeader make_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op,
                         uint32_t flags = 0, uint32_t len = 0);

}  // namespace ember::virtio::vsock
