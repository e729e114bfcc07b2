#include "virtio/blk/block_request.h"

namespace ember::virtio::blk {

BlockRequest parse_block_request(const DescriptorChain& chain) {
  BlockRequest r;
  ChainWriter writable = chain.writer();
  // 5.2.6: the status byte is the last byte the device may write.
  if (writable.remaining() == 0) {
    r.error = "no device-writable status byte";
    return r;
  }
  r.status = writable.split_at(writable.remaining() - 1);
  r.read_buffer = writable;
  ChainReader readable = chain.reader();
  RequestHeader header;
  if (!readable.read_obj(header)) {
    r.error = "request header shorter than 16 bytes";
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

bool request_range(const BlockRequest& r, uint64_t capacity_sectors, uint64_t& offset, uint64_t& length,
                   const char** why) {
  length = r.type == kTypeOut ? r.write_payload.remaining() : r.read_buffer.remaining();
  if (length % kSectorSize != 0) {
    *why = "data length is not a multiple of 512";
    return false;
  }
  uint64_t sectors = length / kSectorSize;
  if (r.sector > capacity_sectors || sectors > capacity_sectors - r.sector) {
    *why = "sector range beyond the end of the disk";
    return false;
  }
  offset = r.sector * kSectorSize;
  return true;
}

uint8_t discard_range(const BlockRequest& r, uint64_t capacity_sectors, uint64_t& offset, uint64_t& length,
                      bool& unmap, const char** why) {
  ChainReader data = r.write_payload;  // a copy: the request keeps its reader
  uint64_t bytes = data.remaining();
  if (bytes == 0 || bytes % sizeof(DiscardWriteZeroesSegment) != 0) {
    *why = "data is not a whole number of 16-byte segments";
    return kStatusIoErr;
  }
  if (bytes / sizeof(DiscardWriteZeroesSegment) > kMaxDiscardSegments) {
    *why = "more segments than max_discard_seg / max_write_zeroes_seg (1)";
    return kStatusIoErr;
  }
  DiscardWriteZeroesSegment segment;
  if (!data.read_obj(segment)) {
    *why = "segment unreadable";
    return kStatusIoErr;
  }
  // 5.2.6.2: UNSUPP for unknown flags, and for unmap on a discard.
  if ((segment.flags & ~kSegmentFlagUnmap) != 0 || (r.type == kTypeDiscard && segment.flags != 0)) {
    *why = "flags the request type does not take";
    return kStatusUnsupported;
  }
  if (segment.num_sectors == 0 || segment.num_sectors > kMaxDiscardSectors) {
    *why = "num_sectors is 0 or above max_discard_sectors / max_write_zeroes_sectors";
    return kStatusIoErr;
  }
  if (segment.sector > capacity_sectors || segment.num_sectors > capacity_sectors - segment.sector) {
    *why = "sector range beyond the end of the disk";
    return kStatusIoErr;
  }
  offset = segment.sector * kSectorSize;
  length = uint64_t{segment.num_sectors} * kSectorSize;
  unmap = (segment.flags & kSegmentFlagUnmap) != 0;
  return kStatusOk;
}

}  // namespace ember::virtio::blk
