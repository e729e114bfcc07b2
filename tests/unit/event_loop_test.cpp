// EventLoop's dynamic registration: watch/modify/remove from inside handlers.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <unistd.h>

#include <atomic>
#include <vector>

#include "vmm/event_loop.h"

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

// A paused VM's loop stops and starts again: what became ready while it was stopped is
// handled after the restart, and nothing in between.
TEST(EventLoop, StopsForAPauseAndRunsAgain) {
  EventLoop loop;
  Pair p;
  std::atomic<int> calls{0};
  ASSERT_TRUE(loop.watch(p.a.get(), EPOLLIN, [&](uint32_t) {
    char c;
    while (::read(p.a.get(), &c, 1) > 0) {}
    ++calls;
  }));
  loop.start();
  ASSERT_EQ(::write(p.b.get(), "x", 1), 1);
  for (int i = 0; i < 500 && calls == 0; ++i) ::usleep(1000);
  EXPECT_EQ(calls, 1);
  loop.stop();
  ASSERT_EQ(::write(p.b.get(), "y", 1), 1);
  ::usleep(20000);
  EXPECT_EQ(calls, 1);  // stopped: not handled
  loop.start();
  for (int i = 0; i < 500 && calls == 1; ++i) ::usleep(1000);
  EXPECT_EQ(calls, 2);
  loop.stop();
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

}  // namespace
}  // namespace ember
