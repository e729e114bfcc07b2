// When a device interrupts: at once for a guest that waits for each request, held while a
// guest with many requests outstanding keeps adding more, and never longer than the bounds.
#include "virtio/interrupt_coalescing.h"

#include <gtest/gtest.h>

#include "tests/unit/fake_clock.h"

namespace ember::virtio {
namespace {

using std::chrono::microseconds;
using test::FakeClock;

struct Guest {
  FakeClock clock;
  InterruptCoalescing c{clock.get()};
  // The guest adds a request at `t` µs; the device completes it at once and decides.
  Nanos add_at(int64_t t) {
    clock.now = microseconds(t);
    c.requests_added();
    return c.decide();
  }
  Nanos decide_at(int64_t t) {
    clock.now = microseconds(t);
    return c.decide();
  }
};

TEST(InterruptCoalescing, AGuestThatWaitsForEachRequestIsInterruptedAtOnce) {
  Guest g;
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(g.add_at(i * 30), Nanos{0}) << i;
    g.c.signalled();  // its next request comes only after the interrupt
  }
  EXPECT_EQ(g.c.window(), Nanos{0});
  EXPECT_EQ(g.c.holds(), 0u);
}

// Each clock read is a system call where the host's clock source is not the TSC (an HPET
// under nested emulation): a depth-1 guest costs none, pace known or not.
TEST(InterruptCoalescing, AGuestInterruptedBeforeEachRequestCostsNoClockRead) {
  int reads = 0;
  InterruptCoalescing c([&] {
    ++reads;
    return Nanos{reads * 10'000};
  });
  for (int i = 0; i < 100; ++i) {
    c.requests_added();
    EXPECT_EQ(c.decide(), Nanos{0});
    c.signalled();
  }
  EXPECT_EQ(reads, 0);
}

TEST(InterruptCoalescing, HoldsWhileTheGuestKeepsAddingAndInterruptsOnceItStops) {
  Guest g;
  // Pace unknown: at once (and the driver wanted no interrupt). The first request after an
  // interrupt (here: after none) is not timed; the second is.
  EXPECT_EQ(g.add_at(0), Nanos{0});
  EXPECT_EQ(g.add_at(10), Nanos{0});
  // 10 µs later, no interrupt in between: the pace is 10 µs, the window 20.
  EXPECT_EQ(g.add_at(20), microseconds(20));
  EXPECT_TRUE(g.c.holding());
  EXPECT_EQ(g.c.window(), microseconds(20));
  // Each request added during the hold moves its end to 20 µs after it.
  EXPECT_EQ(g.add_at(30), microseconds(20));
  EXPECT_EQ(g.add_at(40), microseconds(20));
  EXPECT_EQ(g.decide_at(55), microseconds(5));
  EXPECT_EQ(g.decide_at(60), Nanos{0});  // quiet for a window: interrupt
  EXPECT_FALSE(g.c.holding());
  g.c.signalled();
  // The hold gained requests, so the next completion is held again.
  EXPECT_EQ(g.add_at(80), microseconds(20));
  EXPECT_EQ(g.c.holds(), 2u);
}

TEST(InterruptCoalescing, AHoldThatGainsNothingBacksOffDoublingEachTime) {
  Guest g;
  g.add_at(0);
  g.add_at(10);
  EXPECT_GT(g.add_at(20), Nanos{0});
  EXPECT_EQ(g.decide_at(40), Nanos{0});  // nothing added: the hold failed
  g.c.signalled();
  int64_t t = 1000;
  for (uint32_t i = 0; i < InterruptCoalescing::kFirstBackoff; ++i, t += 100) {
    EXPECT_EQ(g.decide_at(t), Nanos{0}) << i;
  }
  EXPECT_GT(g.decide_at(t), Nanos{0});  // tried again
  EXPECT_EQ(g.decide_at(t + 100), Nanos{0});  // failed again: twice as long a backoff
  t += 1000;
  for (uint32_t i = 0; i < 2 * InterruptCoalescing::kFirstBackoff; ++i, t += 100) {
    EXPECT_EQ(g.decide_at(t), Nanos{0}) << i;
  }
  EXPECT_GT(g.decide_at(t), Nanos{0});
  EXPECT_EQ(g.c.holds(), 3u);
}

// A guest that drops from many requests outstanding to one (its pace still known) costs a
// window now and then: the failed holds are fewer than log2 of the requests.
TEST(InterruptCoalescing, AGuestThatStopsAddingMeanwhileIsRarelyHeld) {
  Guest g;
  g.add_at(0);
  for (int i = 1; i <= 32; ++i) g.add_at(i * 10);  // a successful hold
  g.decide_at(400);
  g.c.signalled();
  uint64_t before = g.c.holds();
  int64_t t = 1000;
  for (int i = 0; i < 4096; ++i, t += 100) {
    Nanos wait = g.add_at(t);
    if (wait.count() > 0) {
      EXPECT_EQ(g.decide_at(t + 50), Nanos{0});  // quiet: the hold fails
    }
    g.c.signalled();
  }
  EXPECT_LE(g.c.holds() - before, 10u);  // skips of 8, 16, ..., 1024, then 1024 each
  EXPECT_GE(g.c.holds() - before, 1u);
}

TEST(InterruptCoalescing, NoHoldOutlastsTheMaximumHowEverFastTheGuestAdds) {
  Guest g;
  g.add_at(0);
  g.add_at(10);
  EXPECT_GT(g.add_at(20), Nanos{0});  // the hold begins at 20 µs
  int64_t max_us = std::chrono::duration_cast<microseconds>(InterruptCoalescing::kMaxHold).count();
  int64_t t = 30;
  for (; t < 20 + max_us; t += 10) {
    Nanos wait = g.add_at(t);
    ASSERT_GT(wait, Nanos{0}) << t;
    EXPECT_LE(microseconds(t) + wait, microseconds(20 + max_us)) << t;
  }
  EXPECT_EQ(g.add_at(t), Nanos{0});
}

TEST(InterruptCoalescing, AGuestTooSlowToWaitForIsNeverHeld) {
  Guest g;
  int64_t gap = std::chrono::duration_cast<microseconds>(InterruptCoalescing::kMaxWindow).count();  // > half
  for (int i = 0; i < 20; ++i) EXPECT_EQ(g.add_at(i * gap), Nanos{0}) << i;
  EXPECT_EQ(g.c.window(), Nanos{0});
  EXPECT_EQ(g.c.holds(), 0u);
}

TEST(InterruptCoalescing, TheWindowHasAFloor) {
  Guest g;
  g.add_at(0);
  g.clock.now = Nanos{500};  // 0.5 µs apart
  g.c.requests_added();
  g.clock.now = Nanos{1000};
  g.c.requests_added();
  EXPECT_EQ(g.c.window(), InterruptCoalescing::kMinWindow);
}

TEST(InterruptCoalescing, CancelEndsAHold) {
  Guest g;
  g.add_at(0);
  g.add_at(10);
  EXPECT_GT(g.add_at(20), Nanos{0});
  g.c.cancel_hold();
  EXPECT_FALSE(g.c.holding());
}

}  // namespace
}  // namespace ember::virtio
