// start_thread: every thread ember starts carries its role and its name.
#include <gtest/gtest.h>
#include <pthread.h>

#include <string>

#include "base/util/thread.h"

namespace ember {
namespace {

TEST(Thread, StartedThreadHasItsRoleAndName) {
  ThreadRole seen = ThreadRole::Main;
  char name[16] = {};
  std::thread t = start_thread(ThreadRole::Event, "ember-event", [&] {
    seen = current_thread_role();
    pthread_getname_np(pthread_self(), name, sizeof(name));
  });
  t.join();
  EXPECT_EQ(seen, ThreadRole::Event);
  EXPECT_STREQ(name, "ember-event");
  EXPECT_EQ(current_thread_role(), ThreadRole::Main);  // the caller's own is untouched
  EXPECT_STREQ(thread_role_name(ThreadRole::Vcpu), "vcpu");
}

TEST(Thread, LongNamesAreCutToWhatTheKernelKeeps) {
  char name[16] = {};
  std::thread t = start_thread(ThreadRole::Vcpu, "ember-vcpu-with-a-long-name", [&] {
    pthread_getname_np(pthread_self(), name, sizeof(name));
  });
  t.join();
  EXPECT_STREQ(name, "ember-vcpu-with");
}

}  // namespace
}  // namespace ember
