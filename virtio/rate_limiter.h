// I/O rate limiting as Firecracker's RateLimiter object defines it: a bandwidth bucket
// (tokens are bytes) and an ops bucket (tokens are requests), each refilling
// continuously. Pure arithmetic on a monotonic clock the owner injects; no threads, no
// timers (the devices arm their own, virtio/throttle_timer.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace ember::virtio {

// Firecracker's TokenBucket object. A bucket of size 0 limits nothing.
struct TokenBucketConfig {
  uint64_t size = 0;            // tokens the bucket holds when full (and starts with)
  uint64_t one_time_burst = 0;  // extra tokens at the start, spent first, never refilled
  uint64_t refill_time_ms = 0;  // time to refill from empty to full
  bool enabled() const { return size != 0; }
  bool operator==(const TokenBucketConfig&) const = default;
};

// Firecracker's RateLimiter object. As a device's configuration an absent bucket limits
// nothing. As an update (PATCH), an absent bucket is left as it is, a bucket of size 0
// is turned off, and any other replaces the old one and starts full.
struct RateLimiterConfig {
  std::optional<TokenBucketConfig> bandwidth;
  std::optional<TokenBucketConfig> ops;
  bool enabled() const;
  // This configuration after `update` (PATCH semantics); turned-off buckets become absent.
  RateLimiterConfig updated(const RateLimiterConfig& update) const;
  bool operator==(const RateLimiterConfig&) const = default;
};

// Bounds of every bucket field: 2^40 tokens (1 TiB per refill period for bandwidth) and
// refill periods up to an hour. Larger values are configuration errors, never wrapped.
constexpr uint64_t kMaxBucketTokens = uint64_t{1} << 40;
constexpr uint64_t kMaxRefillTimeMs = 3'600'000;

// Throws Error naming the field ("<where>.refill_time ...") of the first value out of
// bounds, and a nonzero size with refill_time 0 (a bucket that would never refill).
void check_token_bucket(const TokenBucketConfig& bucket, const std::string& where);
void check_rate_limiter(const RateLimiterConfig& config, const std::string& where);

using Nanos = std::chrono::nanoseconds;
// A monotonic clock the owner injects (tests pass a fake one); empty: std::chrono::steady_clock.
using MonotonicClock = std::function<Nanos()>;
inline Nanos now_of(const MonotonicClock& clock) {
  if (clock) return clock();
  return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

// One bucket. Tokens refill at size/refill_time continuously (not in steps), up to size.
// A request for more tokens than `size` would never fit: it is let through when the
// bucket is full, which then owes the excess (its level goes below zero and refills from
// there), so the average rate holds for large requests too.
class TokenBucket {
 public:
  TokenBucket() = default;  // limits nothing
  TokenBucket(const TokenBucketConfig& config, Nanos now);
  bool enabled() const { return size_ != 0; }
  // 0 if `tokens` can be taken at `now`; otherwise how long until they can.
  Nanos wait_for(uint64_t tokens, Nanos now);
  // Takes `tokens` (burst first), after wait_for() said 0 at the same `now`.
  void take(uint64_t tokens);
  // Whole tokens available now (the burst included), for tests and diagnostics.
  uint64_t available(Nanos now);

 private:
  void refill(Nanos now);
  uint64_t size_ = 0;
  uint64_t burst_ = 0;
  uint64_t period_ns_ = 0;
  // The level in tokens x period_ns, so refilling is exact integer arithmetic: each
  // nanosecond adds `size_`. Negative while a large request's excess is being repaid.
  __int128 level_ = 0;
  Nanos last_{0};
};

// A device's limiter: both buckets charged together, or neither.
class RateLimiter {
 public:
  using Clock = MonotonicClock;
  explicit RateLimiter(const RateLimiterConfig& config = {}, Clock clock = {});
  bool enabled() const { return bandwidth_.enabled() || ops_.enabled(); }
  // Charges `bytes` and `ops` and returns 0, or charges nothing and returns how long
  // until both buckets can take them (the time to arm the device's timer for).
  Nanos consume(uint64_t bytes, uint64_t ops);
  // PATCH: see RateLimiterConfig.
  void update(const RateLimiterConfig& update);

 private:
  Nanos now() const { return now_of(clock_); }
  Clock clock_;
  TokenBucket bandwidth_;
  TokenBucket ops_;
};

}  // namespace ember::virtio
