#include "base/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <future>

#include "base/util/error.h"
#include "base/util/eventfd.h"
#include "base/util/log.h"
#include "base/util/thread.h"

namespace ember {

namespace {
void drain(int fd) {
  uint64_t count;
  ssize_t ignored = ::read(fd, &count, sizeof(count));
  (void)ignored;
}
}  // namespace

EventLoop::EventLoop() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) fail("epoll_create1: ", errno_text());
  wake_ = make_eventfd("the event loop");
  wake_handler_ = {wake_.get(), [this](uint32_t) {
                     drain(wake_.get());
                     run_posted();
                   }, EPOLLIN};
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &wake_handler_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0) fail("epoll_ctl: ", errno_text());
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::add(int fd, std::function<void()> on_readable) {
  if (!watch(fd, EPOLLIN, [fn = std::move(on_readable)](uint32_t) { fn(); })) {
    fail("event loop: cannot watch fd ", fd, ": ", errno_text());
  }
}

bool EventLoop::watch(int fd, uint32_t events, IoHandler on_ready) {
  auto [it, added] = handlers_.try_emplace(fd, nullptr);
  if (!added) {
    errno = EEXIST;
    return false;
  }
  it->second = std::make_unique<Handler>(Handler{fd, std::move(on_ready)});
  if (set_events(*it->second, events)) return true;
  int err = errno;
  handlers_.erase(it);
  errno = err;
  return false;
}

bool EventLoop::modify(int fd, uint32_t events) {
  auto it = handlers_.find(fd);
  return it != handlers_.end() && set_events(*it->second, events);
}

void EventLoop::remove(int fd) {
  auto it = handlers_.find(fd);
  if (it == handlers_.end()) return;
  if (it->second->events) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  it->second->removed = true;
  retired_.push_back(std::move(it->second));
  handlers_.erase(it);
}

bool EventLoop::set_events(Handler& handler, uint32_t events) {
  if (events == handler.events) return true;
  int op = events == 0 ? EPOLL_CTL_DEL : handler.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &handler;
  if (::epoll_ctl(epoll_.get(), op, handler.fd, &ev) < 0) return false;
  handler.events = events;
  return true;
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
  signal_eventfd(wake_.get());
}

void EventLoop::run_sync(const std::function<void()>& fn) {
  if (std::this_thread::get_id() == thread_.get_id()) {
    fn();
    return;
  }
  bool parked;
  {
    std::lock_guard lock(park_mu_);
    parked = parked_;
  }
  if (!running_.load() || parked) {
    // In order, as the loop thread would: a posted activation must not run after the
    // reset that a later run_sync() stands for.
    run_posted();
    fn();
    return;
  }
  std::promise<void> done;
  post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void EventLoop::run_on_thread(const std::function<void()>& fn) {
  std::unique_lock lock(park_mu_);
  if (!parked_) {
    lock.unlock();
    run_sync(fn);
    return;
  }
  parked_work_ = &fn;
  park_cv_.notify_all();
  park_cv_.wait(lock, [this] { return parked_work_ == nullptr; });
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
}

void EventLoop::run_once(int timeout_ms) {
  epoll_event events[32];
  int n = ::epoll_wait(epoll_.get(), events, 32, timeout_ms);
  if (n < 0) {
    if (errno != EINTR) log::error(cat("event loop: epoll_wait: ", errno_text()));
    return;
  }
  for (int i = 0; i < n; ++i) {
    auto* handler = static_cast<Handler*>(events[i].data.ptr);
    if (!handler->removed) handler->fn(events[i].events);
  }
  retired_.clear();
}

void EventLoop::loop() {
  while (!stopping_.load()) run_once(-1);
  run_posted();  // a run_sync() caller may be waiting
}

void EventLoop::start() {
  if (running_.exchange(true)) return;
  stopping_ = false;  // a loop stopped for a pause starts again on resume
  thread_ = start_thread(ThreadRole::Event, "ember-event", [this] { loop(); });
}

void EventLoop::stop() {
  if (!running_.load()) return;
  stopping_ = true;
  resume();
  post([] {});
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

void EventLoop::suspend() {
  if (!running_.load()) return;
  std::unique_lock lock(park_mu_);
  if (suspend_requested_) return;
  suspend_requested_ = true;
  post([this] { park(); });
  park_cv_.wait(lock, [this] { return parked_; });
}

void EventLoop::park() {
  std::unique_lock lock(park_mu_);
  if (!suspend_requested_) return;  // resumed before it got here
  parked_ = true;
  park_cv_.notify_all();
  for (;;) {
    park_cv_.wait(lock, [this] { return !suspend_requested_ || parked_work_; });
    if (!parked_work_) break;
    (*parked_work_)();
    parked_work_ = nullptr;
    park_cv_.notify_all();
  }
  parked_ = false;
}

void EventLoop::resume() {
  {
    std::lock_guard lock(park_mu_);
    suspend_requested_ = false;
  }
  park_cv_.notify_all();
}

}  // namespace ember
