// What a jailer run created, taken back in reverse order if a later step fails (bad input must
// leave nothing behind). Actions work through descriptors opened before pivot_root, since the
// host's paths are gone after it.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace ember::jailer {

class Undo {
 public:
  void add(std::function<void()> action) { actions_.push_back(std::move(action)); }
  // Best effort: one action failing does not stop the others.
  void run() noexcept {
    while (!actions_.empty()) {
      try {
        actions_.back()();
      } catch (...) {
      }
      actions_.pop_back();
    }
  }

 private:
  std::vector<std::function<void()>> actions_;
};

}  // namespace ember::jailer
