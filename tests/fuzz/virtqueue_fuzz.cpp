// libFuzzer target: a hostile driver controls the whole descriptor table, the
// available ring and every indirect table. The queue must never read or write
// outside guest memory, crash, or hang; ASan and UBSan check the first two.
#include <cstdint>
#include <cstring>

#include "base/util/log.h"
#include "virtio/queue.h"

namespace {

using namespace ember;

GuestMemory& memory() {
  static GuestMemory m = [] {
    log::set_level(log::Level::Error);  // rejected chains are expected here
    GuestMemoryOptions o;
    o.size_bytes = 1 << 20;
    return GuestMemory::create(o);
  }();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  GuestMemory& mem = memory();
  // Input: [size exponent][feature bits][bytes placed at guest-physical 0...].
  uint16_t queue_size = static_cast<uint16_t>(1u << (data[0] % 7));  // up to 64: tables fit the input
  virtio::QueueFeatures features{(data[1] & 1) != 0, (data[1] & 2) != 0};
  auto ram = mem.span(0, 0x8000, "fuzz area");
  std::memset(ram.data(), 0, ram.size());
  std::memcpy(ram.data(), data + 2, std::min(size - 2, ram.size()));
  // Available ring first (so avail.idx is among the first input bytes), then the
  // descriptor table, both from the input; the used ring at 0x4000.
  virtio::QueueConfig config{queue_size, 0x100, 0x0, 0x4000};
  auto queue = virtio::SplitQueue::create(mem, config, 256, features);
  if (!queue) return 0;
  for (int i = 0; i < 2 * queue_size + 2; ++i) {
    auto chain = queue->pop();
    if (!chain) break;
    uint8_t sink[64];
    virtio::ChainReader reader = chain->reader();
    while (reader.read(sink) > 0) {
    }
    virtio::ChainWriter writer = chain->writer();
    virtio::ChainWriter tail = writer.split_at(writer.remaining() / 2);
    std::memset(sink, 0x5a, sizeof(sink));
    while (tail.write(sink) > 0) {
    }
    chain->complete(static_cast<uint32_t>(writer.remaining()));
  }
  queue->needs_interrupt();
  return 0;
}
