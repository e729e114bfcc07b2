// Time for rate-limiter tests: a clock the test moves by hand (it decides how many
// tokens there are), and running an event loop for a stretch of real time (its timerfds
// decide when a throttled device looks again).
#pragma once

#include <chrono>
#include <functional>

#include "base/event_loop.h"
#include "virtio/rate_limiter.h"

namespace ember::test {

struct FakeClock {
  virtio::Nanos now{0};
  virtio::RateLimiter::Clock get() {
    return [this] { return now; };
  }
};

// Runs `loop` until `done` (checked after every round) or `ms` of real time passed; a
// signal that interrupts the wait only starts the next round.
inline void run_loop(EventLoop& loop, int ms, const std::function<bool()>& done = {}) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    if (done && done()) return;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    loop.run_once(static_cast<int>(left.count()));
  }
}

}  // namespace ember::test
