// Constants from the virtio 1.2 specification that ember's transport, queue and
// devices share. Section numbers refer to that document.
#pragma once

#include <cstdint>

namespace ember::virtio {

// 2.1 Device status field.
constexpr uint32_t kStatusAcknowledge = 1;
constexpr uint32_t kStatusDriver = 2;
constexpr uint32_t kStatusDriverOk = 4;
constexpr uint32_t kStatusFeaturesOk = 8;
constexpr uint32_t kStatusNeedsReset = 0x40;
constexpr uint32_t kStatusFailed = 0x80;

// 6 Reserved feature bits.
constexpr uint32_t kFeatureIndirectDesc = 28;  // VIRTIO_F_INDIRECT_DESC
constexpr uint32_t kFeatureEventIdx = 29;      // VIRTIO_F_EVENT_IDX
constexpr uint32_t kFeatureVersion1 = 32;      // VIRTIO_F_VERSION_1
constexpr uint64_t bit(uint32_t feature) { return 1ull << feature; }

// 2.7.5 The virtqueue descriptor table.
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
// 2.7.6 / 2.7.8 ring flags.
constexpr uint16_t kAvailNoInterrupt = 1;

struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

// 2.7 Split virtqueue limits.
constexpr uint16_t kMaxQueueSize = 32768;

// 4.2.2 MMIO device register layout (version 2).
namespace mmio {
constexpr uint32_t kMagic = 0x74726976;  // "virt"
constexpr uint32_t kVersion = 2;
constexpr uint32_t kVendorId = 0x52424d45;  // "EMBR"
constexpr uint64_t kMagicValue = 0x000;
constexpr uint64_t kVersionReg = 0x004;
constexpr uint64_t kDeviceId = 0x008;
constexpr uint64_t kVendorIdReg = 0x00c;
constexpr uint64_t kDeviceFeatures = 0x010;
constexpr uint64_t kDeviceFeaturesSel = 0x014;
constexpr uint64_t kDriverFeatures = 0x020;
constexpr uint64_t kDriverFeaturesSel = 0x024;
constexpr uint64_t kQueueSel = 0x030;
constexpr uint64_t kQueueNumMax = 0x034;
constexpr uint64_t kQueueNum = 0x038;
constexpr uint64_t kQueueReady = 0x044;
constexpr uint64_t kQueueNotify = 0x050;
constexpr uint64_t kInterruptStatus = 0x060;
constexpr uint64_t kInterruptAck = 0x064;
constexpr uint64_t kStatus = 0x070;
constexpr uint64_t kQueueDescLow = 0x080;
constexpr uint64_t kQueueDescHigh = 0x084;
constexpr uint64_t kQueueDriverLow = 0x090;
constexpr uint64_t kQueueDriverHigh = 0x094;
constexpr uint64_t kQueueDeviceLow = 0x0a0;
constexpr uint64_t kQueueDeviceHigh = 0x0a4;
constexpr uint64_t kShmLenLow = 0x0b0;
constexpr uint64_t kShmLenHigh = 0x0b4;
constexpr uint64_t kConfigGeneration = 0x0fc;
constexpr uint64_t kConfig = 0x100;

constexpr uint32_t kInterruptUsedBuffer = 1;
constexpr uint32_t kInterruptConfigChange = 2;
}  // namespace mmio

// 5 Device types.
constexpr uint32_t kDeviceTypeBlock = 2;

}  // namespace ember::virtio
