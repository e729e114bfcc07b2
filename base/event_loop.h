// The VM's event thread: one epoll loop that owns device queues, backend fds and
// io_uring rings. Other threads talk to it only through post()/run_sync().
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/util/unique_fd.h"

namespace ember {

class EventLoop {
 public:
  EventLoop();  // throws Error if epoll or eventfd cannot be created
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `on_readable` on the loop thread whenever `fd` is readable (level
  // triggered: the handler must drain it). Before start() or on the loop thread.
  void add(int fd, std::function<void()> on_readable);

  // Dynamic registration, on the loop thread (or before start()): `on_ready`
  // gets the ready epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, ...) for `fd`.
  // `events` 0 keeps the handler but takes the fd out of epoll, so a hung-up
  // socket the owner is not interested in cannot wake the loop.
  using IoHandler = std::function<void(uint32_t events)>;
  // They never throw: false (errno set) when epoll refuses, e.g. out of memory.
  bool watch(int fd, uint32_t events, IoHandler on_ready);
  bool modify(int fd, uint32_t events);
  // Forgets `fd` (before the caller closes it). Safe from inside any handler,
  // including fd's own: its pending events in this round are discarded.
  void remove(int fd);
  // Runs `fn` on the loop thread soon.
  void post(std::function<void()> fn);
  // Runs `fn` on the loop thread and waits for it; runs it inline when called from
  // the loop thread, or when the loop is not running or suspended (after what was
  // posted before it).
  void run_sync(const std::function<void()>& fn);
  // As run_sync(), but a suspended loop's own thread runs `fn` too (it wakes for just
  // that and parks again): for work only the loop thread's seccomp filter allows. `fn`
  // must not throw, nor touch what a paused VM must keep still (guest memory).
  void run_on_thread(const std::function<void()>& fn);

  void start();  // also after stop()
  void stop();   // idempotent; joins the thread (a suspended loop is woken to end)
  // A paused VM's loop: suspend() returns once the loop thread waits, handling nothing,
  // until resume(). The thread stays: a new one would inherit the seccomp filter of
  // whichever thread resumed the VM, not start from its own. Both from one other thread.
  void suspend();
  void resume();
  // Waits up to `timeout_ms` and handles what is ready, on the caller's thread
  // (tests drive the loop this way instead of start()).
  void run_once(int timeout_ms);

 private:
  struct Handler {
    int fd;
    IoHandler fn;
    uint32_t events = 0;  // what epoll watches; 0: not in epoll
    bool removed = false;
  };
  bool set_events(Handler& handler, uint32_t events);
  void run_posted();
  void loop();

  UniqueFd epoll_;
  UniqueFd wake_;
  std::unordered_map<int, std::unique_ptr<Handler>> handlers_;
  // Removed during a dispatch round: kept alive until the round ends because
  // events already fetched may still point at them.
  std::vector<std::unique_ptr<Handler>> retired_;
  Handler wake_handler_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::thread thread_;
  std::mutex park_mu_;
  std::condition_variable park_cv_;
  bool suspend_requested_ = false;  // under park_mu_
  bool parked_ = false;             // under park_mu_: the loop thread waits in park()
  const std::function<void()>* parked_work_ = nullptr;  // under park_mu_: run_on_thread()
  void park();
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace ember
