#include "virtio/rate_limiter.h"

#include <algorithm>
#include <limits>

#include "base/util/error.h"

namespace ember::virtio {

namespace {

constexpr int64_t kNsPerMs = 1'000'000;

void check_at_most(uint64_t value, uint64_t max, const std::string& field) {
  if (value > max) fail(field, " must be between 0 and ", max, " (got ", value, ")");
}

}  // namespace

bool RateLimiterConfig::enabled() const {
  return (bandwidth && bandwidth->enabled()) || (ops && ops->enabled());
}

RateLimiterConfig RateLimiterConfig::updated(const RateLimiterConfig& update) const {
  RateLimiterConfig out = *this;
  if (update.bandwidth) out.bandwidth = update.bandwidth;
  if (update.ops) out.ops = update.ops;
  if (out.bandwidth && !out.bandwidth->enabled()) out.bandwidth.reset();
  if (out.ops && !out.ops->enabled()) out.ops.reset();
  return out;
}

void check_token_bucket(const TokenBucketConfig& bucket, const std::string& where) {
  check_at_most(bucket.size, kMaxBucketTokens, where + ".size");
  check_at_most(bucket.one_time_burst, kMaxBucketTokens, where + ".one_time_burst");
  check_at_most(bucket.refill_time_ms, kMaxRefillTimeMs, where + ".refill_time");
  if (bucket.size != 0 && bucket.refill_time_ms == 0) {
    fail(where, ".refill_time must not be 0 when size is not (the bucket would never refill)");
  }
}

void check_rate_limiter(const RateLimiterConfig& config, const std::string& where) {
  if (config.bandwidth) check_token_bucket(*config.bandwidth, where + ".bandwidth");
  if (config.ops) check_token_bucket(*config.ops, where + ".ops");
}

TokenBucket::TokenBucket(const TokenBucketConfig& config, Nanos now)
    : size_(config.refill_time_ms ? config.size : 0),
      burst_(config.one_time_burst),
      period_ns_(config.refill_time_ms * kNsPerMs),
      level_(static_cast<__int128>(size_) * period_ns_),
      last_(now) {}

void TokenBucket::refill(Nanos now) {
  if (now <= last_) return;  // a clock that does not move forward adds nothing
  __int128 full = static_cast<__int128>(size_) * period_ns_;
  level_ = std::min(full, level_ + static_cast<__int128>((now - last_).count()) * size_);
  last_ = now;
}

Nanos TokenBucket::wait_for(uint64_t tokens, Nanos now) {
  if (!enabled() || tokens <= burst_) return Nanos(0);
  refill(now);
  uint64_t need = tokens - burst_;
  __int128 full = static_cast<__int128>(size_) * period_ns_;
  // Larger than the bucket: goes through when it is full (see the class comment).
  __int128 target = need > size_ ? full : static_cast<__int128>(need) * period_ns_;
  if (level_ >= target) return Nanos(0);
  __int128 ns = (target - level_ + size_ - 1) / size_;  // rounded up: then it fits
  return Nanos(static_cast<int64_t>(std::min<__int128>(ns, std::numeric_limits<int64_t>::max())));
}

void TokenBucket::take(uint64_t tokens) {
  if (!enabled()) return;
  uint64_t from_burst = std::min(burst_, tokens);
  burst_ -= from_burst;
  level_ -= static_cast<__int128>(tokens - from_burst) * period_ns_;
}

uint64_t TokenBucket::available(Nanos now) {
  if (!enabled()) return std::numeric_limits<uint64_t>::max();
  refill(now);
  return burst_ + (level_ > 0 ? static_cast<uint64_t>(level_ / period_ns_) : 0);
}

RateLimiter::RateLimiter(const RateLimiterConfig& config, Clock clock) : clock_(std::move(clock)) {
  update(config);
}

Nanos RateLimiter::consume(uint64_t bytes, uint64_t ops) {
  if (!enabled()) return Nanos(0);
  Nanos t = now();
  Nanos wait = std::max(bandwidth_.wait_for(bytes, t), ops_.wait_for(ops, t));
  if (wait.count() > 0) return wait;
  bandwidth_.take(bytes);
  ops_.take(ops);
  return Nanos(0);
}

void RateLimiter::update(const RateLimiterConfig& update) {
  Nanos t = now();
  if (update.bandwidth) bandwidth_ = TokenBucket(*update.bandwidth, t);
  if (update.ops) ops_ = TokenBucket(*update.ops, t);
}

}  // namespace ember::virtio
