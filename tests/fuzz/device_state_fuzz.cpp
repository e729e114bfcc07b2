// libFuzzer target: a hostile snapshot. The first byte picks the device behind a fresh
// virtio-mmio transport (virtio-blk on a 64 KiB memfd, or vsock); the rest is the saved
// transport state it is restored from. Restoring either throws Error or succeeds; what
// succeeded then runs (every queue processed once, on whatever guest memory holds) and is
// destroyed as a VM's stop order does. A restored blk device, whose activation changes
// nothing, first saves back to exactly the bytes it was restored from (vsock's activation
// puts its reset event on the event queue).
#include <cstring>
#include <memory>
#include <optional>

#include "base/event_loop.h"
#include "tests/fuzz/fuzz_input.h"
#include "virtio/blk/block_device.h"
#include "virtio/mmio_transport.h"
#include "virtio/vsock/vsock_device.h"

namespace {

using namespace ember;
using namespace ember::virtio;

constexpr uint64_t kMemBytes = 1 << 20;
constexpr uint16_t kQueueSize = 64;

GuestMemory& memory() {
  static GuestMemory m = [] {
    GuestMemoryOptions options;
    options.size_bytes = kMemBytes;
    return GuestMemory::create(options);
  }();
  return m;
}

std::unique_ptr<VirtioDevice> make_device(uint8_t selector, EventLoop& loop, std::optional<fuzz::MemFile>& disk,
                                          const std::string& uds) {
  if (selector % 2 == 0) {
    disk.emplace(std::span<const uint8_t>(), 64 * 1024);
    return std::make_unique<blk::BlockDevice>(blk::BlockDeviceOptions{"disk0", disk->path(), false, false, kQueueSize},
                                              nullptr);
  }
  vsock::VsockDeviceOptions o;
  o.uds_path = uds;
  o.queue_size = kQueueSize;
  return std::make_unique<vsock::VsockDevice>(o, loop);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size < 1) return 0;
  fuzz::zero_guest_memory(memory());
  EventLoop loop;
  std::optional<fuzz::MemFile> disk;
  std::string uds = fuzz::temp_socket_path("state.sock");
  MmioTransport transport(make_device(data[0], loop, disk, uds), memory(), loop, "fuzzed device");
  std::span<const uint8_t> state(data + 1, size - 1);
  snapshot::StateReader in(state, "fuzz");
  try {
    transport.restore_state(in);
  } catch (const Error&) {
    return 0;
  }
  if (disk) {
    snapshot::StateWriter out;
    transport.save_state(out);
    size_t consumed = state.size() - in.remaining();
    if (out.data().size() != consumed || std::memcmp(out.data().data(), state.data(), consumed) != 0) std::abort();
  }
  loop.run_once(0);
  transport.drain();
  transport.quiesce();
  return 0;
}
