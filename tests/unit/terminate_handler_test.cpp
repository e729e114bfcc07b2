// ember's std::terminate handler (api/terminate_handler.cpp, linked into this binary too):
// it names the uncaught exception and aborts.
#include <gtest/gtest.h>

#include <exception>
#include <stdexcept>

namespace {

void throw_disk_on_fire() { throw std::runtime_error("disk on fire"); }
// An exception leaving a noexcept function ends in std::terminate.
void call_noexcept(void (*f)()) noexcept { f(); }

TEST(TerminateHandler, NamesTheUncaughtException) {
  EXPECT_DEATH(call_noexcept(throw_disk_on_fire),
               "ember: fatal: std::terminate called after an uncaught exception: disk on fire");
}

TEST(TerminateHandler, WithoutAnException) {
  EXPECT_DEATH(std::terminate(), "ember: fatal: std::terminate called\n");
}

}  // namespace
