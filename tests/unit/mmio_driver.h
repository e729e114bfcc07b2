// Programs a virtio-mmio register file as Linux's virtio_mmio.c probe does (status
// handshake, feature words, queue setup, DRIVER_OK), for tests that drive a
// transport without KVM.
#pragma once

#include <cstdint>

#include "virtio/mmio_transport.h"
#include "virtio/spec.h"

namespace ember::test {

class MmioDriver {
 public:
  explicit MmioDriver(virtio::MmioTransport& transport) : transport_(transport) {}

  uint32_t rd(uint64_t off) {
    uint32_t v;
    transport_.read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void wr(uint64_t off, uint32_t v) {
    transport_.write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), 4));
  }
  void negotiate(uint64_t features = virtio::bit(virtio::kFeatureVersion1) | virtio::bit(virtio::kFeatureEventIdx) |
                                     virtio::bit(virtio::kFeatureIndirectDesc)) {
    using namespace virtio;
    wr(mmio::kStatus, 0);
    wr(mmio::kStatus, kStatusAcknowledge);
    wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
    wr(mmio::kDriverFeaturesSel, 0);
    wr(mmio::kDriverFeatures, static_cast<uint32_t>(features));
    wr(mmio::kDriverFeaturesSel, 1);
    wr(mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
    wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
  void setup_queue(const virtio::QueueConfig& c, uint32_t index = 0) {
    using namespace virtio;
    wr(mmio::kQueueSel, index);
    wr(mmio::kQueueNum, c.size);
    wr(mmio::kQueueDescLow, static_cast<uint32_t>(c.desc));
    wr(mmio::kQueueDescHigh, static_cast<uint32_t>(c.desc >> 32));
    wr(mmio::kQueueDriverLow, static_cast<uint32_t>(c.driver));
    wr(mmio::kQueueDriverHigh, static_cast<uint32_t>(c.driver >> 32));
    wr(mmio::kQueueDeviceLow, static_cast<uint32_t>(c.device));
    wr(mmio::kQueueDeviceHigh, static_cast<uint32_t>(c.device >> 32));
    wr(mmio::kQueueReady, 1);
  }
  // The caller then runs the transport's event loop once for the activation hand-off.
  void driver_ok() {
    using namespace virtio;
    wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

 private:
  virtio::MmioTransport& transport_;
};

}  // namespace ember::test
