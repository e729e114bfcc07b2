// The VM's event thread: one epoll loop that owns device queues, backend fds and
// io_uring rings. Other threads talk to it only through post()/run_sync().
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/util/unique_fd.h"

namespace ember {

class EventLoop {
 public:
  EventLoop();  // throws Error if epoll or eventfd cannot be created
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `on_readable` on the loop thread whenever `fd` is readable (level
  // triggered: the handler must drain it). Setup time only, before start().
  void add(int fd, std::function<void()> on_readable);
  // Runs `fn` on the loop thread soon.
  void post(std::function<void()> fn);
  // Runs `fn` on the loop thread and waits for it; runs it inline when called from
  // the loop thread or when the loop is not running.
  void run_sync(const std::function<void()>& fn);

  void start();
  void stop();  // idempotent; joins the thread
  // Waits up to `timeout_ms` and handles what is ready, on the caller's thread
  // (tests drive the loop this way instead of start()).
  void run_once(int timeout_ms);

 private:
  struct Handler {
    int fd;
    std::function<void()> fn;
  };
  void run_posted();
  void loop();

  UniqueFd epoll_;
  UniqueFd wake_;
  std::vector<std::unique_ptr<Handler>> handlers_;
  Handler wake_handler_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace ember
