// The real ember-jailer, run as root on this host, starting jail_probe in ember's place: what
// the jailed process sees from inside (its report) and from outside (/proc/PID), cgroups v1
// and v2, namespaces, and that bad input, an id in use or a failing step leave nothing
// behind (no folder, cgroup or mount). Needs root and nothing else: no KVM.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "base/util/file_io.h"
#include "base/util/unique_fd.h"
#include "jailer/cgroup.h"

namespace ember::jailer {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kUid = 1234;
constexpr gid_t kGid = 2345;

std::string slurp(const fs::path& path) {
  try {
    return read_file(path.string(), "test input");
  } catch (const Error&) {
    return "";
  }
}

// pivot_root (and making "/" private) needs the caller's root to be a mount point; inside a
// chroot of a plain folder (tools/fresh-debian12.sh) it is not, and mountinfo lists no "/".
bool root_is_a_mount_point() {
  std::string mounts = slurp("/proc/self/mountinfo");
  return std::regex_search(mounts, std::regex("^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ / ", std::regex::multiline));
}

// A running (or finished) ember-jailer with its stdio on pipes.
struct Jailer {
  pid_t pid = -1;
  UniqueFd in, out, err;
  std::string output, errors;

  // Reads stdout until it holds `marker` or ends (10 s at most).
  bool wait_for(const std::string& marker) {
    for (int waited = 0; output.find(marker) == std::string::npos && waited < 10000; waited += 10) {
      pollfd p{out.get(), POLLIN, 0};
      if (::poll(&p, 1, 10) == 1) {
        char buf[4096];
        ssize_t n = ::read(out.get(), buf, sizeof(buf));
        if (n <= 0) break;
        output.append(buf, static_cast<size_t>(n));
      }
    }
    return output.find(marker) != std::string::npos;
  }
  // Closes stdin (the probe then exits) and returns the exit code.
  int finish() {
    in.reset();
    wait_for("\x01never");
    char buf[4096];
    for (ssize_t n; (n = ::read(err.get(), buf, sizeof(buf))) > 0;) errors.append(buf, static_cast<size_t>(n));
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // key=value lines of the probe's report.
  std::map<std::string, std::string> report() const { return parse(output); }
  static std::map<std::string, std::string> parse(const std::string& text) {
    std::map<std::string, std::string> r;
    size_t start = 0;
    for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string line = text.substr(start, end - start);
      size_t eq = line.find('=');
      if (eq != std::string::npos) r[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return r;
  }
};

// Starts the jailer with an extra inherited descriptor (9) and a variable in its environment,
// both of which it must not pass on.
Jailer start(const std::vector<std::string>& args, bool group_leader = false) {
  int in[2], out[2], err[2];
  EXPECT_EQ(::pipe2(in, O_CLOEXEC) | ::pipe2(out, O_CLOEXEC) | ::pipe2(err, O_CLOEXEC), 0);
  Jailer j;
  j.pid = ::fork();
  if (j.pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::dup2(1, 9);  // without O_CLOEXEC
    if (group_leader) ::setpgid(0, 0);  // as a shell's job: setsid() refuses a group leader
    std::vector<std::string> strings = {EMBER_JAILER_BIN};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    char secret[] = "EMBER_SECRET=1";
    char* env[] = {secret, nullptr};
    ::execve(EMBER_JAILER_BIN, argv.data(), env);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  j.in.reset(in[1]);
  j.out.reset(out[0]);
  j.err.reset(err[0]);
  return j;
}

// rmdir of a cgroup, which is busy until its last process has fully exited: a daemonized
// probe or ember that closed its stdout may still be on its way out (5 s at most).
bool remove_cgroup(const fs::path& dir) {
  for (int i = 0; i < 500; ++i) {
    if (::rmdir(dir.c_str()) == 0) return true;
    if (errno != EBUSY) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class JailerRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the jailer needs root (mounts, cgroups, mknod, setresuid); run as root";
    if (!root_is_a_mount_point()) {
      GTEST_SKIP() << "this process runs in a plain chroot (its root is not a mount point), where no jailer can "
                      "pivot_root; run outside it";
    }
    const char* tmp = std::getenv("TMPDIR");
    tmp_ = fs::path(tmp ? tmp : "/tmp") / ("ember-jailer-root-" + std::to_string(::getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
    base_ = tmp_ / "jails";
    parent_ = "ember-test-" + std::to_string(::getpid());
    mounts_ = parse_mountinfo(slurp("/proc/self/mountinfo"));
  }
  void TearDown() override {
    if (tmp_.empty()) return;  // skipped in SetUp: nothing was made
    std::vector<fs::path> hierarchies;
    for (const auto& m : mounts_.v2) hierarchies.push_back(m.path);
    for (const auto& m : mounts_.v1) hierarchies.push_back(m.path);
    for (const fs::path& h : hierarchies) {
      std::error_code ec;
      if (!fs::exists(h / parent_)) continue;
      for (const auto& child : fs::directory_iterator(h / parent_, ec)) {
        if (child.is_directory()) {
          EXPECT_TRUE(remove_cgroup(child.path())) << child.path() << ": " << std::strerror(errno);
        }
      }
      EXPECT_TRUE(remove_cgroup(h / parent_)) << h / parent_ << ": " << std::strerror(errno);
    }
    fs::remove_all(tmp_);
    // Every mount the jailer made lives in namespaces that ended with their processes. (Other
    // tests may mount elsewhere meanwhile: only this test's folder is looked for.)
    EXPECT_EQ(slurp("/proc/self/mountinfo").find(tmp_.string()), std::string::npos) << "a mount is left under " << tmp_;
  }

  std::vector<std::string> args(const std::string& id, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"--id", id, "--exec-file", JAIL_PROBE_BIN, "--uid", std::to_string(kUid),
                                  "--gid", std::to_string(kGid), "--chroot-base-dir", base_.string(),
                                  "--parent-cgroup", parent_};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  fs::path chroot(const std::string& id) const { return base_ / "jail_probe" / id / "root"; }
  std::string v2_mount() const { return mounts_.v2.empty() ? "" : mounts_.v2.front().path; }
  std::string v1_mount(const std::string& controller) const {
    for (const auto& m : mounts_.v1) {
      if (std::find(m.controllers.begin(), m.controllers.end(), controller) != m.controllers.end()) return m.path;
    }
    return "";
  }

  fs::path tmp_, base_;
  std::string parent_;
  CgroupMounts mounts_;
};

// Connects to ember's API socket and returns its answer to GET / ("" if it cannot connect).
std::string get_root(const fs::path& sock) {
  for (int i = 0; i < 1000 && !fs::exists(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return "";
  std::string answer;
  if (!write_all(fd.get(), "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")) return "";
  char buf[4096];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) answer.append(buf, static_cast<size_t>(n));
  return answer;
}

// The report a daemonized probe writes with --report-file (it is renamed into place whole),
// once it appears (10 s at most).
std::map<std::string, std::string> report_file(const fs::path& path) {
  for (int i = 0; i < 1000 && !fs::exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return Jailer::parse(slurp(path));
}

// /proc/PID/root names a root in another mount namespace as "/": compare the folders instead.
bool same_folder(const fs::path& a, const fs::path& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

std::string expected_node(const char* path) {
  struct stat st {};
  if (::stat(path, &st) < 0) return "missing";
  return "char " + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + " " +
         std::to_string(kUid) + ":" + std::to_string(kGid) + " 600";
}

TEST_F(JailerRoot, ProbeRunsConfinedAsAsked) {
  Jailer j = start(args("probe-1", {"--resource-limit", "fsize=1048576", "--", "--hello", "world"}));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.output;
  std::map<std::string, std::string> r = j.report();
  // From inside.
  EXPECT_EQ(r["args"], "/jail_probe --id probe-1 --hello world");
  EXPECT_EQ(r["uid"], "1234,1234,1234");
  EXPECT_EQ(r["gid"], "2345,2345,2345");
  EXPECT_EQ(r["groups"], "");
  EXPECT_EQ(r["cwd"], "/");
  EXPECT_EQ(r["root_entries"], "dev,jail_probe,run");
  EXPECT_EQ(r["nofile"], "2048,2048");
  EXPECT_EQ(r["fsize"], "1048576,1048576");
  EXPECT_EQ(r["env_count"], "0");
  // stdio and the id's lock, which the jailed process holds for as long as it runs.
  std::smatch lock_fd;
  ASSERT_TRUE(std::regex_match(r["fds"], lock_fd, std::regex("0,1,2,([0-9]+)"))) << r["fds"];
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(j.pid) + "/fd/" + lock_fd[1].str()),
            base_ / "jail_probe" / "probe-1" / "jailer.lock");
  for (const char* dev : {"/dev/kvm", "/dev/net/tun", "/dev/urandom", "/dev/userfaultfd"}) {
    EXPECT_EQ(r[dev], expected_node(dev)) << dev;
  }
  // From outside.
  std::string proc = "/proc/" + std::to_string(j.pid);
  EXPECT_TRUE(same_folder(proc + "/root/", chroot("probe-1")));
  if (!v2_mount().empty()) {
    EXPECT_NE(slurp(proc + "/cgroup").find("0::/" + parent_ + "/probe-1\n"), std::string::npos) << slurp(proc + "/cgroup");
  }
  std::string status = slurp(proc + "/status");
  EXPECT_TRUE(std::regex_search(status, std::regex("\nGroups:[ \t]*\n"))) << status;
  EXPECT_EQ(slurp(proc + "/environ"), "");
  struct stat placed {}, original {}, root {};
  ASSERT_EQ(::stat((chroot("probe-1") / "jail_probe").c_str(), &placed), 0);
  ASSERT_EQ(::stat(JAIL_PROBE_BIN, &original), 0);
  EXPECT_EQ(placed.st_size, original.st_size);
  EXPECT_EQ(placed.st_uid, 0u);
  EXPECT_EQ(placed.st_mode & 022, 0u) << "the jail's uid must not be able to change its binary";
  ASSERT_EQ(::stat(chroot("probe-1").c_str(), &root), 0);
  EXPECT_EQ(root.st_uid, kUid);
  struct stat run {};
  ASSERT_EQ(::stat((chroot("probe-1") / "run").c_str(), &run), 0);  // for ember's default API socket
  EXPECT_EQ(run.st_uid, kUid);
  EXPECT_EQ(run.st_mode & 07777, 0700u);
  EXPECT_EQ(slurp("/proc/self/mountinfo").find(base_.string()), std::string::npos) << "the jail's mounts leaked to the host";
  EXPECT_EQ(j.finish(), 0) << j.errors;
}

// The jail's mounts are slaves of the host's: a file system the host mounts into the chroot
// after the jailer started (under a shared mount, as Kata Containers' bind mounts of the
// guest's kernel and disks are) appears inside, and so does its unmount (that the jail's own
// mounts never reach the host is ProbeRunsConfinedAsAsked's check).
TEST_F(JailerRoot, HostMountsIntoTheChrootAfterStartAppearInside) {
  // The test's own shared mount: this machine's mounts may all be private.
  fs::create_directories(base_);
  ASSERT_EQ(::mount(base_.c_str(), base_.c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  ASSERT_EQ(::mount(nullptr, base_.c_str(), nullptr, MS_SHARED, nullptr), 0) << std::strerror(errno);
  fs::path late = chroot("probe-m") / "late";
  struct Unmount {
    fs::path late, base;
    ~Unmount() {
      ::umount2(late.c_str(), MNT_DETACH);
      ::umount2(base.c_str(), MNT_DETACH);
    }
  } unmount{late, base_};
  Jailer j = start(args("probe-m"));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.output;
  fs::create_directories(late);
  ASSERT_EQ(::mount("tmpfs", late.c_str(), "tmpfs", 0, "size=64k"), 0) << std::strerror(errno);
  std::ofstream(late / "marker") << "from the host";
  std::string inside = "/proc/" + std::to_string(j.pid) + "/root/late/marker";
  EXPECT_EQ(slurp(inside), "from the host") << "the host's mount did not reach the jail";
  EXPECT_EQ(::umount2(late.c_str(), 0), 0) << std::strerror(errno);
  EXPECT_FALSE(fs::exists(inside)) << "the host's unmount did not reach the jail";
  EXPECT_EQ(j.finish(), 0) << j.errors;
}

// The executable placed in the chroot as `mode` (owned by root) gives: a hard link to it
// (same inode) or a copy, and that file's mode; the jail's uid runs it either way.
struct Placed {
  bool linked = false;
  unsigned mode = 0, uid = 0;
};

class JailerExecFile : public JailerRoot {
 protected:
  Placed place(const std::string& id, fs::perms mode) {
    fs::create_directories(tmp_ / "files");  // the jails' file system: a link is possible
    fs::path exec = tmp_ / "files" / ("probe-" + id);
    fs::copy_file(JAIL_PROBE_BIN, exec);
    fs::permissions(exec, mode);
    std::vector<std::string> a = args(id);
    a[3] = exec.string();  // --exec-file
    Jailer j = start(a);
    EXPECT_TRUE(j.wait_for("READY\n")) << j.errors;
    EXPECT_EQ(j.report()["uid"], "1234,1234,1234");
    struct stat placed {}, original {};
    EXPECT_EQ(::stat((base_ / exec.filename() / id / "root" / exec.filename()).c_str(), &placed), 0);
    EXPECT_EQ(::stat(exec.c_str(), &original), 0);
    EXPECT_EQ(j.finish(), 0) << j.errors;
    return {placed.st_ino == original.st_ino && placed.st_dev == original.st_dev, placed.st_mode & 07777u, placed.st_uid};
  }
};

// Root's, runnable by others and writable by root only: hard-linked, not copied (a
// RelWithDebInfo ember is 38 MiB; a jail per VM copied and later deleted it every time).
TEST_F(JailerExecFile, ARootOwnedExecutableOnTheJailsFileSystemIsLinked) {
  Placed p = place("linked", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                 fs::perms::others_read | fs::perms::others_exec);
  EXPECT_TRUE(p.linked);
  EXPECT_EQ(p.mode, 0755u);
  EXPECT_EQ(p.uid, 0u);
}

// Anything the jail's uid could not run, or someone but root could change, is copied as
// root's 0755 instead: the link would share those bits.
TEST_F(JailerExecFile, AnOwnerOnlyExecutableIsCopiedRunnableByTheJailsUid) {
  Placed p = place("owner-only", fs::perms::owner_all);
  EXPECT_FALSE(p.linked);
  EXPECT_EQ(p.mode, 0755u);
  EXPECT_EQ(p.uid, 0u);
}

TEST_F(JailerExecFile, AGroupWritableExecutableIsCopied) {
  Placed p = place("group-writable", fs::perms::owner_all | fs::perms::group_all | fs::perms::others_read |
                                         fs::perms::others_exec);
  EXPECT_FALSE(p.linked);
  EXPECT_EQ(p.mode, 0755u);
}

TEST_F(JailerRoot, CgroupV2SettingIsWritten) {
  if (v2_mount().empty()) GTEST_SKIP() << "no cgroup2 mount on this host";
  Jailer j = start(args("v2", {"--cgroup-version", "2", "--cgroup", "cgroup.max.descendants=3"}));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.output;
  EXPECT_EQ(slurp(fs::path(v2_mount()) / parent_ / "v2" / "cgroup.max.descendants"), "3\n");
  EXPECT_EQ(j.finish(), 0) << j.errors;
}

TEST_F(JailerRoot, CgroupV1SettingsGoToTheirControllersAndCpusetInherits) {
  std::string cpu = v1_mount("cpu"), cpuset = v1_mount("cpuset");
  if (cpu.empty() || cpuset.empty()) GTEST_SKIP() << "no cgroup v1 cpu and cpuset hierarchies on this host";
  Jailer j = start(args("v1", {"--cgroup-version", "1", "--cgroup", "cpu.shares=512", "--cgroup", "cpuset.cpus=0"}));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.output << j.errors;
  EXPECT_EQ(slurp(fs::path(cpu) / parent_ / "v1" / "cpu.shares"), "512\n");
  EXPECT_EQ(slurp(fs::path(cpuset) / parent_ / "v1" / "cpuset.cpus"), "0\n");
  std::string cgroups = slurp("/proc/" + std::to_string(j.pid) + "/cgroup");
  EXPECT_NE(cgroups.find(":cpu:/" + parent_ + "/v1\n"), std::string::npos) << cgroups;
  EXPECT_NE(cgroups.find(":cpuset:/" + parent_ + "/v1\n"), std::string::npos) << cgroups;
  EXPECT_EQ(j.finish(), 0) << j.errors;
}

TEST_F(JailerRoot, JoinsTheGivenNetworkNamespace) {
  pid_t holder = ::fork();  // holds a fresh network namespace while the test runs
  if (holder == 0) {
    if (::unshare(CLONE_NEWNET) < 0) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  // Ended however the test ends: a holder left behind keeps ctest's output pipe open forever.
  struct EndHolder {
    pid_t pid;
    ~EndHolder() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } end_holder{holder};
  std::string ns = "/proc/" + std::to_string(holder) + "/ns/net";
  for (int i = 0; i < 500 && fs::read_symlink(ns) == fs::read_symlink("/proc/self/ns/net"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  Jailer j = start(args("netns", {"--netns", ns}));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.errors;
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(j.pid) + "/ns/net"), fs::read_symlink(ns));
  EXPECT_EQ(j.finish(), 0) << j.errors;
}

TEST_F(JailerRoot, NewPidNamespaceAndDaemonize) {
  Jailer j = start(args("pidns", {"--new-pid-ns", "--daemonize", "--", "--report-file", "/report"}));
  EXPECT_EQ(j.finish(), 0) << j.errors;  // the jailer's parent half exits once the pid file is written
  std::map<std::string, std::string> r = report_file(chroot("pidns") / "report");
  EXPECT_EQ(r["pid"], "1");
  EXPECT_EQ(r["session_leader"], "yes");
  EXPECT_EQ(r["stdio"], "1:3,1:3,1:3");
  EXPECT_EQ(r["uid"], "1234,1234,1234");
  std::string pid = slurp(chroot("pidns") / "jail_probe.pid");
  EXPECT_GT(std::atoi(pid.c_str()), 1) << pid;
}

TEST_F(JailerRoot, DaemonizeForksWhenTheJailerLeadsAProcessGroup) {
  Jailer j = start(args("leader", {"--daemonize", "--", "--report-file", "/report"}), true);
  EXPECT_EQ(j.finish(), 0) << j.errors;  // the half that led the group exits at once
  std::map<std::string, std::string> r = report_file(chroot("leader") / "report");
  EXPECT_EQ(r["session_leader"], "yes");
  EXPECT_EQ(r["stdio"], "1:3,1:3,1:3");
  EXPECT_TRUE(std::regex_match(r["fds"], std::regex("0,1,2,[0-9]+"))) << "stdio and the id's lock: " << r["fds"];
}

// A live jail holds its id's lock: a second jailer for that id is refused, whatever mode either
// runs in, and takes nothing of the first one's.
TEST_F(JailerRoot, IdAlreadyInUseIsRefusedAndTheFirstJailIsUntouched) {
  Jailer first = start(args("dup", {"--new-pid-ns"}));  // the lock passes to the PID namespace's first process
  ASSERT_TRUE(first.wait_for("READY\n")) << first.errors;
  Jailer second = start(args("dup", {"--daemonize"}));
  EXPECT_EQ(second.finish(), 1);
  std::string lock = (base_ / "jail_probe" / "dup" / "jailer.lock").string();
  EXPECT_EQ(second.errors, "ember-jailer: error: --id 'dup' is already in use: a running jail holds " + lock + "\n");
  EXPECT_TRUE(fs::exists(lock));
  EXPECT_TRUE(fs::exists(chroot("dup") / "dev" / "urandom"));
  EXPECT_TRUE(fs::exists(chroot("dup") / "jail_probe.pid"));
  EXPECT_TRUE(fs::exists(chroot("dup") / "jail_probe"));
  if (!v2_mount().empty()) {
    EXPECT_TRUE(fs::exists(fs::path(v2_mount()) / parent_ / "dup"));
  }
  EXPECT_EQ(first.finish(), 0) << first.errors;
}

// Kata Containers makes <id>/root and root/run and bind-mounts the guest's files into root
// before it runs the jailer: the folder is taken as it is, and the files are there inside.
TEST_F(JailerRoot, AnExistingJailFolderIsTakenWithTheFilesInIt) {
  fs::create_directories(chroot("kata") / "run");
  std::ofstream(chroot("kata") / "vmlinux") << "kernel";
  fs::create_directories(tmp_ / "files");
  std::ofstream(tmp_ / "files" / "disk") << "disk";
  std::ofstream(chroot("kata") / "rootfs") << "";  // the placeholder Kata mounts onto
  ASSERT_EQ(::mount((tmp_ / "files" / "disk").c_str(), (chroot("kata") / "rootfs").c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  struct Unmount {
    fs::path path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{chroot("kata") / "rootfs"};
  Jailer j = start(args("kata"));
  ASSERT_TRUE(j.wait_for("READY\n")) << j.errors;
  EXPECT_EQ(j.report()["root_entries"], "dev,jail_probe,rootfs,run,vmlinux");
  std::string inside = "/proc/" + std::to_string(j.pid) + "/root/";
  EXPECT_EQ(slurp(inside + "vmlinux"), "kernel");
  EXPECT_EQ(slurp(inside + "rootfs"), "disk") << "the bind mount made before the jailer ran is not inside";
  EXPECT_EQ(j.finish(), 0) << j.errors;
  EXPECT_EQ(slurp(chroot("kata") / "vmlinux"), "kernel");
  EXPECT_EQ(slurp(chroot("kata") / "rootfs"), "disk");
}

// A run that fails in a folder that was there takes back what it made (the lock file, the
// copy, /dev and its nodes) and nothing else.
TEST_F(JailerRoot, AFailedRunInAnExistingFolderTakesBackOnlyWhatItMade) {
  fs::create_directories(tmp_ / "files");
  fs::path noexec = tmp_ / "files" / "noexec";
  fs::copy_file(JAIL_PROBE_BIN, noexec);
  fs::permissions(noexec, fs::perms::owner_read | fs::perms::owner_write);
  fs::path id_dir = base_ / "noexec" / "kept";
  fs::create_directories(id_dir / "root" / "run");
  std::ofstream(id_dir / "root" / "vmlinux") << "kernel";
  std::vector<std::string> a = args("kept");
  a[3] = noexec.string();  // --exec-file
  Jailer j = start(a);
  EXPECT_EQ(j.finish(), 1);
  EXPECT_NE(j.errors.find("cannot run /noexec in the jail: Permission denied"), std::string::npos) << j.errors;
  auto entries = [](const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
  };
  EXPECT_EQ(entries(id_dir), std::set<std::string>{"root"});
  EXPECT_EQ(entries(id_dir / "root"), (std::set<std::string>{"run", "vmlinux"}));
  EXPECT_EQ(slurp(id_dir / "root" / "vmlinux"), "kernel");
}

// A jail that has ended leaves its folder (the caller removes it); the id is free again, and
// what the dead jail left there is made anew, not trusted: its device nodes, its pid file, its
// copy of the executable (here a symlink out of the jail, which must be replaced, not followed).
TEST_F(JailerRoot, AFolderLeftByADeadJailIsTakenAgain) {
  fs::create_directories(tmp_ / "files");
  fs::path victim = tmp_ / "files" / "victim";
  std::ofstream(victim) << "host file";
  for (int run = 0; run < 2; ++run) {
    Jailer j = start(args("again", {"--new-pid-ns"}));
    ASSERT_TRUE(j.wait_for("READY\n")) << "run " << run << ": " << j.errors;
    std::map<std::string, std::string> r = j.report();
    EXPECT_EQ(r["pid"], "1");
    for (const char* dev : {"/dev/kvm", "/dev/net/tun", "/dev/urandom", "/dev/userfaultfd"}) {
      EXPECT_EQ(r[dev], expected_node(dev)) << "run " << run << ": " << dev;
    }
    pid_t pid = std::atoi(slurp(chroot("again") / "jail_probe.pid").c_str());
    EXPECT_TRUE(same_folder("/proc/" + std::to_string(pid) + "/root/", chroot("again"))) << "run " << run;
    EXPECT_EQ(j.finish(), 0) << j.errors;  // returns once the probe has exited: its stdout closed
    if (run == 0) {
      ASSERT_TRUE(fs::remove(chroot("again") / "dev" / "urandom"));
      ASSERT_EQ(::mknod((chroot("again") / "dev" / "urandom").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
      ASSERT_TRUE(fs::remove(chroot("again") / "jail_probe"));
      fs::create_symlink(victim, chroot("again") / "jail_probe");
    }
  }
  EXPECT_EQ(slurp(victim), "host file");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(chroot("again") / "jail_probe")));
}

TEST_F(JailerRoot, TwoIdsSideBySide) {
  Jailer a = start(args("side-a")), b = start(args("side-b"));
  ASSERT_TRUE(a.wait_for("READY\n")) << a.errors;
  ASSERT_TRUE(b.wait_for("READY\n")) << b.errors;
  EXPECT_TRUE(same_folder("/proc/" + std::to_string(a.pid) + "/root/", chroot("side-a")));
  EXPECT_TRUE(same_folder("/proc/" + std::to_string(b.pid) + "/root/", chroot("side-b")));
  if (!v2_mount().empty()) {
    EXPECT_NE(slurp("/proc/" + std::to_string(b.pid) + "/cgroup").find("/" + parent_ + "/side-b\n"), std::string::npos);
  }
  EXPECT_EQ(a.finish(), 0) << a.errors;
  EXPECT_EQ(b.finish(), 0) << b.errors;
  // What the user cleans up once they have exited: no process is left in the cgroups (rmdir
  // would be EBUSY), no mount in the chroots; TearDown checks the mount table.
  for (const char* id : {"side-a", "side-b"}) {
    if (!v2_mount().empty()) {
      EXPECT_TRUE(remove_cgroup(fs::path(v2_mount()) / parent_ / id)) << id << ": " << std::strerror(errno);
    }
    EXPECT_GT(fs::remove_all(base_ / "jail_probe" / id), 0u);
  }
}

// The real ember, without KVM (it waits for InstanceStart): two jailed side by side, each
// serving its API on the socket inside its own chroot.
TEST_F(JailerRoot, TwoJailedEmbersServeTheirApiInsideTheirChroots) {
  if (!EMBER_IS_STATIC) GTEST_SKIP() << "this build's ember is dynamically linked (EMBER_STATIC=OFF): the jail holds only the binary";
  std::vector<Jailer> embers;
  for (const char* id : {"ember-a", "ember-b"}) {
    std::vector<std::string> a = args(id, {"--", "--api-sock", "/api.sock"});
    a[3] = EMBER_BIN;  // --exec-file
    embers.push_back(start(a));
  }
  for (const char* id : {"ember-a", "ember-b"}) {
    std::string answer = get_root(base_ / "ember" / id / "root" / "api.sock");
    EXPECT_NE(answer.find(std::string("\"id\":\"") + id + "\""), std::string::npos) << id << ": " << answer;
  }
  for (Jailer& e : embers) {
    ::kill(e.pid, SIGTERM);
    EXPECT_EQ(e.finish(), 130) << e.errors;  // ember's status for a signal before InstanceStart
  }
  EXPECT_FALSE(fs::exists(base_ / "ember" / "ember-a" / "root" / "api.sock")) << "ember removes its socket";
}

// Kata Containers' jailed Go runtime: it makes <id>/root/run before running the jailer and
// gives ember no --api-sock, expecting Firecracker's default socket, /run/firecracker.socket
// inside the jail. A stale socket a crashed ember left there is replaced.
TEST_F(JailerRoot, JailedEmberServesFirecrackersDefaultSocketInAFolderMadeBeforehand) {
  if (!EMBER_IS_STATIC) GTEST_SKIP() << "this build's ember is dynamically linked (EMBER_STATIC=OFF): the jail holds only the binary";
  fs::path run = base_ / "ember" / "kata-fc" / "root" / "run";
  fs::create_directories(run);  // root's, as Kata makes it: the jailer gives it to the jail's uid
  fs::path sock = run / "firecracker.socket";
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  }
  std::vector<std::string> a = args("kata-fc");
  a[3] = EMBER_BIN;  // --exec-file
  Jailer j = start(a);
  std::string answer;
  for (int i = 0; i < 200 && answer.empty(); ++i) {  // the stale file is there from the start
    answer = get_root(sock);
    if (answer.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(answer.find("\"id\":\"kata-fc\""), std::string::npos) << answer;
  ::kill(j.pid, SIGTERM);
  EXPECT_EQ(j.finish(), 130) << j.errors;
  EXPECT_FALSE(fs::exists(sock)) << "ember removes its socket";
}

// ember as PID 1 of its own namespace: found through the pid file, it still stops on SIGTERM
// (a namespace's init ignores signals it has no handler for, unless blocked as ember does).
TEST_F(JailerRoot, JailedEmberAsPid1OfANewNamespaceStopsOnSigterm) {
  if (!EMBER_IS_STATIC) GTEST_SKIP() << "this build's ember is dynamically linked (EMBER_STATIC=OFF): the jail holds only the binary";
  std::vector<std::string> a = args("pid1", {"--new-pid-ns", "--", "--api-sock", "/api.sock"});
  a[3] = EMBER_BIN;  // --exec-file
  Jailer j = start(a);
  fs::path root = base_ / "ember" / "pid1" / "root";
  EXPECT_NE(get_root(root / "api.sock").find("\"id\":\"pid1\""), std::string::npos);
  pid_t pid = std::atoi(slurp(root / "ember.pid").c_str());
  ASSERT_GT(pid, 1);
  EXPECT_TRUE(same_folder("/proc/" + std::to_string(pid) + "/root/", root));
  EXPECT_NE(slurp("/proc/" + std::to_string(pid) + "/status").find("\nNSpid:\t" + std::to_string(pid) + "\t1\n"),
            std::string::npos);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_EQ(j.finish(), 0) << j.errors;  // stdout and stderr close once ember has exited
  EXPECT_FALSE(fs::exists(root / "api.sock")) << "ember removes its socket when it stops";
}

// Refused before anything is created (exit 2), or failing at a later step (exit 1): either way
// no folder under the base, no cgroup, no mount.
TEST_F(JailerRoot, BadInputAndFailedStepsLeaveNothingBehind) {
  fs::create_directories(tmp_ / "files");
  std::string link = (tmp_ / "files" / "link").string(), not_dir = (tmp_ / "files" / "plain").string();
  std::string noexec = (tmp_ / "files" / "noexec").string();
  fs::create_symlink(JAIL_PROBE_BIN, link);
  std::ofstream(not_dir) << "x";
  fs::copy_file(JAIL_PROBE_BIN, noexec);
  fs::permissions(noexec, fs::perms::owner_read | fs::perms::owner_write);
  // Root writes through any mode bits: an unwritable base needs a read-only file system.
  fs::create_directories(tmp_ / "read-only");
  ASSERT_EQ(::mount("none", (tmp_ / "read-only").c_str(), "tmpfs", MS_RDONLY, nullptr), 0) << std::strerror(errno);
  auto replace = [&](std::vector<std::string> a, const std::string& flag, const std::string& value) {
    for (size_t i = 0; i + 1 < a.size(); ++i) {
      if (a[i] == flag) a[i + 1] = value;
    }
    return a;
  };
  std::vector<std::string> no_uid = args("bad");
  no_uid.erase(no_uid.begin() + 4, no_uid.begin() + 6);
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  std::vector<Case> cases = {
      {no_uid, 2, "--uid is required"},
      {replace(args("bad"), "--id", "bad_id"), 2, "--id 'bad_id' may contain only letters, digits and '-'"},
      {replace(args("bad"), "--exec-file", link), 2, "is a symbolic link"},
      {replace(args("bad"), "--exec-file", not_dir + "-missing"), 2, "No such file or directory"},
      {replace(args("bad"), "--chroot-base-dir", not_dir + "/jails"), 1, "cannot create " + not_dir + "/jails: Not a directory"},
      {args("bad", {"--cgroup-version", "2", "--cgroup", "cgroup.max.descendants=lots"}), 1, "cannot write 'lots'"},
      {replace(args("bad"), "--exec-file", noexec), 1, "cannot run /noexec in the jail: Permission denied"},
      // The jailer's parent half exits 0 once the pid file is written; the child, PID 1 of the
      // new namespace, fails and undoes the run (stderr closes when it exits).
      {replace(args("bad", {"--new-pid-ns"}), "--exec-file", noexec), 0, "cannot run /noexec in the jail: Permission denied"},
      {replace(args("bad"), "--exec-file", "/usr/bin/env"), 1,
       "cannot run /env in the jail: No such file or directory (a dynamically linked executable needs a loader"},
      {replace(args("bad"), "--chroot-base-dir", (tmp_ / "read-only" / "jails").string()), 1,
       "cannot create " + (tmp_ / "read-only" / "jails").string() + ": Read-only file system"},
  };
  // A controller the v2 hierarchy does not offer (on hosts that bind it to v1) is refused
  // before anything is created.
  if (!v2_mount().empty() && slurp(fs::path(v2_mount()) / "cgroup.controllers").find("cpu") == std::string::npos) {
    cases.push_back({args("bad", {"--cgroup-version", "2", "--cgroup", "cpu.weight=50"}), 2, "has no 'cpu' controller"});
  }
  for (const Case& c : cases) {
    if (c.message.find("cgroup.max") == std::string::npos || !v2_mount().empty()) {
      Jailer j = start(c.args);
      EXPECT_EQ(j.finish(), c.code) << c.message;
      EXPECT_NE(j.errors.find(c.message), std::string::npos) << j.errors;
    }
    EXPECT_FALSE(fs::exists(base_)) << c.message << ": left " << base_;
    if (!v2_mount().empty()) {
      EXPECT_FALSE(fs::exists(fs::path(v2_mount()) / parent_)) << c.message;
    }
  }
  EXPECT_EQ(::umount((tmp_ / "read-only").c_str()), 0);
}

}  // namespace
}  // namespace ember::jailer
