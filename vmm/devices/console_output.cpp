#include "vmm/devices/console_output.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/util/error.h"
#include "base/util/log.h"
#include "base/util/thread.h"

namespace ember {

namespace {
// A pipe reports POLLOUT once a page is free: chunks this size then fit without blocking.
constexpr size_t kChunk = 4096;
constexpr int kPollMs = 100;  // how often a blocked writer looks at `stopping_`
}  // namespace

ConsoleOutput::ConsoleOutput(int fd, const virtio::TokenBucketConfig& limit, virtio::RateLimiter::Clock clock)
    : fd_(fd), limiter_(virtio::RateLimiterConfig{limit.enabled() ? std::optional(limit) : std::nullopt, {}}, clock) {
  thread_ = start_thread(ThreadRole::Console, "ember-console", [this] { run(); });
}

ConsoleOutput::~ConsoleOutput() {
  drain(kDrainTimeout);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ConsoleOutput::put(uint8_t byte) {
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    // Silently, as Firecracker's serial rate limiter: the metric tells.
    if (limiter_.enabled() && limiter_.consume(1, 0).count() > 0) {
      ++rate_limited_;
      return;
    }
    if (ended_ || buffer_.size() + in_writer_ >= kCapacity) {
      ++dropped_;
      if (!dropping_) {
        dropping_ = true;
        log::warn(cat("guest console: the output is not being read (or failed); bytes beyond ", kCapacity,
                      " buffered are dropped"));
      }
      return;
    }
    was_empty = buffer_.empty();
    buffer_.push_back(static_cast<char>(byte));
  }
  if (was_empty) wake_.notify_one();
}

bool ConsoleOutput::drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return drained_.wait_for(lock, timeout, [this] { return ended_ || (buffer_.empty() && in_writer_ == 0); }) &&
         buffer_.empty() && in_writer_ == 0;
}

uint64_t ConsoleOutput::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

uint64_t ConsoleOutput::rate_limited() const {
  std::lock_guard lock(mu_);
  return rate_limited_;
}

void ConsoleOutput::run() {
  std::string taken;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !buffer_.empty(); });
    if (buffer_.empty()) {  // stopping, everything written
      ended_ = true;
      return;
    }
    // Everything buffered at once: put() keeps appending to the emptied buffer meanwhile,
    // and the bound counts both.
    taken.clear();
    taken.swap(buffer_);
    in_writer_ = taken.size();
    lock.unlock();
    bool ok = write_all(taken);
    lock.lock();
    in_writer_ = 0;
    if (buffer_.empty()) {
      dropping_ = false;
      drained_.notify_all();
    }
    if (!ok) {  // stopping while the output stays full, or the output failed
      ended_ = true;
      drained_.notify_all();
      return;
    }
  }
}

// Writes `bytes` without ever blocking for long: waits for room with poll and writes at
// most a chunk at a time, so that a full pipe leaves the thread free to notice it is
// being stopped.
bool ConsoleOutput::write_all(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    pollfd p{fd_, POLLOUT, 0};
    int ready = ::poll(&p, 1, kPollMs);
    if (ready == 0) {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
      continue;
    }
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0 || (p.revents & (POLLERR | POLLNVAL))) return false;
    ssize_t n = ::write(fd_, bytes.data() + done, std::min(bytes.size() - done, kChunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace ember
