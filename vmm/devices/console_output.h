// The guest console's bytes on their way to the host's output (stdout or a file), written
// by a thread of its own ("ember-console") so that an output nobody reads (a full pipe)
// stalls no vCPU. Bounded: beyond kCapacity bytes not yet written, further bytes are
// dropped and counted, with one warning per episode of dropping. An optional token bucket
// (bytes) limits the rate: bytes beyond it are dropped and counted apart.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "virtio/rate_limiter.h"

namespace ember {

class ConsoleOutput {
 public:
  static constexpr size_t kCapacity = 256 * 1024;
  // Does not own `fd`. `limit` of size 0 limits nothing.
  explicit ConsoleOutput(int fd, const virtio::TokenBucketConfig& limit = {}, virtio::RateLimiter::Clock clock = {});
  // drain(kDrainTimeout), then joins the thread.
  ~ConsoleOutput();
  ConsoleOutput(const ConsoleOutput&) = delete;
  ConsoleOutput& operator=(const ConsoleOutput&) = delete;

  // Any thread; never waits for the output.
  void put(uint8_t byte);
  // Waits until everything buffered is written or `timeout` passed (an output nobody
  // reads); true when everything was written.
  bool drain(std::chrono::milliseconds timeout);
  uint64_t dropped() const;       // the buffer was full
  uint64_t rate_limited() const;  // beyond the token bucket

  static constexpr std::chrono::milliseconds kDrainTimeout{2000};

 private:
  void run();
  bool write_all(const std::string& bytes);

  int fd_;
  mutable std::mutex mu_;
  std::condition_variable wake_;     // the writer: bytes arrived, or stopping
  std::condition_variable drained_;  // drain(): the buffer emptied
  std::string buffer_;               // under mu_; with in_writer_, at most kCapacity bytes
  size_t in_writer_ = 0;             // bytes the writer took from buffer_ and has not written yet
  bool dropping_ = false;            // an episode of dropping is under way
  uint64_t dropped_ = 0;
  virtio::RateLimiter limiter_;  // under mu_
  uint64_t rate_limited_ = 0;
  bool stopping_ = false;
  bool ended_ = false;  // the writer is gone (output failed, or stopped while full): put() drops
  std::thread thread_;
};

}  // namespace ember
