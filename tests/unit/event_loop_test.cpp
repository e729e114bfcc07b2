// EventLoop's dynamic registration: watch/modify/remove from inside handlers.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/event_loop.h"

namespace ember {
namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

TEST(EventLoop, WatchModifyRemove) {
  EventLoop loop;
  Pair p;
  int calls = 0;
  uint32_t seen = 0;
  ASSERT_TRUE(loop.watch(p.a.get(), EPOLLIN, [&](uint32_t ev) {
    ++calls;
    seen = ev;
    char c;
    while (::read(p.a.get(), &c, 1) > 0) {}
  }));
  EXPECT_FALSE(loop.watch(p.a.get(), EPOLLIN, [](uint32_t) {}));  // twice is refused
  ASSERT_EQ(::write(p.b.get(), "x", 1), 1);
  loop.run_once(100);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(seen & EPOLLIN);
  // Interest 0 takes it out of epoll: even a hang-up does not wake the loop.
  ASSERT_TRUE(loop.modify(p.a.get(), 0));
  p.b.reset();
  loop.run_once(10);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(loop.modify(p.a.get(), EPOLLIN));
  loop.run_once(100);
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(seen & EPOLLHUP);
  loop.remove(p.a.get());
  loop.run_once(10);
  EXPECT_EQ(calls, 2);
}

// A started loop counting the rounds in which `p.a` was readable (draining it), and the
// thread that ran the last; poke() makes it readable.
struct CountingLoop {
  EventLoop loop;
  Pair p;
  std::atomic<int> calls{0};
  std::thread::id thread;
  CountingLoop() {
    EXPECT_TRUE(loop.watch(p.a.get(), EPOLLIN, [this](uint32_t) {
      char c;
      while (::read(p.a.get(), &c, 1) > 0) {}
      thread = std::this_thread::get_id();
      ++calls;
    }));
    loop.start();
  }
  void poke() { EXPECT_EQ(::write(p.b.get(), "x", 1), 1); }
  // Waits up to 0.5 s for `n` rounds; the count then.
  int wait_for(int n) {
    for (int i = 0; i < 500 && calls < n; ++i) ::usleep(1000);
    return calls;
  }
};

// A paused VM's loop stops and starts again: what became ready while it was stopped is
// handled after the restart, and nothing in between.
TEST(EventLoop, StopsForAPauseAndRunsAgain) {
  CountingLoop h;
  h.poke();
  EXPECT_EQ(h.wait_for(1), 1);
  h.loop.stop();
  h.poke();
  ::usleep(20000);
  EXPECT_EQ(h.calls, 1);  // stopped: not handled
  h.loop.start();
  EXPECT_EQ(h.wait_for(2), 2);
  h.loop.stop();
}

TEST(EventLoop, HandlerRemovesAnotherReadyOne) {
  EventLoop loop;
  Pair p, q;
  int first = 0, second = 0;
  // Whichever runs first removes the other, whose event is already fetched.
  loop.watch(p.a.get(), EPOLLIN, [&](uint32_t) {
    ++first;
    loop.remove(q.a.get());
    loop.remove(p.a.get());
  });
  loop.watch(q.a.get(), EPOLLIN, [&](uint32_t) {
    ++second;
    loop.remove(p.a.get());
    loop.remove(q.a.get());
  });
  ASSERT_EQ(::write(p.b.get(), "x", 1), 1);
  ASSERT_EQ(::write(q.b.get(), "x", 1), 1);
  loop.run_once(100);
  EXPECT_EQ(first + second, 1);
  // And a new watch on a fresh fd from inside a handler works.
  Pair r;
  int third = 0;
  loop.watch(r.a.get(), EPOLLOUT, [&](uint32_t ev) {
    ++third;
    EXPECT_TRUE(ev & EPOLLOUT);
    loop.remove(r.a.get());
  });
  loop.run_once(100);
  EXPECT_EQ(third, 1);
}

// Found by mmio_transport_fuzz: with the loop not running (tests drive it with
// run_once), run_sync() ran before what was posted earlier.
TEST(EventLoop, RunSyncWithoutTheLoopRunsEarlierPostsFirst) {
  EventLoop loop;
  std::vector<int> order;
  loop.post([&] { order.push_back(1); });
  loop.run_sync([&] { order.push_back(2); });
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  loop.run_once(0);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A drive's file swapped on a paused VM: the parked loop thread runs the work itself (its
// seccomp filter allows the io_uring slot update) and stays parked, handling nothing else.
TEST(EventLoop, RunOnThreadUsesTheParkedLoopThreadAndLeavesItParked) {
  CountingLoop h;
  h.poke();
  ASSERT_EQ(h.wait_for(1), 1);
  std::thread::id loop_thread = h.thread;
  h.loop.suspend();
  h.poke();
  std::thread::id ran_on;
  h.loop.run_on_thread([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, loop_thread);
  EXPECT_NE(ran_on, std::this_thread::get_id());
  ::usleep(20000);
  EXPECT_EQ(h.calls, 1);  // still parked: the readable fd waits for resume()
  h.loop.resume();
  EXPECT_EQ(h.wait_for(2), 2);
  // Running, it is run_sync().
  h.loop.run_on_thread([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, loop_thread);
  h.loop.stop();
}

}  // namespace
}  // namespace ember
