// A virtio-blk request (virtio 1.2 section 5.2.6) parsed once from its chain:
// the header, the data part and the status byte, or why it is malformed.
#pragma once

#include <cstdint>

#include "base/util/result.h"
#include "virtio/descriptor_chain.h"
#include "virtio/queue.h"

namespace ember::virtio::blk {

// 5.2.3 Feature bits.
constexpr uint32_t kFeatureSegMax = 2;
constexpr uint32_t kFeatureRo = 5;
constexpr uint32_t kFeatureBlkSize = 6;
constexpr uint32_t kFeatureFlush = 9;
constexpr uint32_t kFeatureDiscard = 13;
constexpr uint32_t kFeatureWriteZeroes = 14;

// 5.2.6 Request types and status values.
constexpr uint32_t kTypeIn = 0;
constexpr uint32_t kTypeOut = 1;
constexpr uint32_t kTypeFlush = 4;
constexpr uint32_t kTypeGetId = 8;
constexpr uint32_t kTypeDiscard = 11;
constexpr uint32_t kTypeWriteZeroes = 13;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupported = 2;

constexpr uint64_t kSectorSize = 512;
constexpr size_t kIdBytes = 20;  // VIRTIO_BLK_ID_BYTES

struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// 5.2.6: the data of DISCARD and WRITE_ZEROES, one or more of these.
struct DiscardWriteZeroesSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardWriteZeroesSegment) == 16);
constexpr uint32_t kSegmentFlagUnmap = 1;  // VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP

// What ember advertises for both (config space, 5.2.4): one segment per request, since
// one fallocate() is one range; at most 1 GiB each, so that one request cannot hold the
// sync engine's event thread in the kernel for long.
constexpr uint32_t kMaxDiscardSegments = 1;
constexpr uint32_t kMaxDiscardSectors = (1u << 30) / 512;
constexpr uint32_t kDiscardSectorAlignment = 8;  // 4 KiB: the host file system's block, a hint

struct BlockRequest {
  uint32_t type = 0;
  uint64_t sector = 0;
  ChainReader write_payload;  // OUT: guest bytes to write (readable part after the header)
  ChainWriter read_buffer;    // IN, GET_ID: where the device puts data (writable part before status)
  ChainWriter status;         // the last writable byte
  // Why the chain is not a well-formed request, or null. Such a request is still answered
  // (IOERR) through its status byte when it has one.
  const char* malformed = nullptr;

  bool has_status() const { return status.remaining() == 1; }
  // Writes the status byte (if there is one); returns the used length to report.
  uint32_t finish(uint8_t status_value, uint32_t data_written);
};

BlockRequest parse_block_request(const DescriptorChain& chain);

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// For IN/OUT: the byte range on the disk, checked against `capacity_sectors`; refused (with
// why) when the request is not whole sectors or leaves the disk.
Result<ByteRange, const char*> request_range(const BlockRequest& request, uint64_t capacity_sectors);

struct DiscardRange {
  ByteRange bytes;
  bool unmap = false;  // the guest allows deallocating (WRITE_ZEROES' flag)
};
// A request refused: the status to answer and why.
struct BlockRefusal {
  uint8_t status;
  const char* why;
};

// For DISCARD and WRITE_ZEROES: the one segment of the data, checked (count, flags, range
// against `capacity_sectors`, size against kMaxDiscardSectors). Refused with IOERR, or
// UNSUPP for flags the spec refuses (5.2.6.2).
Result<DiscardRange, BlockRefusal> discard_range(const BlockRequest& request, uint64_t capacity_sectors);

}  // namespace ember::virtio::blk
