// Microbenchmarks of the virtio data path, no KVM needed: the split-queue
// pop/complete cycle, and virtio-blk requests against a tmpfs file with the
// io_uring and sync engines. Reports requests per second (items_per_second).
//   build/perf/virtio_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/virtio_driver.h"
#include "virtio/blk/block_device.h"

namespace {

using namespace ember;
using namespace ember::virtio;

void BM_QueuePopComplete(benchmark::State& state) {
  GuestMemory memory = test::small_guest_memory(8);
  test::VirtioDriver driver(memory, 256);
  SplitQueue queue = *SplitQueue::create(memory, driver.config(), 256, {true, true});
  test::Buffer header = driver.alloc(16), data = driver.alloc(4096), status = driver.alloc(1);
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) driver.add({header}, {data, status}, true);
    while (auto chain = queue.pop()) {
      ChainReader r = chain->reader();
      uint64_t word;
      r.read_obj(word);
      chain->complete(4097);
    }
    benchmark::DoNotOptimize(queue.needs_interrupt());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_QueuePopComplete)->Arg(1)->Arg(32);

struct BlkBench {
  std::filesystem::path path;
  GuestMemory memory = test::small_guest_memory(64);
  test::VirtioDriver driver{memory, 256};
  UniqueFd irqfd{::eventfd(0, EFD_NONBLOCK)};
  Interrupt interrupt{irqfd.get()};
  std::unique_ptr<IoUringRing> ring;
  std::unique_ptr<blk::BlockDevice> device;
  std::vector<SplitQueue> queues;
  std::vector<test::Buffer> headers, datas, statuses;

  BlkBench(bool uring, uint32_t block) {
    path = std::filesystem::path("/dev/shm") / ("ember-bench-" + std::to_string(::getpid()));
    std::ofstream(path, std::ios::binary) << std::string(64 << 20, 'b');
    if (uring) ring = std::make_unique<IoUringRing>(256);
    device = std::make_unique<blk::BlockDevice>(blk::BlockDeviceOptions{"bench", path.string(), false, false, 256},
                                                ring.get());
    queues.push_back(*SplitQueue::create(memory, driver.config(), 256, {true, true}));
    device->activate(queues, interrupt, 0);
    for (int i = 0; i < 64; ++i) {
      headers.push_back(driver.alloc(16));
      datas.push_back(driver.alloc(block));
      statuses.push_back(driver.alloc(1));
    }
  }
  ~BlkBench() {
    device->reset();
    std::filesystem::remove(path);
  }
  // One notification with `batch` requests, then wait for all completions.
  void round(int batch, uint32_t type, uint64_t& sector, uint32_t block) {
    uint16_t target = static_cast<uint16_t>(driver.used_idx() + batch);
    for (int i = 0; i < batch; ++i) {
      blk::RequestHeader h{type, 0, sector};
      sector = (sector + 8 * 97) % ((64ull << 20) / 512 - block / 512);  // scattered offsets
      std::memcpy(driver.bytes(headers[i]).data(), &h, sizeof(h));
      if (type == blk::kTypeOut) driver.add({headers[i], datas[i]}, {statuses[i]}, true);
      else driver.add({headers[i]}, {datas[i], statuses[i]}, true);
    }
    device->process_queue(0);
    while (driver.used_idx() != target) {
      pollfd p{ring->event_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      ring->reap();
    }
  }
};

void BM_BlkRequests(benchmark::State& state) {
  bool uring = state.range(0) == 1;
  uint32_t type = state.range(1) == 0 ? blk::kTypeIn : blk::kTypeOut;
  int batch = static_cast<int>(state.range(2));
  const uint32_t block = 4096;
  BlkBench b(uring, block);
  uint64_t sector = 0;
  for (auto _ : state) b.round(batch, type, sector, block);
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * block);
  state.SetLabel(std::string(uring ? "io_uring" : "sync") + (type == blk::kTypeIn ? " read" : " write") + " 4KiB");
}
// Args: engine (0 sync, 1 io_uring), op (0 read, 1 write), requests per notification.
BENCHMARK(BM_BlkRequests)
    ->ArgsProduct({{0, 1}, {0, 1}, {1, 32}})
    ->ArgNames({"uring", "write", "batch"})
    ->UseRealTime();  // io_uring work happens off this thread: count wall time

}  // namespace

BENCHMARK_MAIN();
