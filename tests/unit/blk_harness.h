// A virtio-blk device on a temporary file, driven through a real split queue with either
// I/O engine (virtio_blk_test.cpp, virtio_blk_discard_test.cpp).
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>

#include "tests/unit/virtio_driver.h"
#include "virtio/blk/block_device.h"

namespace ember::test {

namespace fs = std::filesystem;
using virtio::blk::BlockDevice;
using virtio::blk::BlockDeviceOptions;
using virtio::Interrupt;
using virtio::IoUringRing;
using virtio::SplitQueue;
using virtio::blk::RequestHeader;

inline fs::path temp_file(const std::string& name, size_t size, char fill) {
  const char* tmp = std::getenv("TMPDIR");
  fs::path p = fs::path(tmp ? tmp : "/tmp") / ("ember-blk-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(p, std::ios::binary) << std::string(size, fill);
  return p;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

enum class Engine { Sync, IoUring };
// Names the engine in parameterized test names (Blk/Suite.Test/sync, /io_uring).
inline std::string engine_name(const ::testing::TestParamInfo<Engine>& param) {
  return param.param == Engine::Sync ? "sync" : "io_uring";
}

struct BlkHarness {
  fs::path path;
  GuestMemory memory = test::small_guest_memory();
  test::VirtioDriver driver{memory, 16};
  UniqueFd irqfd{::eventfd(0, EFD_NONBLOCK)};
  Interrupt interrupt{irqfd.get()};
  EventLoop loop;  // runs the rate limiter's timer when a test drives it (run_loop)
  std::unique_ptr<IoUringRing> ring;
  std::unique_ptr<BlockDevice> device;
  std::vector<SplitQueue> queues;

  BlkHarness(Engine engine, bool read_only = false, size_t disk_bytes = 64 * 1024, const std::string& id = "disk0",
             const std::function<void(BlockDeviceOptions&)>& tweak = {})
      : path(temp_file(id, disk_bytes, 'd')) {
    if (engine == Engine::IoUring) ring = std::make_unique<IoUringRing>(64);
    BlockDeviceOptions options{id, path.string(), read_only, false, 16};
    options.loop = &loop;
    if (tweak) tweak(options);
    device = std::make_unique<BlockDevice>(options, ring.get());
    if (ring) {
      ring->seal();
      loop.add(ring->event_fd(), [this] { ring->reap(); });
    }
    queues.push_back(*SplitQueue::create(memory, driver.config(), 16, {true, true}));
    device->activate(queues, interrupt, 0);
  }
  ~BlkHarness() {
    device->reset();
    fs::remove(path);
  }

  // Sends one request and waits for it to be used; returns the status byte.
  uint8_t request(uint32_t type, uint64_t sector, std::vector<Buffer> readable_data, std::vector<Buffer> writable,
                  uint32_t* used_len = nullptr) {
    Buffer header = driver.alloc(16);
    RequestHeader h{type, 0, sector};
    std::memcpy(driver.bytes(header).data(), &h, 16);
    Buffer status = driver.alloc(1, 0xee);
    readable_data.insert(readable_data.begin(), header);
    writable.push_back(status);
    uint16_t before = driver.used_idx();
    driver.add(readable_data, writable);
    device->process_queue(0);
    wait_used(before + 1);
    if (used_len) *used_len = driver.used(before).len;
    return driver.bytes(status)[0];
  }
  uint64_t metric(const std::string& name) {
    uint64_t value = ~0ull;
    device->report_metrics([&](std::string_view n, uint64_t v) {
      if (n == name) value = v;
    });
    return value;
  }
  void wait_used(uint16_t target) {
    for (int i = 0; i < 1000 && driver.used_idx() != target; ++i) {
      if (!ring) break;
      pollfd p{ring->event_fd(), POLLIN, 0};
      ::poll(&p, 1, 10);
      ring->reap();
    }
    ASSERT_EQ(driver.used_idx(), target);
  }
};

}  // namespace ember::test
