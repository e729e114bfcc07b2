// A std::thread that joins when destroyed (std::thread would terminate the process).
#pragma once

#include <thread>
#include <utility>

namespace ember {

class JoiningThread {
 public:
  JoiningThread() = default;
  template <typename F>
  explicit JoiningThread(F&& f) : thread_(std::forward<F>(f)) {}
  JoiningThread(JoiningThread&&) noexcept = default;
  JoiningThread& operator=(JoiningThread&& other) noexcept {
    join();
    thread_ = std::move(other.thread_);
    return *this;
  }
  ~JoiningThread() { join(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::thread& get() { return thread_; }

 private:
  std::thread thread_;
};

}  // namespace ember
