// virtio-blk (virtio 1.2 section 5.2) on a host file or block device: IN, OUT,
// FLUSH, GET_ID, DISCARD and WRITE_ZEROES, read-only drives, either I/O engine, and
// O_DIRECT (cache = "none").
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/util/unique_fd.h"
#include "virtio/blk/block_backend.h"
#include "virtio/blk/block_request.h"
#include "virtio/interrupt_coalescing.h"
#include "virtio/rate_limiter.h"
#include "virtio/throttle_timer.h"
#include "virtio/virtio_device.h"

namespace ember::virtio::blk {

// Opens a drive's backing file as the device does (never waiting on a FIFO) and refuses
// anything but a regular file or a block device. Throws Error naming the drive and why.
// Also the check PUT /drives and InstanceStart make (vmm/config_files.cpp).
UniqueFd open_backing_file(const std::string& id, const std::string& path, int flags, struct stat& st);

// A drive's backing file, open as the device uses it, and its size in bytes. With
// cache = "none" the file is open twice: `direct_fd` with O_DIRECT for the requests whose
// buffers, offset and length are all multiples of kDirectAlignment (every request of a
// Linux guest's page cache), `fd` without it for the others, which O_DIRECT would refuse
// (EINVAL). Two descriptors instead of a bounce buffer: no copy and no memory to bound,
// and Linux keeps them coherent (a direct read first writes back cached pages of its
// range, a direct write drops them); virtio gives overlapping requests in flight no order.
struct BackingFile {
  UniqueFd fd;
  UniqueFd direct_fd;  // cache = "none" only
  uint64_t bytes = 0;
};
// open_backing_file() read-only or read-write (and again with O_DIRECT), then the size: a
// regular file's length or a block device's BLKGETSIZE64. Throws Error naming the drive
// and path, and saying so when the file system refuses O_DIRECT (tmpfs before Linux 6.6).
BackingFile open_backing(const std::string& id, const std::string& path, bool read_only, bool direct_io = false);

// The alignment ember asks of O_DIRECT requests (memory, offset, length): the largest
// logical block size in common use, so that no file system or disk refuses them.
constexpr uint64_t kDirectAlignment = 4096;

struct BlockDeviceOptions {
  std::string id;    // GET_ID answer (first 20 bytes) and log name
  std::string path;  // host file or block device
  bool read_only = false;
  bool direct_io = false;  // cache = "none": aligned reads and writes with O_DIRECT (BackingFile)
  uint16_t queue_size = 256;
  // Requests wait (the queue is not read) while this limiter has no room for them; each
  // costs one op and, for IN/OUT, its data bytes. Changed later by update_rate_limiter().
  RateLimiterConfig rate_limiter;
  // Where the limiter's timer runs; without a loop the device cannot be rate-limited.
  EventLoop* loop = nullptr;
  RateLimiter::Clock clock;  // tests inject one; empty: the steady clock
};

class BlockDevice final : public VirtioDevice {
 public:
  // Opens the backing file (O_RDONLY for read-only drives). `ring` selects the
  // io_uring engine; nullptr the synchronous one. Throws Error at setup.
  BlockDevice(const BlockDeviceOptions& options, IoUringRing* ring);
  ~BlockDevice() override;

  uint32_t device_type() const override;
  uint64_t device_features() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  std::vector<uint16_t> queue_max_sizes() const override { return {options_.queue_size}; }
  void activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t acked_features) override;
  void reset() override;
  void drain() override;
  void process_queue(uint16_t index) override;
  void report_metrics(const MetricSink& sink) const override;
  // Capacity, read-only and the GET_ID answer: restoring onto a backing file of another
  // size, or another drive, is refused (a guest's file system under a changed disk).
  void save_state(snapshot::StateWriter& out) const override;
  void restore_state(snapshot::StateReader& in) override;
  std::string describe_state() const override;
  // PATCH /drives: the buckets `update` names are replaced (RateLimiterConfig). Event
  // thread, or any thread while it is parked.
  void update_rate_limiter(const RateLimiterConfig& update);
  // PATCH /drives with path_on_host: later requests go to `file` (open_backing() with this
  // drive's read-only choice). Requests already submitted complete on the old file first,
  // into the used ring as usual; a request the rate limiter holds has not reached a file
  // and goes to the new one. The capacity requests are checked against changes at once,
  // the guest's view of it with publish_capacity(). Event thread, or any thread while it
  // is parked. Throws Error (the io_uring slot could not be updated): nothing changed.
  void replace_backing_file(BackingFile file, const std::string& path);
  // Writes the capacity into the config space, under the transport's config lock
  // (MmioTransport::update_config) so the driver's generation check sees the change.
  void publish_capacity();

  uint64_t capacity_sectors() const { return capacity_sectors_; }
  const std::string& path() const { return options_.path; }
  bool read_only() const { return options_.read_only; }
  bool direct_io() const { return options_.direct_io; }
  const char* engine() const { return backend_->name(); }

 private:
  // One request handed to the backend; slots never move (the ring points at them).
  struct InFlight final : BlockIo {
    BlockDevice* device = nullptr;
    DescriptorChain chain;
    BlockRequest request;
    uint64_t expected = 0;
    void on_complete(int64_t result) override { device->finish(*this, result); }
  };
  // The request the limiter held back, with its cost: the first one handled next.
  struct Held {
    DescriptorChain chain;
    BlockRequest request;
    uint64_t bytes = 0;
  };
  // Handles what the queue holds, the held request first, until the limiter says wait.
  void run_queue();
  // Charges the limiter; false when it has no room: the request is kept in held_.
  bool admit(DescriptorChain& chain, BlockRequest& request, uint64_t bytes);
  void handle(DescriptorChain chain, BlockRequest request);
  void start_io(DescriptorChain chain, BlockRequest request, BlockIo::Op op, uint64_t offset, uint64_t length);
  // DISCARD and WRITE_ZEROES: the segment checked, then one fallocate().
  void discard_or_zero(DescriptorChain chain, BlockRequest request);
  void finish(InFlight& slot, int64_t result);
  void complete_now(DescriptorChain& chain, BlockRequest& request, uint8_t status, uint32_t written = 0);
  // At the end of a batch: interrupts now, or holds the interrupt (InterruptCoalescing)
  // with the hold timer armed.
  void signal_if_needed();
  // Interrupts if the driver wants one for what is on the used ring, holding nothing.
  void signal_now();
  // The metric counting requests of `type` that reached the backend.
  std::atomic<uint64_t>& request_counter(uint32_t type);

  BlockDeviceOptions options_;
  UniqueFd fd_;
  UniqueFd direct_fd_;  // cache = "none"
  uint64_t capacity_sectors_ = 0;
  std::vector<uint8_t> config_;
  std::unique_ptr<BlockBackend> backend_;

  // Event thread.
  std::span<SplitQueue> queues_;
  Interrupt* interrupt_ = nullptr;
  std::vector<InFlight> slots_;
  std::vector<uint32_t> free_slots_;
  bool resetting_ = false;
  bool in_batch_ = false;
  RateLimiter limiter_;
  std::unique_ptr<ThrottleTimer> timer_;  // with options.loop
  std::optional<Held> held_;
  InterruptCoalescing coalescing_;
  std::unique_ptr<ThrottleTimer> hold_timer_;  // with options.loop; without, no interrupt is held
  bool hold_armed_ = false;

  // Counters for the metrics file: written on the event thread, read by the API's.
  struct Counters {
    std::atomic<uint64_t> read_requests{0}, write_requests{0}, flush_requests{0}, other_requests{0};
    std::atomic<uint64_t> discard_requests{0}, write_zeroes_requests{0};
    std::atomic<uint64_t> read_bytes{0}, write_bytes{0}, errors{0}, malformed{0};
    std::atomic<uint64_t> throttled{0};  // requests the rate limiter held back
  };
  Counters counters_;
};

}  // namespace ember::virtio::blk
