// The boot timeline: each phase recorded once, JSON with only the phases reached.
#include <gtest/gtest.h>

#include "vmm/boot_timeline.h"

namespace ember {
namespace {

TEST(BootTimeline, RecordsEachPhaseOnceAndInJson) {
  BootTimeline t;
  EXPECT_FALSE(t.marked(BootPhase::KvmReady));
  EXPECT_EQ(t.to_json(), "{}");
  t.mark(BootPhase::KvmReady);
  ASSERT_TRUE(t.marked(BootPhase::KvmReady));
  int64_t first = t.wall_us(BootPhase::KvmReady);
  EXPECT_GE(first, 0);
  EXPECT_GE(t.cpu_us(BootPhase::KvmReady), 0);
  t.mark(BootPhase::KvmReady);  // a second mark does not move it
  EXPECT_EQ(t.wall_us(BootPhase::KvmReady), first);
  t.mark(BootPhase::BootComplete);
  EXPECT_GE(t.wall_us(BootPhase::BootComplete), first);
  std::string json = t.to_json();
  EXPECT_NE(json.find("\"kvm_ready\": {\"wall_us\": "), std::string::npos) << json;
  EXPECT_NE(json.find("\"boot_complete\": {\"wall_us\": "), std::string::npos) << json;
  EXPECT_EQ(json.find("memory_ready"), std::string::npos) << json;
}

TEST(BootTimeline, AnUnmarkedPhaseCanBeMarkedAgain) {
  BootTimeline t;
  t.mark(BootPhase::RestoreRequested);
  ASSERT_TRUE(t.marked(BootPhase::RestoreRequested));
  EXPECT_NE(t.to_json().find("\"restore_requested\": {\"wall_us\": "), std::string::npos) << t.to_json();
  t.unmark(BootPhase::RestoreRequested);
  EXPECT_FALSE(t.marked(BootPhase::RestoreRequested));
  EXPECT_EQ(t.to_json(), "{}");
  t.mark(BootPhase::RestoreRequested);
  EXPECT_TRUE(t.marked(BootPhase::RestoreRequested));
  EXPECT_GE(t.cpu_us(BootPhase::RestoreRequested), 0);
}

}  // namespace
}  // namespace ember
