// The token buckets behind drive and network-interface rate limiters, on a fake clock:
// continuous refill, the one-time burst, requests larger than the bucket, the exact
// wait, both buckets charged together or not at all, and PATCH updates.
#include <gtest/gtest.h>

#include "base/util/error.h"
#include "tests/unit/fake_clock.h"
#include "virtio/rate_limiter.h"

namespace ember::virtio {
namespace {

using std::chrono::milliseconds;

using test::FakeClock;

RateLimiterConfig ops_only(uint64_t size, uint64_t burst, uint64_t refill_ms) {
  RateLimiterConfig c;
  c.ops = TokenBucketConfig{size, burst, refill_ms};
  return c;
}

TEST(TokenBucket, StartsFullAndRefillsContinuouslyWithTheExactWait) {
  TokenBucket b(TokenBucketConfig{10, 0, 1000}, Nanos(0));  // 10 per second
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(b.wait_for(1, Nanos(0)), Nanos(0));
    b.take(1);
  }
  EXPECT_EQ(b.wait_for(1, Nanos(0)), milliseconds(100));
  EXPECT_EQ(b.wait_for(3, Nanos(0)), milliseconds(300));
  EXPECT_EQ(b.wait_for(1, milliseconds(60)), milliseconds(40));  // part of a token is kept
  EXPECT_EQ(b.available(milliseconds(99)), 0u);
  EXPECT_EQ(b.wait_for(1, milliseconds(100)), Nanos(0));
  EXPECT_EQ(b.available(milliseconds(250)), 2u);
  EXPECT_EQ(b.available(milliseconds(5000)), 10u);  // never beyond size
}

TEST(TokenBucket, WaitsAreRoundedUpSoTheyAreNeverTooShort) {
  TokenBucket b(TokenBucketConfig{3, 0, 1000}, Nanos(0));
  b.take(3);
  Nanos wait = b.wait_for(1, Nanos(0));
  EXPECT_EQ(wait, Nanos(333'333'334));
  EXPECT_NE(b.wait_for(1, wait - Nanos(1)), Nanos(0));
  EXPECT_EQ(b.wait_for(1, wait), Nanos(0));
}

TEST(TokenBucket, OneTimeBurstIsSpentFirstAndNeverRefilled) {
  TokenBucket b(TokenBucketConfig{10, 5, 1000}, Nanos(0));
  EXPECT_EQ(b.available(Nanos(0)), 15u);
  EXPECT_EQ(b.wait_for(7, Nanos(0)), Nanos(0));
  b.take(7);  // 5 from the burst, 2 from the bucket
  EXPECT_EQ(b.available(Nanos(0)), 8u);
  EXPECT_EQ(b.available(milliseconds(10'000)), 10u);  // the burst does not come back
  EXPECT_EQ(b.wait_for(11, milliseconds(10'000)), Nanos(0));  // larger than the bucket, which is full
}

TEST(TokenBucket, ARequestLargerThanTheBucketPassesWhenFullAndIsRepaid) {
  TokenBucket b(TokenBucketConfig{100, 0, 1000}, Nanos(0));
  b.take(1);
  EXPECT_EQ(b.wait_for(250, Nanos(0)), milliseconds(10));  // until full, not until 250 fit
  EXPECT_EQ(b.wait_for(250, milliseconds(10)), Nanos(0));
  b.take(250);  // 150 owed
  EXPECT_EQ(b.available(milliseconds(10)), 0u);
  // The average holds: the next token comes after the debt is refilled (1.5 s) plus 10 ms.
  EXPECT_EQ(b.wait_for(1, milliseconds(10)), milliseconds(1510));
}

TEST(TokenBucket, SizeZeroLimitsNothing) {
  TokenBucket b(TokenBucketConfig{0, 0, 0}, Nanos(0));
  EXPECT_FALSE(b.enabled());
  EXPECT_EQ(b.wait_for(uint64_t{1} << 50, Nanos(0)), Nanos(0));
}

TEST(TokenBucket, LargestValuesNeitherOverflowNorWrap) {
  TokenBucket b(TokenBucketConfig{kMaxBucketTokens, kMaxBucketTokens, kMaxRefillTimeMs}, Nanos(0));
  EXPECT_EQ(b.available(Nanos(0)), 2 * kMaxBucketTokens);
  b.take(2 * kMaxBucketTokens);
  EXPECT_EQ(b.wait_for(kMaxBucketTokens, Nanos(0)), milliseconds(kMaxRefillTimeMs));
  TokenBucket slow(TokenBucketConfig{1, 0, kMaxRefillTimeMs}, Nanos(0));
  slow.take(uint64_t{1} << 40);  // a huge request passed a full bucket: repaid over ages
  EXPECT_EQ(slow.wait_for(1, Nanos(0)), Nanos(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(slow.available(Nanos(std::numeric_limits<int64_t>::max())), 0u);
}

TEST(RateLimiter, ChargesBothBucketsOrNeither) {
  FakeClock clock;
  RateLimiterConfig c;
  c.bandwidth = TokenBucketConfig{1000, 0, 1000};
  c.ops = TokenBucketConfig{2, 0, 1000};
  RateLimiter l(c, clock.get());
  EXPECT_EQ(l.consume(600, 1), Nanos(0));
  EXPECT_EQ(l.consume(600, 1), milliseconds(200));  // bandwidth short: the op is not taken
  EXPECT_EQ(l.consume(0, 1), Nanos(0));               // so one op is still there
  EXPECT_EQ(l.consume(0, 1), milliseconds(500));
  clock.now = milliseconds(500);
  EXPECT_EQ(l.consume(600, 1), Nanos(0));
}

TEST(RateLimiter, UpdateReplacesTheNamedBucketsOnly) {
  FakeClock clock;
  RateLimiterConfig c = ops_only(1, 0, 1000);
  c.bandwidth = TokenBucketConfig{100, 0, 1000};
  RateLimiter l(c, clock.get());
  EXPECT_EQ(l.consume(100, 1), Nanos(0));
  EXPECT_GT(l.consume(0, 1), Nanos(0));
  l.update(ops_only(5, 0, 1000));  // starts full; bandwidth keeps its (empty) level
  EXPECT_EQ(l.consume(0, 5), Nanos(0));
  EXPECT_EQ(l.consume(1, 0), milliseconds(10));
  l.update(ops_only(0, 0, 0));  // off
  RateLimiterConfig bandwidth_off;
  bandwidth_off.bandwidth = TokenBucketConfig{};
  l.update(bandwidth_off);
  EXPECT_FALSE(l.enabled());
  EXPECT_EQ(l.consume(1 << 30, 1000), Nanos(0));
}

TEST(RateLimiterConfig, UpdatedFollowsPatchSemantics) {
  RateLimiterConfig c = ops_only(5, 1, 100);
  c.bandwidth = TokenBucketConfig{1000, 0, 100};
  RateLimiterConfig u;
  u.ops = TokenBucketConfig{7, 0, 200};
  RateLimiterConfig after = c.updated(u);
  EXPECT_EQ(after.bandwidth, c.bandwidth);
  EXPECT_EQ(after.ops, (TokenBucketConfig{7, 0, 200}));
  u.bandwidth = TokenBucketConfig{0, 0, 0};
  after = c.updated(u);
  EXPECT_FALSE(after.bandwidth.has_value());
  EXPECT_TRUE(after.enabled());
  EXPECT_FALSE(RateLimiterConfig{}.enabled());
}

std::string check_error(const TokenBucketConfig& b) {
  try {
    check_token_bucket(b, "drive.rate_limiter.ops");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RateLimiterConfig, BoundsAndABucketThatNeverRefillsAreRefused) {
  EXPECT_EQ(check_error({10, 0, 0}),
            "drive.rate_limiter.ops.refill_time must not be 0 when size is not (the bucket would never refill)");
  EXPECT_EQ(check_error({kMaxBucketTokens + 1, 0, 10}),
            "drive.rate_limiter.ops.size must be between 0 and 1099511627776 (got 1099511627777)");
  EXPECT_EQ(check_error({1, kMaxBucketTokens + 1, 10}),
            "drive.rate_limiter.ops.one_time_burst must be between 0 and 1099511627776 (got 1099511627777)");
  EXPECT_EQ(check_error({1, 0, kMaxRefillTimeMs + 1}),
            "drive.rate_limiter.ops.refill_time must be between 0 and 3600000 (got 3600001)");
  EXPECT_EQ(check_error({0, 0, 0}), "");
  EXPECT_EQ(check_error({0, 0, 100}), "");  // size 0: off, as in Firecracker
  EXPECT_EQ(check_error({kMaxBucketTokens, kMaxBucketTokens, kMaxRefillTimeMs}), "");
}

}  // namespace
}  // namespace ember::virtio
