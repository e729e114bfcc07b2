#include "virtio/guest_warning.h"

#include <atomic>
#include <chrono>

#include "base/util/log.h"

namespace ember::virtio {

namespace {
constexpr int kBurstPerSecond = 10;
std::atomic<int64_t> g_window{0};
std::atomic<int> g_in_window{0};
std::atomic<int> g_dropped{0};
}  // namespace

void warn_limited(const std::string& message) {
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t window = g_window.load(std::memory_order_relaxed);
  if (now != window && g_window.compare_exchange_strong(window, now)) {
    g_in_window = 0;
    int dropped = g_dropped.exchange(0);
    if (dropped > 0) log::warn(std::to_string(dropped) + " more warnings suppressed (rate limit)");
  }
  if (g_in_window.fetch_add(1) >= kBurstPerSecond) {
    g_dropped.fetch_add(1);
    return;
  }
  log::warn(message);
}

void warn_guest(const std::string& message) { warn_limited("guest: " + message); }

}  // namespace ember::virtio
