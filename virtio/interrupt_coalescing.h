// When a device interrupts for requests it completed: at once, or a little later with
// more. A guest that keeps several requests outstanding (many threads on one disk) adds
// its next ones while it runs, so an interrupt held until it stops adding covers many
// completions: one interrupt and one handler run instead of one per request or two. A
// guest that waits for each request (depth 1) adds nothing meanwhile, and is interrupted
// at once. Pure decisions on a monotonic clock the owner injects; the device arms the
// timer (virtio/throttle_timer.h) and sends the interrupt.
//
// What it learns: the guest's pace, the time between two requests it adds without an
// interrupt in between (a gap that spans an interrupt measures the round trip instead).
// With no such gap seen, it never holds: a depth-1 guest is never held. A hold lasts
// until the guest has added nothing for twice its pace (the window), and never more than
// kMaxHold; one in which the guest added nothing makes the next ones wait (a backoff
// doubling from kFirstBackoff to kMaxBackoff interrupts sent at once), so a guest whose
// pace changed costs one window now and then, not every request.
#pragma once

#include <cstdint>
#include <functional>

#include "virtio/rate_limiter.h"

namespace ember::virtio {

class InterruptCoalescing {
 public:
  using Clock = MonotonicClock;
  // Bounds on the window: below kMinWindow a timer costs more than it saves; above
  // kMaxWindow the guest's pace is too slow to be worth waiting for (it is set to cover a
  // nested guest, whose pace is tens of times slower).
  static constexpr Nanos kMinWindow{5'000};
  static constexpr Nanos kMaxWindow{2'000'000};
  static constexpr Nanos kMaxHold{4'000'000};  // the longest a completion waits for its interrupt
  static constexpr uint32_t kFirstBackoff = 8;
  static constexpr uint32_t kMaxBackoff = 1024;

  explicit InterruptCoalescing(Clock clock = {});

  // The guest added requests (the device took at least one from its queue).
  void requests_added();
  // Completions are on the used ring and not signalled yet. Zero: interrupt now (then
  // call signalled()). Otherwise hold: ask again after that long (or sooner).
  Nanos decide();
  // An interrupt went out (not called when the driver wanted none: no interrupt spoiled
  // the gap to the next request).
  void signalled();
  // Ends a hold at once (drain, reset): the caller signals what is pending.
  void cancel_hold();

  bool holding() const { return holding_; }
  // Twice the guest's pace within the bounds; zero while the pace is unknown.
  Nanos window() const;
  uint64_t holds() const { return holds_; }

 private:
  Nanos now() const { return now_of(clock_); }

  Clock clock_;
  Nanos pace_{0};  // moving average of gaps between requests, zero: none seen
  Nanos last_added_{0};
  bool added_since_signal_ = false;  // a request came since the last interrupt
  bool timed_ = false;               // last_added_ is the time of the latest request
  bool holding_ = false;
  Nanos hold_start_{0};
  bool added_in_hold_ = false;
  uint32_t skip_ = 0;  // interrupts still sent at once after a hold that gained nothing
  uint32_t backoff_ = kFirstBackoff;
  uint64_t holds_ = 0;
};

}  // namespace ember::virtio
