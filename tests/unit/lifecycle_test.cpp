// The device half of the VM lifecycle. Stop: a transport destroyed while its device
// still has requests in flight quiesces the device first, so nothing completes into
// queue storage that is gone or into rings the driver no longer owns (a guest that
// reboots while writing); the old order was a heap-use-after-free
// (SplitQueue::push_used from ~DescriptorChain). Pause: in-flight requests complete as
// usual before the event thread stops, so a paused VM's memory changes no more.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "base/event_loop.h"
#include "base/util/eventfd.h"
#include "tests/unit/mmio_driver.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/blk/block_device.h"
#include "virtio/blk/block_request.h"
#include "virtio/io_uring_ring.h"

namespace ember::virtio {
namespace {

using test::Buffer;

// A 1 MiB disk that lives only in memory: no file left behind.
struct MemDisk {
  UniqueFd fd{::memfd_create("ember-teardown-disk", MFD_CLOEXEC)};
  MemDisk() { EXPECT_EQ(::ftruncate(fd.get(), 1 << 20), 0); }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd.get()); }
};

// A virtio-blk drive on io_uring behind its transport, activated by a driver, with one
// 64 KiB write submitted and not yet reaped.
struct BlkWithWriteInFlight {
  GuestMemory memory = test::small_guest_memory();
  test::VirtioDriver driver{memory, 16};
  EventLoop loop;
  IoUringRing ring{64};
  MemDisk disk;
  Buffer status = driver.alloc(1, 0xee);
  std::unique_ptr<MmioTransport> transport;

  BlkWithWriteInFlight() {
    auto device = std::make_unique<blk::BlockDevice>(blk::BlockDeviceOptions{"disk0", disk.path(), false, false, 16},
                                                     &ring);
    ring.seal();
    transport = std::make_unique<MmioTransport>(std::move(device), memory, loop, "drive 'disk0'");
    test::MmioDriver regs(*transport);
    regs.negotiate();
    regs.setup_queue(driver.config());
    regs.driver_ok();
    loop.run_once(0);  // activation

    Buffer header = driver.alloc(16);
    blk::RequestHeader h{blk::kTypeOut, 0, 8};
    std::memcpy(driver.bytes(header).data(), &h, sizeof(h));
    Buffer data = driver.alloc(64 * 1024, 'w');
    driver.add({header, data}, {status});
    signal_eventfd(transport->queue_notify_fd(0));
    loop.run_once(0);  // the write goes to io_uring; its completion is not reaped here
  }
};

TEST(Lifecycle, BlockWriteInFlightWhenTheTransportIsDestroyedIsDroppedNotCompleted) {
  BlkWithWriteInFlight vm;
  ASSERT_EQ(vm.driver.used_idx(), 0) << "the write completed before the teardown: the test shows nothing";
  vm.transport.reset();
  // The driver reset its device (here: the VM went away): the request is not handed back.
  EXPECT_EQ(vm.driver.used_idx(), 0);
  EXPECT_EQ(vm.driver.bytes(vm.status)[0], 0xee);
}

TEST(Lifecycle, BlockWriteInFlightWhenTheVmPausesIsCompletedFirst) {
  BlkWithWriteInFlight vm;
  ASSERT_EQ(vm.driver.used_idx(), 0);
  vm.transport->drain();
  EXPECT_EQ(vm.driver.used_idx(), 1);
  EXPECT_EQ(vm.driver.bytes(vm.status)[0], blk::kStatusOk);
  char on_disk = 0;
  ASSERT_EQ(::pread(vm.disk.fd.get(), &on_disk, 1, 8 * 512), 1);
  EXPECT_EQ(on_disk, 'w');
}

}  // namespace
}  // namespace ember::virtio
