#include "virtio/blk/block_request.h"

namespace ember::virtio::blk {

BlockRequest parse_block_request(const DescriptorChain& chain) {
  BlockRequest r;
  ChainWriter writable = chain.writer();
  // 5.2.6: the status byte is the last byte the device may write.
  if (writable.remaining() == 0) {
    r.malformed = "no device-writable status byte";
    return r;
  }
  r.status = writable.split_at(writable.remaining() - 1);
  r.read_buffer = writable;
  ChainReader readable = chain.reader();
  RequestHeader header;
  if (!readable.read_obj(header)) {
    r.malformed = "request header shorter than 16 bytes";
    return r;
  }
  r.type = header.type;
  r.sector = header.sector;
  r.write_payload = readable;
  return r;
}

uint32_t BlockRequest::finish(uint8_t status_value, uint32_t data_written) {
  if (!has_status()) return 0;
  status.write_obj(status_value);
  return data_written + 1;
}

Result<ByteRange, const char*> request_range(const BlockRequest& r, uint64_t capacity_sectors) {
  uint64_t length = r.type == kTypeOut ? r.write_payload.remaining() : r.read_buffer.remaining();
  if (length % kSectorSize != 0) return Failure{"data length is not a multiple of 512"};
  uint64_t sectors = length / kSectorSize;
  if (r.sector > capacity_sectors || sectors > capacity_sectors - r.sector) {
    return Failure{"sector range beyond the end of the disk"};
  }
  return ByteRange{r.sector * kSectorSize, length};
}

Result<DiscardRange, BlockRefusal> discard_range(const BlockRequest& r, uint64_t capacity_sectors) {
  ChainReader data = r.write_payload;  // a copy: the request keeps its reader
  uint64_t bytes = data.remaining();
  if (bytes == 0 || bytes % sizeof(DiscardWriteZeroesSegment) != 0) {
    return Failure{BlockRefusal{kStatusIoErr, "data is not a whole number of 16-byte segments"}};
  }
  if (bytes / sizeof(DiscardWriteZeroesSegment) > kMaxDiscardSegments) {
    return Failure{BlockRefusal{kStatusIoErr, "more segments than max_discard_seg / max_write_zeroes_seg (1)"}};
  }
  DiscardWriteZeroesSegment segment;
  if (!data.read_obj(segment)) return Failure{BlockRefusal{kStatusIoErr, "segment unreadable"}};
  // 5.2.6.2: UNSUPP for unknown flags, and for unmap on a discard.
  if ((segment.flags & ~kSegmentFlagUnmap) != 0 || (r.type == kTypeDiscard && segment.flags != 0)) {
    return Failure{BlockRefusal{kStatusUnsupported, "flags the request type does not take"}};
  }
  if (segment.num_sectors == 0 || segment.num_sectors > kMaxDiscardSectors) {
    return Failure{
        BlockRefusal{kStatusIoErr, "num_sectors is 0 or above max_discard_sectors / max_write_zeroes_sectors"}};
  }
  if (segment.sector > capacity_sectors || segment.num_sectors > capacity_sectors - segment.sector) {
    return Failure{BlockRefusal{kStatusIoErr, "sector range beyond the end of the disk"}};
  }
  return DiscardRange{{segment.sector * kSectorSize, uint64_t{segment.num_sectors} * kSectorSize},
                      (segment.flags & kSegmentFlagUnmap) != 0};
}

}  // namespace ember::virtio::blk
