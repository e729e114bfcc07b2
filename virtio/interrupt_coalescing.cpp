#include "virtio/interrupt_coalescing.h"

#include <algorithm>

namespace ember::virtio {

InterruptCoalescing::InterruptCoalescing(Clock clock) : clock_(std::move(clock)) {}

Nanos InterruptCoalescing::window() const {
  if (pace_.count() == 0 || 2 * pace_ > kMaxWindow) return Nanos{0};
  return std::max(2 * pace_, kMinWindow);
}

void InterruptCoalescing::requests_added() {
  // A guest interrupted since its last request (every request at depth 1) costs no clock
  // read: its time would only start a gap that the interrupt already spoiled. So the first
  // request after an interrupt is not timed (unless a hold is on), and a gap needs three
  // requests in a row.
  if (!added_since_signal_ && !holding_) {
    added_since_signal_ = true;
    timed_ = false;
    return;
  }
  Nanos t = now();
  if (added_since_signal_ && timed_ && t > last_added_) {
    // A gap far beyond the window says little about the pace: capped, it moves the
    // average out of holding range without swamping it.
    Nanos gap = std::min(t - last_added_, 2 * kMaxWindow);
    pace_ = pace_.count() == 0 ? gap : (7 * pace_ + gap) / 8;
  }
  added_since_signal_ = true;
  last_added_ = t;
  timed_ = true;
  if (holding_) added_in_hold_ = true;
}

Nanos InterruptCoalescing::decide() {
  Nanos w = window();
  if (!holding_) {
    if (skip_ > 0) {
      --skip_;
      return Nanos{0};
    }
    if (w.count() == 0) return Nanos{0};
    Nanos t = now();  // read only when a hold may start or end: never at depth 1
    holding_ = true;
    hold_start_ = t;
    added_in_hold_ = false;
    ++holds_;
    return w;
  }
  Nanos t = now();
  Nanos quiet_since = added_in_hold_ ? std::max(last_added_, hold_start_) : hold_start_;
  Nanos end = std::min(quiet_since + w, hold_start_ + kMaxHold);
  if (w.count() != 0 && t < end) return end - t;
  holding_ = false;
  if (added_in_hold_) {
    backoff_ = kFirstBackoff;
  } else {
    skip_ = backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  }
  return Nanos{0};
}

void InterruptCoalescing::signalled() { added_since_signal_ = false; }

void InterruptCoalescing::cancel_hold() { holding_ = false; }

}  // namespace ember::virtio
