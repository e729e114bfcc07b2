// End-to-end FaaS runtime (examples/faas): ember-faas serves functions whose VMs boot the
// function image (the guest kernel + an initramfs whose /init is the agent). The first
// invocation cold-boots and snapshots, a concurrent one restores the snapshot, the next
// reuses a warm VM; a hung handler is killed at its timeout and its VM discarded; a guest
// without an agent is a clear error; DELETE and SIGTERM leave no process and no file behind;
// many VM lifecycles (restore, invoke, stop) leave the daemon and the host as they were.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;
using nlohmann::json;

struct Reply {
  int status = 0;
  std::string body;
};

// The daemon as a child process, its output in `log`; SIGTERM and reaped by the destructor.
class Daemon {
 public:
  Daemon(const fs::path& state, const fs::path& log, int port, std::vector<std::string> extra = {}) : port_(port) {
    std::string listen = "127.0.0.1:" + std::to_string(port);
    std::string boot_ms = std::to_string(int(60000 * time_scale()));
    std::vector<std::string> args = {env("EMBER_FAAS_BIN"), "--listen", listen, "--state-dir", state.string(),
                                     "--ember", env("EMBER_BIN"), "--boot-timeout-ms", boot_ms,
                                     "--agent-grace-ms", std::to_string(int(10000 * time_scale())),
                                     "--max-body-bytes", "65536"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 300 && call("GET", "/metrics", "", 30, true).status != 200; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~Daemon() { stop(); }
  pid_t pid() const { return pid_; }
  // SIGTERM (or another signal); the exit status (-1 if it was not running).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  Reply call(const std::string& method, const std::string& path, const std::string& body = "",
             double timeout = 30, bool quiet = false) const {
    ProcessResult r = run_process({"/bin/sh", "-c", "exec curl \"$@\"", "curl", "-sS", "-X", method, "--data-binary", body, "-w", "\n%{http_code}",
                                   "http://127.0.0.1:" + std::to_string(port_) + path},
                                  timeout * time_scale());
    Reply out;
    size_t nl = r.out.rfind('\n');
    if (r.exit_code != 0 || nl == std::string::npos) {
      if (!quiet) ADD_FAILURE() << method << " " << path << ": " << describe(r);
      return out;
    }
    out.status = std::atoi(r.out.c_str() + nl + 1);
    out.body = r.out.substr(0, nl);
    return out;
  }

 private:
  pid_t pid_ = -1;
  int port_;
};

std::string function_json(const std::string& initramfs, const std::string& handler, int timeout_ms) {
  std::string image = env("EMBER_FAAS_IMAGE_DIR");
  return json{{"kernel", image + "/vmlinux"}, {"initramfs", initramfs}, {"handler", handler},
              {"mem_mib", 128}, {"timeout_ms", timeout_ms}, {"keep_alive_ms", 600000}, {"max_vms", 2}}
      .dump();
}

json parse(const Reply& r) {
  json j = json::parse(r.body, nullptr, false);
  return j.is_discarded() ? json::object() : j;
}

// ember processes serving VMs of this state folder (their --api-sock is inside it).
int embers_in(const fs::path& state) {
  // "[v]ms": the pattern does not match the grep's own command line.
  return std::stoi(sh("grep -l -s '" + state.string() + "/[v]ms/' /proc/[0-9]*/cmdline | wc -l"));
}

int files_in(const fs::path& dir) {
  int n = 0;
  if (!fs::exists(dir)) return 0;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) n++;
  return n;
}

// "<uid> <cgroup>" of each jailed ember of ember-faas (the jailer runs it as "/ember --id faas-...").
std::string jailed_embers() {
  return sh("for f in /proc/[0-9]*/cmdline; do c=$(tr '\\0' ' ' < $f 2>/dev/null); case \"$c\" in '/ember --id faas-'*) "
            "p=${f#/proc/}; p=${p%/cmdline}; echo \"$(awk '/^Uid:/ {print $2}' /proc/$p/status) $(cut -d: -f3 /proc/$p/cgroup)\";; "
            "esac; done | sort");
}

int test_port(int offset) { return 20000 + (getpid() % 20000) + offset; }

// ember-faas's flags that jail its VMs (uids from `uid_base`) when ember is static; none for a
// sanitized build, which is dynamic (a jail holds only the binary). Empty too, with a test
// failure, when the host has no cgroup2 to put them in.
std::vector<std::string> jail_flags_if_static(const char* uid_base) {
  if (!statically_linked(env("EMBER_BIN"))) return {};
  if (cgroup2_mount().empty()) {
    ADD_FAILURE() << "no cgroup2 hierarchy for the jailed VMs";
    return {};
  }
  return {"--jailer", (fs::path(env("EMBER_BIN")).parent_path() / "ember-jailer").string(), "--jail-uid-base", uid_base};
}

TEST(Faas, ColdRestoredWarmTimeoutAndCleanup) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("faas-main");
  fs::path state = dir / "state";
  Daemon d(state, dir / "daemon.log", test_port(0));
  const double invoke_timeout = 240;
  std::string image = env("EMBER_FAAS_IMAGE_DIR");
  ASSERT_EQ(d.call("PUT", "/functions/upper", function_json(image + "/initramfs.cpio.gz", "tr a-z A-Z", 20000)).status, 204)
      << read_text(dir / "daemon.log");

  // Two at once: one cold-boots and snapshots, the other waits for the snapshot and restores it.
  auto a = std::async(std::launch::async, [&] { return d.call("POST", "/functions/upper/invoke", "hello a", invoke_timeout); });
  auto b = std::async(std::launch::async, [&] { return d.call("POST", "/functions/upper/invoke", "hello b", invoke_timeout); });
  Reply ra = a.get(), rb = b.get();
  ASSERT_EQ(ra.status, 200) << ra.body << "\n" << read_text(dir / "daemon.log");
  ASSERT_EQ(rb.status, 200) << rb.body;
  json ja = parse(ra), jb = parse(rb);
  EXPECT_EQ(ja["output"], "HELLO A");
  EXPECT_EQ(jb["output"], "HELLO B");
  EXPECT_EQ(ja["exit_status"], 0);
  std::set<std::string> kinds = {ja["vm"].get<std::string>(), jb["vm"].get<std::string>()};
  EXPECT_EQ(kinds, (std::set<std::string>{"cold", "restored"})) << ra.body << "\n" << rb.body;
  std::cout << "cold:     " << (ja["vm"] == "cold" ? ra.body : rb.body) << "\n";
  std::cout << "restored: " << (ja["vm"] == "cold" ? rb.body : ra.body) << "\n";

  Reply rc = d.call("POST", "/functions/upper/invoke", "third", invoke_timeout);
  ASSERT_EQ(rc.status, 200) << rc.body;
  EXPECT_EQ(parse(rc)["vm"], "warm");
  EXPECT_EQ(parse(rc)["output"], "THIRD");
  EXPECT_FALSE(parse(rc).contains("output_base64")) << rc.body;  // text output: only as text
  std::cout << "warm:     " << rc.body << "\n";
  // Output that is not UTF-8 also comes exactly, in base64 ("\xff\xfeOK").
  Reply binary = d.call("POST", "/functions/upper/invoke", "\xff\xfeok", invoke_timeout);
  EXPECT_EQ(parse(binary).value("output_base64", ""), "//5PSw==") << binary.body;
  EXPECT_EQ(embers_in(state), 2);
  // Resident memory of the two (128 MiB guests, no pre-fault): printed, for the README.
  std::cout << "ember RSS (pid, VmRSS):\n"
            << sh("for f in $(grep -l -s '" + state.string() + "/[v]ms/' /proc/[0-9]*/cmdline); do p=${f#/proc/}; "
                  "p=${p%/cmdline}; echo \"$p $(grep VmRSS /proc/$p/status)\"; done");

  // A handler that hangs: killed at 2 s, answered 504, its VM discarded.
  ASSERT_EQ(d.call("PUT", "/functions/sleepy", function_json(image + "/initramfs.cpio.gz", "sleep 100", 2000)).status, 204);
  Reply rt = d.call("POST", "/functions/sleepy/invoke", "", invoke_timeout);
  EXPECT_EQ(rt.status, 504) << rt.body;
  EXPECT_NE(rt.body.find("timed out"), std::string::npos) << rt.body;
  std::cout << "timeout:  " << rt.body << "\n";
  EXPECT_EQ(embers_in(state), 2);  // upper's two; sleepy's VM is gone

  // The daemon still serves, and refuses what it should.
  Reply again = d.call("POST", "/functions/upper/invoke", "still", invoke_timeout);
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(parse(again)["output"], "STILL");
  EXPECT_EQ(d.call("POST", "/functions/nope/invoke", "x").status, 404);
  EXPECT_EQ(d.call("POST", "/functions/upper/invoke", std::string(70000, 'x')).status, 413);
  Reply bad = d.call("PUT", "/functions/broken", R"({"kernel": "/nonexistent", "initramfs": "/x", "handler": "cat"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("function.kernel"), std::string::npos) << bad.body;

  std::string metrics = d.call("GET", "/metrics").body;
  std::cout << metrics.substr(0, metrics.find("# HELP faas_invoke_ms")) << "\n";
  EXPECT_NE(metrics.find("faas_cold_boots_total 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("faas_restores_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("faas_handler_timeouts_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("faas_invoke_ms_count{vm=\"warm\"} 3"), std::string::npos) << metrics;

  EXPECT_EQ(d.call("DELETE", "/functions/upper").status, 204);
  EXPECT_EQ(d.call("DELETE", "/functions/sleepy").status, 204);
  EXPECT_EQ(embers_in(state), 0);
  EXPECT_EQ(files_in(state / "vms"), 0);
  EXPECT_EQ(files_in(state / "functions"), 0);
  EXPECT_EQ(d.call("POST", "/functions/upper/invoke", "x").status, 404);
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
}

// A function whose image is a root drive instead of an initramfs (build-image.sh's rootfs.ext4,
// attached read-only as /dev/vda): the cold VM and a clone restored from its snapshot (which
// reopens the drive) both run the handler from it, a warm one after them; nothing left after.
// Jailed when ember is static.
TEST(Faas, RootDriveImageColdRestoredAndWarm) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("faas-rootfs");
  fs::path state = dir / "state";
  std::vector<std::string> extra = jail_flags_if_static("330000");
  Daemon d(state, dir / "daemon.log", test_port(8), extra);
  const double invoke_timeout = 240;
  std::string image = env("EMBER_FAAS_IMAGE_DIR");
  ASSERT_TRUE(fs::exists(image + "/rootfs.ext4")) << image;
  // The handler names what / is, then upper-cases its input.
  json spec = json::parse(function_json("", R"(awk '$2 == "/" {print $3, substr($4, 1, 2)}' /proc/mounts; tr a-z A-Z)", 20000));
  spec.erase("initramfs");
  spec["rootfs"] = image + "/rootfs.ext4";
  ASSERT_EQ(d.call("PUT", "/functions/fromdisk", spec.dump()).status, 204) << read_text(dir / "daemon.log");

  auto a = std::async(std::launch::async, [&] { return d.call("POST", "/functions/fromdisk/invoke", "disk a", invoke_timeout); });
  auto b = std::async(std::launch::async, [&] { return d.call("POST", "/functions/fromdisk/invoke", "disk b", invoke_timeout); });
  Reply ra = a.get(), rb = b.get();
  ASSERT_EQ(ra.status, 200) << ra.body << "\n" << read_text(dir / "daemon.log");
  ASSERT_EQ(rb.status, 200) << rb.body << "\n" << read_text(dir / "daemon.log");
  EXPECT_EQ(parse(ra)["output"], "ext4 ro\nDISK A") << ra.body;
  EXPECT_EQ(parse(rb)["output"], "ext4 ro\nDISK B") << rb.body;
  std::set<std::string> kinds = {parse(ra)["vm"].get<std::string>(), parse(rb)["vm"].get<std::string>()};
  EXPECT_EQ(kinds, (std::set<std::string>{"cold", "restored"})) << ra.body << "\n" << rb.body;
  Reply rc = d.call("POST", "/functions/fromdisk/invoke", "disk c", invoke_timeout);
  ASSERT_EQ(rc.status, 200) << rc.body;
  EXPECT_EQ(parse(rc)["vm"], "warm");
  EXPECT_EQ(parse(rc)["output"], "ext4 ro\nDISK C");

  EXPECT_EQ(d.call("DELETE", "/functions/fromdisk").status, 204);
  EXPECT_EQ(embers_in(state), 0);
  EXPECT_EQ(files_in(state / "vms"), 0);
  EXPECT_EQ(files_in(state / "functions"), 0);
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
  fs::remove_all(dir);
}

// A guest image without the agent (the project's plain initramfs: its /init reboots at once)
// is a 502/504 naming the problem; the VM is gone and the daemon keeps serving.
TEST(Faas, GuestWithoutAgentIsAnErrorAndShutdownCleansUp) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("faas-noagent");
  fs::path state = dir / "state";
  Daemon d(state, dir / "daemon.log", test_port(1));
  ASSERT_EQ(d.call("PUT", "/functions/noagent", function_json(env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "cat", 5000)).status, 204);
  Reply r = d.call("POST", "/functions/noagent/invoke", "x", 240);
  EXPECT_TRUE(r.status == 502 || r.status == 504) << r.status << " " << r.body;
  EXPECT_NE(r.body.find("agent"), std::string::npos) << r.body;
  std::cout << "no agent: " << r.body.substr(0, 300) << "\n";
  EXPECT_EQ(embers_in(state), 0);
  EXPECT_EQ(d.call("GET", "/metrics").status, 200);
  // Stopping with a function registered (its snapshot folder exists) leaves nothing either.
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
  EXPECT_EQ(files_in(state / "vms"), 0);
  EXPECT_EQ(files_in(state / "functions"), 0);
}

// A daemon killed outright leaves its VMs running; the next daemon on the same state folder
// kills them and removes their files before it serves.
TEST(Faas, ANewDaemonRemovesWhatAKilledOneLeft) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("faas-leftovers");
  fs::path state = dir / "state";
  {
    Daemon d(state, dir / "daemon1.log", test_port(3));
    std::string image = env("EMBER_FAAS_IMAGE_DIR");
    ASSERT_EQ(d.call("PUT", "/functions/upper", function_json(image + "/initramfs.cpio.gz", "tr a-z A-Z", 20000)).status, 204);
    Reply r = d.call("POST", "/functions/upper/invoke", "left", 240);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(d.stop(SIGKILL), 128 + SIGKILL);
  }
  EXPECT_EQ(embers_in(state), 1);
  EXPECT_GT(files_in(state / "functions"), 0);
  Daemon again(state, dir / "daemon2.log", test_port(3));
  EXPECT_EQ(again.call("GET", "/metrics").status, 200);
  EXPECT_EQ(embers_in(state), 0);
  EXPECT_EQ(files_in(state / "vms"), 0);
  EXPECT_EQ(files_in(state / "functions"), 0);
  EXPECT_EQ(again.stop(), 0);
}

// With --jailer every VM runs under ember-jailer: its own uid, the function's gid, a chroot
// under the state folder and a cgroup ember-faas/<id> with the function's limits; cold boot,
// restore and warm reuse work the same, and DELETE leaves no jail, cgroup or process.
TEST(Faas, JailedVmsHaveTheirOwnUidChrootAndCgroup) {
  if (!statically_linked(env("EMBER_BIN"))) {
    GTEST_SKIP() << env("EMBER_BIN") << " is dynamically linked (sanitized build): the jail holds only the binary";
  }
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  std::string cgroups = cgroup2_mount();
  ASSERT_FALSE(cgroups.empty());
  fs::path dir = scratch_dir("faas-jailed");
  fs::path state = dir / "state";
  std::string jailer = (fs::path(env("EMBER_BIN")).parent_path() / "ember-jailer").string();
  Daemon d(state, dir / "daemon.log", test_port(2), {"--jailer", jailer, "--jail-uid-base", "200000"});
  std::string image = env("EMBER_FAAS_IMAGE_DIR");
  ASSERT_EQ(d.call("PUT", "/functions/upper", function_json(image + "/initramfs.cpio.gz", "tr a-z A-Z", 20000)).status, 204);
  auto a = std::async(std::launch::async, [&] { return d.call("POST", "/functions/upper/invoke", "jail a", 240); });
  auto b = std::async(std::launch::async, [&] { return d.call("POST", "/functions/upper/invoke", "jail b", 240); });
  Reply ra = a.get(), rb = b.get();
  ASSERT_EQ(ra.status, 200) << ra.body << "\n" << read_text(dir / "daemon.log");
  ASSERT_EQ(rb.status, 200) << rb.body;
  EXPECT_EQ(parse(ra)["output"], "JAIL A");
  EXPECT_EQ(parse(rb)["output"], "JAIL B");
  std::set<std::string> kinds = {parse(ra)["vm"].get<std::string>(), parse(rb)["vm"].get<std::string>()};
  EXPECT_EQ(kinds, (std::set<std::string>{"cold", "restored"}));
  Reply rc = d.call("POST", "/functions/upper/invoke", "warm", 240);
  EXPECT_EQ(parse(rc)["vm"], "warm") << rc.body;
  std::cout << "jailed cold/restored: " << ra.body << "\n" << rb.body << "\njailed warm: " << rc.body << "\n";
  // Two embers, each as its own uid, in its own cgroup under ember-faas/.
  std::string owners = jailed_embers();
  std::cout << "jailed embers (uid cgroup):\n" << owners;
  EXPECT_EQ(std::count(owners.begin(), owners.end(), '\n'), 2) << owners;
  EXPECT_NE(owners.find("/ember-faas/faas-"), std::string::npos) << owners;
  EXPECT_NE(owners.find("20000"), std::string::npos) << owners;
  // Each chroot's ember is the daemon's staged copy hard-linked in, not a copy per VM: the
  // same inode as STATE/bin/ember, one link per live VM besides the staged file.
  struct stat staged {};
  ASSERT_EQ(::stat((state / "bin" / "ember").c_str(), &staged), 0);
  int jails = 0;
  for (const auto& jail : fs::directory_iterator(state / "jails" / "ember")) {
    struct stat in_jail {};
    ASSERT_EQ(::stat((jail.path() / "root" / "ember").c_str(), &in_jail), 0) << jail.path();
    EXPECT_EQ(in_jail.st_ino, staged.st_ino) << jail.path() << ": a copy, not the staged ember";
    EXPECT_EQ(in_jail.st_uid, 0u);
    EXPECT_EQ(in_jail.st_mode & 07777, 0755u);
    ++jails;
  }
  EXPECT_EQ(jails, 2);
  EXPECT_EQ(staged.st_nlink, 3u);
  EXPECT_EQ(d.call("DELETE", "/functions/upper").status, 204);
  EXPECT_EQ(jailed_embers(), "");
  EXPECT_EQ(files_in(state / "jails" / "ember"), 0);
  EXPECT_EQ(sh("ls " + cgroups + "/ember-faas | grep -c '^faas-' || true"), "0\n");
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
  EXPECT_EQ(files_in(state / "jails"), 0);
  EXPECT_EQ(fs::hard_link_count(state / "bin" / "ember"), 1u) << "a jail's link to ember was left";
}

// Function code on a drive (registration "code"): PUT /functions/NAME/code delivers a new
// version without a new snapshot. The idle VM is swapped in place (PATCH /drives/code), a VM
// restored from the snapshot (which holds version 0) is swapped before its first invocation,
// and the handler reads each version through $FAAS_CODE. Jailed when ember is static.
TEST(Faas, CodeDriveSwapsWithoutANewSnapshot) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path dir = scratch_dir("faas-code");
  fs::path state = dir / "state";
  std::vector<std::string> extra = jail_flags_if_static("310000");
  Daemon d(state, dir / "daemon.log", test_port(5), extra);
  // A code image: the text, then NULs up to 4 KiB (the handler drops them).
  auto code = [&](const std::string& name, const std::string& text) {
    std::string bytes = text;
    bytes.resize(4096, '\0');
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return (dir / name).string();
  };
  json spec = json::parse(function_json(env("EMBER_FAAS_IMAGE_DIR") + "/initramfs.cpio.gz",
                                        "tr -d '\\000' < \"$FAAS_CODE\"", 20000));
  spec["code"] = code("v0.img", "version 0\n");
  ASSERT_EQ(d.call("PUT", "/functions/f", spec.dump()).status, 204) << read_text(dir / "daemon.log");
  auto invoke = [&](const std::string& name) {
    Reply r = d.call("POST", "/functions/" + name + "/invoke", "", 240);
    EXPECT_EQ(r.status, 200) << r.body << "\n" << read_text(dir / "daemon.log");
    return parse(r).value("vm", "?") + ": " + parse(r).value("output", "?");
  };
  Reply r0 = d.call("POST", "/functions/f/invoke", "", 240);
  ASSERT_EQ(r0.status, 200) << r0.body << "\n" << read_text(dir / "daemon.log");
  EXPECT_EQ(parse(r0)["output"], "version 0\n") << r0.body;
  EXPECT_EQ(parse(r0)["vm"], "cold");

  Reply put1 = d.call("PUT", "/functions/f/code", json{{"code", code("v1.img", "version 1\n")}}.dump());
  ASSERT_EQ(put1.status, 200) << put1.body;
  EXPECT_EQ(parse(put1)["code_version"], 1);
  fs::remove(dir / "v1.img");  // staged: the caller's file may go
  Reply r1 = d.call("POST", "/functions/f/invoke", "", 240);
  EXPECT_EQ(parse(r1)["vm"], "warm") << r1.body;
  EXPECT_EQ(parse(r1)["output"], "version 1\n") << r1.body;
  ASSERT_EQ(d.call("PUT", "/functions/f/code", json{{"code", code("v2.img", "version 2\n")}}.dump()).status, 200);
  EXPECT_EQ(invoke("f"), "warm: version 2\n");
  // A function whose VMs stop when idle: every VM after the first is a restore of the
  // version-0 snapshot, swapped before its invocation.
  json once = spec;
  once["keep_alive_ms"] = 0;
  ASSERT_EQ(d.call("PUT", "/functions/g", once.dump()).status, 204);
  EXPECT_EQ(invoke("g"), "cold: version 0\n");
  ASSERT_EQ(d.call("PUT", "/functions/g/code", json{{"code", code("g1.img", "g version 1\n")}}.dump()).status, 200);
  EXPECT_EQ(invoke("g"), "restored: g version 1\n");

  std::string metrics = d.call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("faas_snapshots_total 2\n"), std::string::npos) << metrics;  // one per function
  EXPECT_NE(metrics.find("faas_code_updates_total 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("faas_code_swaps_total 3\n"), std::string::npos) << metrics;  // f: 2 warm; g: 1 restored

  // Refusals name what is wrong; nothing changes.
  Reply missing = d.call("PUT", "/functions/f/code", json{{"code", (dir / "none.img").string()}}.dump());
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("cannot read"), std::string::npos) << missing.body;
  std::ofstream(dir / "tiny.img") << "echo too small";
  Reply tiny = d.call("PUT", "/functions/f/code", json{{"code", (dir / "tiny.img").string()}}.dump());
  EXPECT_EQ(tiny.status, 400);
  EXPECT_NE(tiny.body.find("at least 512"), std::string::npos) << tiny.body;
  EXPECT_EQ(d.call("PUT", "/functions/f/code", R"({"code": "/x", "extra": 1})").status, 400);
  EXPECT_EQ(d.call("PUT", "/functions/nope/code", json{{"code", code("v3.img", "x")}}.dump()).status, 404);
  ASSERT_EQ(d.call("PUT", "/functions/plain", function_json(env("EMBER_FAAS_IMAGE_DIR") + "/initramfs.cpio.gz", "cat", 20000)).status, 204);
  Reply no_drive = d.call("PUT", "/functions/plain/code", json{{"code", code("v4.img", "x")}}.dump());
  EXPECT_EQ(no_drive.status, 400);
  EXPECT_NE(no_drive.body.find("without a code drive"), std::string::npos) << no_drive.body;
  Reply still = d.call("POST", "/functions/f/invoke", "", 240);
  EXPECT_EQ(parse(still)["output"], "version 2\n") << still.body;

  EXPECT_EQ(d.call("DELETE", "/functions/f").status, 204);
  EXPECT_EQ(d.call("DELETE", "/functions/plain").status, 204);
  EXPECT_EQ(d.call("DELETE", "/functions/g").status, 204);
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
  EXPECT_EQ(files_in(state / "functions"), 0);
}

// A tiny TCP server on every host address: reads a line, answers with the peer's address and
// records it, so a guest proves it reached the host and from which address.
class PeerEchoServer {
 public:
  explicit PeerEchoServer(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    EXPECT_EQ(::listen(fd_, 8), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~PeerEchoServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::set<std::string> peers() {
    std::lock_guard lock(mu_);
    return peers_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      int c = ::accept4(fd_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
      if (c < 0) continue;
      char ip[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
      char buf[1024];
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 5000) > 0) (void)!::read(c, buf, sizeof buf);  // the guest's line: not needed
      std::string reply = std::string("host saw ") + ip + "\n";
      (void)!::write(c, reply.data(), reply.size());
      ::close(c);
      std::lock_guard lock(mu_);
      peers_.insert(ip);
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::set<std::string> peers_;
};

// The links ember-faas made on the host for its VMs (efaas<slot>), sorted.
std::string host_vm_links() {
  return sh("ls /sys/class/net | grep '^efaas' | sort | tr '\\n' ' ' || true");
}

// A function with "network": each VM in its own network namespace (a tap bridged to a veth
// pair), its guest given its own address after every start: the cold-booted VM, a clone
// restored from its snapshot (which holds the cold VM's address) and the warm one each reach
// a server on the host, from 10.200.<slot>.2; nothing of it stays after DELETE. Jailed when
// ember is static (the jailer's --netns), else ember is started inside the namespace.
TEST(Faas, NetworkedVmsReachTheHostEachFromItsOwnAddress) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}, {"ip", "iproute2"}}));
  fs::path dir = scratch_dir("faas-net");
  fs::path state = dir / "state";
  std::vector<std::string> extra = jail_flags_if_static("320000");
  ASSERT_EQ(host_vm_links(), "") << "links of another ember-faas are on this host";
  int port = test_port(6);
  PeerEchoServer server(port);
  Daemon d(state, dir / "daemon.log", test_port(7), extra);
  // The gateway the agent gave eth0 is the host's end of the VM's link. (busybox nc: the
  // image's static busybox wget crashes in glibc's resolver.)
  std::string handler = "gw=$(ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'); "
                        "echo hello | nc $gw " + std::to_string(port);
  json spec = json::parse(function_json(env("EMBER_FAAS_IMAGE_DIR") + "/initramfs.cpio.gz", handler, 60000));
  spec["network"] = true;
  ASSERT_EQ(d.call("PUT", "/functions/net", spec.dump()).status, 204) << read_text(dir / "daemon.log");
  auto a = std::async(std::launch::async, [&] { return d.call("POST", "/functions/net/invoke", "", 240); });
  auto b = std::async(std::launch::async, [&] { return d.call("POST", "/functions/net/invoke", "", 240); });
  Reply ra = a.get(), rb = b.get();
  ASSERT_EQ(ra.status, 200) << ra.body << "\n" << read_text(dir / "daemon.log");
  ASSERT_EQ(rb.status, 200) << rb.body << "\n" << read_text(dir / "daemon.log");
  std::cout << "networked: " << ra.body << "\n" << rb.body << "\n";
  std::set<std::string> kinds = {parse(ra)["vm"].get<std::string>(), parse(rb)["vm"].get<std::string>()};
  EXPECT_EQ(kinds, (std::set<std::string>{"cold", "restored"}));
  std::set<std::string> outputs = {parse(ra)["output"].get<std::string>(), parse(rb)["output"].get<std::string>()};
  EXPECT_EQ(outputs, (std::set<std::string>{"host saw 10.200.0.2\n", "host saw 10.200.0.6\n"}));
  EXPECT_EQ(server.peers(), (std::set<std::string>{"10.200.0.2", "10.200.0.6"}));
  EXPECT_EQ(host_vm_links(), "efaas0 efaas1 ");
  EXPECT_EQ(files_in(state / "netns"), 2);
  Reply warm = d.call("POST", "/functions/net/invoke", "", 240);
  EXPECT_EQ(parse(warm)["vm"], "warm") << warm.body;
  EXPECT_EQ(warm.status, 200) << warm.body;
  EXPECT_NE(parse(warm).value("output", "").find("host saw 10.200.0."), std::string::npos) << warm.body;

  // Refused: an unknown type for the flag.
  json bad = spec;
  bad["network"] = "yes";
  Reply refused = d.call("PUT", "/functions/bad", bad.dump());
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("network"), std::string::npos) << refused.body;

  EXPECT_EQ(d.call("DELETE", "/functions/net").status, 204);
  EXPECT_EQ(host_vm_links(), "");
  EXPECT_EQ(files_in(state / "netns"), 0);
  EXPECT_EQ(sh("grep -c '" + (state / "netns").string() + "' /proc/self/mountinfo || true"), "0\n");
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
}

// This test binary and the daemon are built alike: sanitized in build-sanitize/.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// What a VM lifecycle could leave behind, in the daemon and on the host.
struct Footprint {
  int daemon_fds = 0, daemon_threads = 0, daemon_children = 0;
  long daemon_rss_kib = 0;
  int embers = 0, state_files = 0, jail_files = 0, mounts = 0, cgroups = 0, net_devices = 0;
  long mem_available_kib = 0;  // reported, not checked: the page cache moves it
  std::string daemon_cpu;      // reported: user and system seconds, the whole daemon's and each live thread's

  static Footprint of(pid_t daemon, const fs::path& state, const std::string& cgroups) {
    Footprint f;
    std::string p = "/proc/" + std::to_string(daemon);
    f.daemon_fds = std::stoi(sh("ls " + p + "/fd | wc -l"));
    f.daemon_threads = std::stoi(sh("ls " + p + "/task | wc -l"));
    f.daemon_rss_kib = std::stol(sh("awk '/^VmRSS:/ {print $2}' " + p + "/status"));
    // Children of the daemon (an unreaped ember is one too): field 4 of /proc/PID/stat.
    f.daemon_children = std::stoi(sh("cat /proc/[0-9]*/stat 2>/dev/null | awk '$4 == " + std::to_string(daemon) +
                                     "' | wc -l"));
    f.embers = embers_in(state);
    f.state_files = files_in(state / "vms") + files_in(state / "functions");
    f.jail_files = files_in(state / "jails" / "ember");  // the jails themselves, under the base folder
    f.mounts = std::stoi(sh("wc -l < /proc/self/mountinfo"));
    f.cgroups = cgroups.empty() ? 0 : std::stoi(sh("ls " + cgroups + "/ember-faas 2>/dev/null | grep -c '^faas-' || true"));
    f.net_devices = std::stoi(sh("ls /sys/class/net | wc -l"));
    f.mem_available_kib = std::stol(sh("awk '/^MemAvailable:/ {print $2}' /proc/meminfo"));
    // Fields 14 and 15 of stat: user and system time in clock ticks (the process's counts its
    // ended threads too). The daemon names its threads (faas-front, faas-reaper, faas-conn).
    const std::string ticks = std::to_string(sysconf(_SC_CLK_TCK));
    f.daemon_cpu = sh("for s in " + p + "/stat " + p + "/task/*/stat; do awk '{printf \"%s %.2f/%.2f s, \", $2, $14 / " +
                      ticks + ", $15 / " + ticks + "}' $s; done");
    return f;
  }
  std::string text() const {
    std::ostringstream o;
    o << "daemon fds " << daemon_fds << ", threads " << daemon_threads << ", children " << daemon_children << ", RSS "
      << daemon_rss_kib << " KiB; embers " << embers << ", files in vms/ and functions/ " << state_files
      << ", in jails/ember/ " << jail_files << ", mounts " << mounts << ", ember-faas cgroups " << cgroups
      << ", network devices " << net_devices << ", MemAvailable " << mem_available_kib << " KiB; CPU user/system: "
      << daemon_cpu;
    return o.str();
  }
};

// Endurance: EMBER_FAAS_CYCLES (default 40) lifecycles of one function's VM through the
// daemon, each a restore of the function's snapshot, one invocation and the VM's stop (keep-
// alive 0), jailed when ember is static. Nothing may grow from the first measurement (after a
// few cycles, once the daemon's allocations settled) to the last: descriptors, threads and
// children of the daemon, its RSS (beyond 4 MiB of allocator slack; release build only), embers, files, jails,
// mounts, cgroups, network devices. `EMBER_FAAS_CYCLES=1000 tests/e2e/run-e2e.sh build
// --gtest_filter=Faas.Endurance*` is the issue's thousand.
TEST(Faas, EnduranceLifecyclesLeaveNothingBehind) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  const char* cycles_env = std::getenv("EMBER_FAAS_CYCLES");
  const int cycles = cycles_env ? std::atoi(cycles_env) : 40, warmup = 3;
  ASSERT_GT(cycles, warmup) << "EMBER_FAAS_CYCLES must be above " << warmup;
  fs::path dir = scratch_dir("faas-endurance");
  fs::path state = dir / "state";
  std::vector<std::string> extra;
  std::string cgroups;
  const bool jailed = statically_linked(env("EMBER_BIN"));
  if (jailed) {
    cgroups = cgroup2_mount();
    ASSERT_FALSE(cgroups.empty());
    extra = {"--jailer", (fs::path(env("EMBER_BIN")).parent_path() / "ember-jailer").string(), "--jail-uid-base",
             "300000"};
  }
  Daemon d(state, dir / "daemon.log", test_port(4), extra);
  json spec = json::parse(function_json(env("EMBER_FAAS_IMAGE_DIR") + "/initramfs.cpio.gz", "cat", 20000));
  spec["keep_alive_ms"] = 0;
  spec["max_vms"] = 1;
  ASSERT_EQ(d.call("PUT", "/functions/echo", spec.dump()).status, 204);

  Footprint before;
  auto started = std::chrono::steady_clock::now();
  std::map<std::string, int> kinds;
  for (int i = 0; i < cycles; ++i) {
    if (i == warmup) before = Footprint::of(d.pid(), state, cgroups);
    std::string input = "cycle " + std::to_string(i);
    Reply r = d.call("POST", "/functions/echo/invoke", input, 240);
    ASSERT_EQ(r.status, 200) << "cycle " << i << ": " << r.body << "\n" << read_text(dir / "daemon.log");
    json j = parse(r);
    ASSERT_EQ(j["output"], input) << r.body;
    kinds[j.value("vm", "?")]++;
    // The VM stops once idle (the daemon's reaper runs every 100 ms): wait for it to be gone,
    // so that the next cycle restores.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(int(30 * time_scale()));
    while (embers_in(state) > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(embers_in(state), 0) << "cycle " << i << ": the idle VM was not stopped";
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // The last client's connection and the last VM's sockets close a moment after the answer
  // and the VM's exit: what grew for good is still there after 5 s (scaled).
  Footprint after;
  for (int i = 0; i < int(50 * time_scale()); ++i) {
    after = Footprint::of(d.pid(), state, cgroups);
    if (after.daemon_fds <= before.daemon_fds && after.daemon_threads <= before.daemon_threads &&
        after.daemon_children == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cout << "endurance: " << cycles << " cycles (" << (jailed ? "jailed" : "not jailed") << ") in "
            << int(seconds) << " s; VMs: cold " << kinds["cold"] << ", restored " << kinds["restored"] << ", warm "
            << kinds["warm"] << "\n  after cycle " << warmup << ": " << before.text() << "\n  at the end:     "
            << after.text() << "\n";
  EXPECT_EQ(kinds["cold"], 1);
  EXPECT_EQ(kinds["restored"], cycles - 1);
  EXPECT_LE(after.daemon_fds, before.daemon_fds);
  EXPECT_LE(after.daemon_threads, before.daemon_threads);
  EXPECT_EQ(after.daemon_children, 0);
  // A sanitized daemon holds freed memory in ASan's quarantine, so its RSS grows without a
  // leak (LeakSanitizer reports real ones when it exits): the RSS bound is for the release build.
  if (!kSanitized) {
    EXPECT_LE(after.daemon_rss_kib, before.daemon_rss_kib + 4096);
  }
  EXPECT_EQ(after.embers, 0);
  EXPECT_LE(after.state_files, before.state_files);  // the function's snapshot stays
  EXPECT_EQ(after.jail_files, 0);
  EXPECT_LE(after.mounts, before.mounts);
  EXPECT_EQ(after.cgroups, 0);
  EXPECT_LE(after.net_devices, before.net_devices);
  std::string metrics = d.call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("faas_restores_total " + std::to_string(cycles - 1)), std::string::npos) << metrics;
  EXPECT_EQ(d.call("DELETE", "/functions/echo").status, 204);
  EXPECT_EQ(d.stop(), 0) << read_text(dir / "daemon.log");
  EXPECT_EQ(files_in(state / "functions"), 0);
}

}  // namespace
}  // namespace ember::e2e
