#include "virtio/throttle_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include "base/util/error.h"
#include "virtio/guest_warning.h"

namespace ember::virtio {

ThrottleTimer::ThrottleTimer(EventLoop& loop, std::function<void()> on_expiry, const std::string& name)
    : loop_(loop), on_expiry_(std::move(on_expiry)), name_(name) {
  fd_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd_.valid()) fail(name_, ": cannot create the rate limiter's timerfd: ", errno_text());
  loop_.add(fd_.get(), [this] { on_readable(); });
}

ThrottleTimer::~ThrottleTimer() { loop_.remove(fd_.get()); }

void ThrottleTimer::arm(Nanos after) {
  int64_t ns = std::max<int64_t>(after.count(), 1);  // 0 would disarm it
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) != 0) {
    // Not expected with a valid timerfd; the queue then resumes at the next notification.
    warn_limited(cat(name_, ": cannot arm the rate limiter's timer: ", errno_text()));
  }
}

void ThrottleTimer::expire_now() { loop_.post(on_expiry_); }

void ThrottleTimer::on_readable() {
  uint64_t expirations;
  while (::read(fd_.get(), &expirations, sizeof(expirations)) > 0) {
  }
  on_expiry_();
}

}  // namespace ember::virtio
