// The jailer's command line: every bad input refused with the message a user would read.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/util/error.h"
#include "jailer/args.h"

namespace ember::jailer {
namespace {

namespace fs = std::filesystem;

class JailerArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    dir_ = fs::path(tmp ? tmp : "/tmp") / ("ember-jailer-args-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    exec_ = (dir_ / "ember").string();
    std::ofstream(exec_) << "binary";
    fs::create_symlink(exec_, dir_ / "link");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // --id, --exec-file, --uid, --gid that parse, then `extra`.
  std::vector<std::string> good(std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"--id", "vm-1", "--exec-file", exec_, "--uid", "123", "--gid", "456"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // The message of the Error parsing `args` throws ("" when it parses).
  static std::string error_of(const std::vector<std::string>& args) {
    try {
      parse_jailer_args(args);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  // `args` without the flag `name` and its value.
  static std::vector<std::string> without(std::vector<std::string> args, const std::string& name) {
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == name) args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
    }
    return args;
  }

  fs::path dir_;
  std::string exec_;
};

TEST_F(JailerArgsTest, ParsesEveryFlagWithDefaults) {
  JailerArgs a = parse_jailer_args(good());
  EXPECT_EQ(a.id, "vm-1");
  EXPECT_EQ(a.exec_name, "ember");
  EXPECT_EQ(a.uid, 123u);
  EXPECT_EQ(a.gid, 456u);
  EXPECT_EQ(a.chroot_base_dir, "/srv/jailer");
  EXPECT_EQ(a.parent_cgroup, "ember");
  EXPECT_EQ(a.no_file, 2048u);
  EXPECT_FALSE(a.fsize);
  EXPECT_FALSE(a.netns);
  EXPECT_FALSE(a.daemonize);
  EXPECT_FALSE(a.new_pid_ns);
  EXPECT_EQ(a.cgroup_version, CgroupVersion::Auto);

  a = parse_jailer_args(good({"--chroot-base-dir", "/tmp/j", "--netns", "/proc/self/ns/net", "--daemonize", "--new-pid-ns",
                              "--cgroup-version", "1", "--cgroup", "cpu.shares=100", "--cgroup", "cpu.max=max 100000",
                              "--parent-cgroup", "a/b", "--resource-limit", "fsize=1024", "--resource-limit",
                              "no-file=64", "--", "--api-sock", "/api.sock", "--id", "ignored"}));
  EXPECT_EQ(a.chroot_base_dir, "/tmp/j");
  EXPECT_EQ(a.netns, "/proc/self/ns/net");
  EXPECT_TRUE(a.daemonize);
  EXPECT_TRUE(a.new_pid_ns);
  EXPECT_EQ(a.cgroup_version, CgroupVersion::V1);
  ASSERT_EQ(a.cgroups.size(), 2u);
  EXPECT_EQ(a.cgroups[0].file, "cpu.shares");
  EXPECT_EQ(a.cgroups[0].value, "100");
  EXPECT_EQ(a.cgroups[1].value, "max 100000");
  EXPECT_EQ(a.parent_cgroup, "a/b");
  EXPECT_EQ(a.fsize, 1024u);
  EXPECT_EQ(a.no_file, 64u);
  EXPECT_EQ(a.exec_args, (std::vector<std::string>{"--api-sock", "/api.sock", "--id", "ignored"}));
  EXPECT_TRUE(parse_jailer_args({"--help"}).help);
}

TEST_F(JailerArgsTest, MissingRequiredFlags) {
  for (const char* flag : {"--id", "--exec-file", "--uid", "--gid"}) {
    EXPECT_EQ(error_of(without(good(), flag)), std::string(flag) + " is required");
  }
  EXPECT_EQ(error_of(good({"--netns"})), "--netns needs a value");
}

TEST_F(JailerArgsTest, BadIds) {
  EXPECT_EQ(error_of({"--id", "a_b"}), "--id 'a_b' may contain only letters, digits and '-'");
  EXPECT_EQ(error_of({"--id", "../x"}), "--id '../x' may contain only letters, digits and '-'");
  EXPECT_EQ(error_of({"--id", ""}), "--id must not be empty");
  EXPECT_EQ(error_of({"--id", std::string(65, 'a')}), "--id is 65 characters long, at most 64 are allowed");
  std::vector<std::string> longest = without(good(), "--id");
  longest.insert(longest.end(), {"--id", std::string(64, 'Z')});
  EXPECT_EQ(error_of(longest), "");
}

TEST_F(JailerArgsTest, BadExecFiles) {
  auto with_exec = [&](const std::string& path) {
    std::vector<std::string> a = without(good(), "--exec-file");
    a.insert(a.end(), {"--exec-file", path});
    return error_of(a);
  };
  std::string link = (dir_ / "link").string(), missing = (dir_ / "missing").string();
  EXPECT_EQ(with_exec(link), "--exec-file '" + link + "' is a symbolic link; give the file it points to");
  EXPECT_EQ(with_exec(missing), "cannot use --exec-file '" + missing + "': No such file or directory");
  EXPECT_EQ(with_exec(dir_.string()), "--exec-file '" + dir_.string() + "' is a directory, not a regular file");
  EXPECT_EQ(with_exec(""), "--exec-file must not be empty");
}

TEST_F(JailerArgsTest, BadIdsForUidAndGid) {
  auto with = [&](const std::string& flag, const std::string& value) {
    std::vector<std::string> a = without(good(), flag);
    a.insert(a.end(), {flag, value});
    return error_of(a);
  };
  EXPECT_EQ(with("--uid", "abc"), "--uid must be a number from 0 to 4294967294 (got 'abc')");
  EXPECT_EQ(with("--uid", "-1"), "--uid must be a number from 0 to 4294967294 (got '-1')");
  EXPECT_EQ(with("--gid", "4294967295"), "--gid must be a number from 0 to 4294967294 (got '4294967295')");
  EXPECT_EQ(with("--gid", ""), "--gid must be a number from 0 to 4294967294 (got '')");
}

TEST_F(JailerArgsTest, BadCgroupsAndLimits) {
  EXPECT_EQ(error_of(good({"--cgroup", "cpu.shares"})), "--cgroup 'cpu.shares' must be FILE=VALUE, FILE a cgroup file such as cpu.shares");
  EXPECT_EQ(error_of(good({"--cgroup", "../x.y=1"})), "--cgroup '../x.y=1' must be FILE=VALUE, FILE a cgroup file such as cpu.shares");
  EXPECT_EQ(error_of(good({"--cgroup", "shares=1"})), "--cgroup 'shares=1' must be FILE=VALUE, FILE a cgroup file such as cpu.shares");
  EXPECT_EQ(error_of(good({"--cgroup", "cgroup.procs=1"})), "--cgroup cgroup.procs: only the jailer moves itself into its cgroup");
  EXPECT_EQ(error_of(good({"--cgroup-version", "3"})), "--cgroup-version must be 1 or 2 (got '3')");
  EXPECT_EQ(error_of(good({"--parent-cgroup", "../up"})), "--parent-cgroup '../up' must be a relative path of names, without '.' or '..'");
  EXPECT_EQ(error_of(good({"--parent-cgroup", "/abs"})), "--parent-cgroup '/abs' must be a relative path of names, without '.' or '..'");
  for (const char* bad : {"fsize", "fsize=", "fsize=-1", "nofile=3", "no-file=1k"}) {
    EXPECT_EQ(error_of(good({"--resource-limit", bad})),
              std::string("--resource-limit '") + bad + "' must be fsize=N or no-file=N, N a whole number");
  }
}

TEST_F(JailerArgsTest, UnknownRepeatedAndOtherBadFlags) {
  EXPECT_EQ(error_of(good({"--api-sock", "/x"})), "unknown option '--api-sock' (ember's own options go after --)");
  EXPECT_EQ(error_of(good({"--uid", "1"})), "--uid is given more than once");
  EXPECT_EQ(error_of(good({"--chroot-base-dir", "relative"})), "--chroot-base-dir must be an absolute path (got 'relative')");
  std::string netns = (dir_ / "no-netns").string();
  EXPECT_EQ(error_of(good({"--netns", netns})), "cannot use --netns '" + netns + "': No such file or directory");
}

}  // namespace
}  // namespace ember::jailer
