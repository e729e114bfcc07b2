// How ember decides why a VM ended: the first report wins, and a panic seen on the console
// turns the reset or triple fault that follows it into a panic (exit 3).
#include <gtest/gtest.h>

#include "vmm/vm_exit.h"

namespace ember {
namespace {

TEST(ExitLatch, FirstReportWins) {
  ExitLatch latch;
  EXPECT_FALSE(latch.reported());
  latch.report(ExitKind::Signal, "SIGTERM");
  latch.report(ExitKind::TripleFault, "later");
  ASSERT_TRUE(latch.reported());
  EXPECT_EQ(latch.get().kind, ExitKind::Signal);
  EXPECT_EQ(latch.get().exit_code(), 130);
}

TEST(ExitLatch, ResetAfterAPanicIsAPanic) {
  ExitLatch latch;
  latch.note_panic("Kernel panic - not syncing: sysrq triggered crash");
  latch.report(ExitKind::GuestShutdown, "guest reset via i8042");
  EXPECT_EQ(latch.get().kind, ExitKind::GuestPanic);
  EXPECT_EQ(latch.get().exit_code(), 3);
  EXPECT_NE(latch.get().detail.find("sysrq triggered crash"), std::string::npos);
}

// Seen in the emulated host: the guest panicked and triple-faulted before its panic timeout
// reset it. The panic is the first cause; the triple fault stays in the message.
TEST(ExitLatch, TripleFaultAfterAPanicIsAPanicAndSaysSo) {
  ExitLatch latch;
  latch.note_panic("Kernel panic - not syncing: Attempted to kill init!");
  latch.note_panic("Kernel panic - not syncing: a second one");
  latch.report(ExitKind::TripleFault, "guest triple fault on vCPU 0 (KVM_EXIT_SHUTDOWN)");
  VmExit e = latch.get();
  EXPECT_EQ(e.kind, ExitKind::GuestPanic);
  EXPECT_EQ(e.exit_code(), 3);
  EXPECT_NE(e.detail.find("Attempted to kill init"), std::string::npos) << e.detail;
  EXPECT_EQ(e.detail.find("a second one"), std::string::npos) << e.detail;
  EXPECT_NE(e.detail.find("triple fault"), std::string::npos) << e.detail;
}

TEST(ExitLatch, WithoutAPanicTheKindIsKept) {
  ExitLatch shutdown, triple, error, signal;
  shutdown.report(ExitKind::GuestShutdown, "guest reset via i8042");
  triple.report(ExitKind::TripleFault, "guest triple fault");
  error.report(ExitKind::Error, "KVM_RUN failed");
  signal.report(ExitKind::Signal, "SIGINT");
  EXPECT_EQ(shutdown.get().exit_code(), 0);
  EXPECT_EQ(triple.get().exit_code(), 4);
  EXPECT_EQ(error.get().exit_code(), 1);
  EXPECT_EQ(signal.get().exit_code(), 130);
}

// A host-side stop or an ember failure after a panic is still reported as what it was.
TEST(ExitLatch, SignalOrErrorAfterAPanicKeepsTheirKind) {
  ExitLatch signal, error;
  signal.note_panic("Kernel panic - not syncing: x");
  error.note_panic("Kernel panic - not syncing: x");
  signal.report(ExitKind::Signal, "SIGTERM");
  error.report(ExitKind::Error, "KVM_RUN failed");
  EXPECT_EQ(signal.get().kind, ExitKind::Signal);
  EXPECT_EQ(error.get().kind, ExitKind::Error);
}

}  // namespace
}  // namespace ember
