#include "virtio/vsock/packet.h"

namespace ember::virtio::vsock {

const char* describe(PacketError error) {
  switch (error) {
    case PacketError::TooShort: return "chain shorter than a packet header";
    case PacketError::LenMismatch: return "len larger than the payload in the chain";
    case PacketError::LenTooLarge: return "len above the 64 KiB packet limit";
    case PacketError::PayloadNotRw: return "payload on a packet that is not RW";
    case PacketError::WrongSrcCid: return "src_cid is not the guest's CID";
    case PacketError::WrongDstCid: return "dst_cid is not the host (2)";
    case PacketError::BadType: return "type is not STREAM";
    case PacketError::UnknownOp: return "unknown op";
  }
  return "unknown error";
}

bool answer_with_rst(PacketError error) {
  switch (error) {
    case PacketError::TooShort:
    case PacketError::WrongSrcCid:
    case PacketError::WrongDstCid: return false;
    default: return true;
  }
}

Result<void, PacketError> validate_tx(const PacketHeader& h, uint64_t guest_cid, size_t payload_bytes) {
  if (h.src_cid != guest_cid) return Failure{PacketError::WrongSrcCid};
  if (h.dst_cid != kHostCid) return Failure{PacketError::WrongDstCid};
  if (h.type != kTypeStream) return Failure{PacketError::BadType};
  if (h.op < kOpRequest || h.op > kOpCreditRequest) return Failure{PacketError::UnknownOp};
  if (h.len > kMaxPayload) return Failure{PacketError::LenTooLarge};
  if (h.len > payload_bytes) return Failure{PacketError::LenMismatch};
  if (h.len > 0 && h.op != kOpRw) return Failure{PacketError::PayloadNotRw};
  return {};
}

PacketHeader make_header(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op, uint32_t flags,
                         uint32_t len) {
  PacketHeader h{};
  h.src_cid = kHostCid;
  h.dst_cid = guest_cid;
  h.src_port = host_port;
  h.dst_port = guest_port;
  h.len = len;
  h.type = kTypeStream;
  h.op = op;
  h.flags = flags;
  return h;
}

}  // namespace ember::virtio::vsock
