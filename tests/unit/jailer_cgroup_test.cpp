// Where the jailer's cgroup goes, from sample /proc/self/mountinfo and /proc/self/cgroup text.
#include <gtest/gtest.h>

#include "base/util/error.h"
#include "jailer/cgroup.h"

namespace ember::jailer {
namespace {

// A hybrid host (this development machine's layout): v1 controllers and cgroup2 at unified.
constexpr const char* kHybrid =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct,cpu\\040x rw,relatime shared:5 - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

constexpr const char* kV2Only = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

constexpr const char* kProcCgroup =
    "4:memory:/process_api/8e15\n"
    "3:cpuset:/\n"
    "1:cpu:/\n"
    "0::/user.slice/session-1.scope\n";

JailerArgs args_with(CgroupVersion version, std::vector<CgroupSetting> settings) {
  JailerArgs a;
  a.id = "vm-1";
  a.cgroup_version = version;
  a.cgroups = std::move(settings);
  return a;
}

TEST(JailerCgroup, ParsesMountinfoOfAHybridHost) {
  CgroupMounts m = parse_mountinfo(kHybrid);
  ASSERT_EQ(m.v2.size(), 1u);
  EXPECT_EQ(m.v2[0].path, "/sys/fs/cgroup/unified");
  ASSERT_EQ(m.v1.size(), 5u);
  EXPECT_EQ(m.v1[0].path, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(m.v1[0].controllers, (std::vector<std::string>{"rw", "cpu"}));
  EXPECT_EQ(m.v1[1].path, "/sys/fs/cgroup/cpuacct,cpu x");  // \040 unescaped; optional fields skipped
  EXPECT_TRUE(parse_mountinfo("garbage\n\n1 2 3\n").v1.empty());
}

TEST(JailerCgroup, AutoPicksV2WhereMountedAndEnablesItsControllers) {
  std::vector<CgroupDir> dirs = plan_cgroups(
      args_with(CgroupVersion::Auto, {{"cpu.max", "max"}, {"cpu.weight", "50"}, {"cgroup.max.depth", "2"}}),
      parse_mountinfo(kV2Only));
  ASSERT_EQ(dirs.size(), 1u);
  EXPECT_TRUE(dirs[0].v2);
  EXPECT_EQ(dirs[0].mount, "/sys/fs/cgroup");
  EXPECT_EQ(dirs[0].relative, "ember/vm-1");
  EXPECT_EQ(dirs[0].settings.size(), 3u);
  EXPECT_EQ(dirs[0].enable, std::vector<std::string>{"cpu"});  // cgroup.* files need no controller

  dirs = plan_cgroups(args_with(CgroupVersion::Auto, {}), parse_mountinfo(kHybrid));
  ASSERT_EQ(dirs.size(), 1u);  // v2 without settings: still the jail's own cgroup
  EXPECT_EQ(dirs[0].mount, "/sys/fs/cgroup/unified");
}

TEST(JailerCgroup, V1PutsEachSettingInItsControllersHierarchy) {
  JailerArgs a = args_with(CgroupVersion::V1, {{"cpu.shares", "100"}, {"memory.limit_in_bytes", "1G"}, {"cpu.cfs_quota_us", "5"}});
  a.parent_cgroup = "fc/x";
  std::vector<CgroupDir> dirs = plan_cgroups(a, parse_mountinfo(kHybrid));
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_FALSE(dirs[0].v2);
  EXPECT_EQ(dirs[0].mount, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(dirs[0].relative, "fc/x/vm-1");
  EXPECT_EQ(dirs[0].settings.size(), 2u);
  EXPECT_EQ(dirs[1].mount, "/sys/fs/cgroup/memory");
  EXPECT_EQ(dirs[1].settings.size(), 1u);
  EXPECT_TRUE(plan_cgroups(args_with(CgroupVersion::V1, {}), parse_mountinfo(kHybrid)).empty());
}

TEST(JailerCgroup, MissingHierarchiesAreErrors) {
  try {
    plan_cgroups(args_with(CgroupVersion::V1, {{"blkio.weight", "10"}}), parse_mountinfo(kHybrid));
    FAIL() << "no blkio hierarchy in the sample";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--cgroup blkio.weight: no cgroup v1 hierarchy has the 'blkio' controller");
  }
  try {
    plan_cgroups(args_with(CgroupVersion::V2, {}), parse_mountinfo(""));
    FAIL() << "no cgroup2 mount in the sample";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--cgroup-version 2: this host has no cgroup2 mount in /proc/self/mountinfo");
  }
}

TEST(JailerCgroup, CurrentCgroupPerHierarchy) {
  CgroupMounts m = parse_mountinfo(kHybrid);
  std::vector<CgroupDir> v1 = plan_cgroups(args_with(CgroupVersion::V1, {{"memory.high", "1"}, {"cpuset.cpus", "0"}}), m);
  EXPECT_EQ(current_cgroup(kProcCgroup, v1[0]), "process_api/8e15");
  EXPECT_EQ(current_cgroup(kProcCgroup, v1[1]), "");
  std::vector<CgroupDir> v2 = plan_cgroups(args_with(CgroupVersion::V2, {}), m);
  EXPECT_EQ(current_cgroup(kProcCgroup, v2[0]), "user.slice/session-1.scope");
  EXPECT_THROW(current_cgroup("1:cpu:/\n", v2[0]), Error);
}

}  // namespace
}  // namespace ember::jailer
