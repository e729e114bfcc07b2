// The one-shot timer a rate-limited device waits on: a timerfd on the VM's event loop,
// armed for exactly the time the limiter says, so a throttled queue costs no polling.
#pragma once

#include <functional>
#include <string>

#include "base/event_loop.h"
#include "base/util/unique_fd.h"
#include "virtio/rate_limiter.h"

namespace ember::virtio {

class ThrottleTimer {
 public:
  // Creates the timerfd (at setup: the event thread's filter has no timerfd_create) and
  // has `loop` call `on_expiry` on the event thread when it expires. Throws Error.
  ThrottleTimer(EventLoop& loop, std::function<void()> on_expiry, const std::string& name);
  ~ThrottleTimer();
  ThrottleTimer(const ThrottleTimer&) = delete;
  ThrottleTimer& operator=(const ThrottleTimer&) = delete;

  // Event thread only (timerfd_settime is in its filter, not in the main thread's).
  void arm(Nanos after);
  // Any thread: `on_expiry` runs on the event thread soon (through the loop's post, an
  // eventfd write), e.g. after a PATCH changed the limiter while the VM was paused.
  void expire_now();

 private:
  void on_readable();
  EventLoop& loop_;
  std::function<void()> on_expiry_;
  std::string name_;
  UniqueFd fd_;
};

}  // namespace ember::virtio
