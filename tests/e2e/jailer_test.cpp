// End-to-end jailer: ember started through ember-jailer boots the project's guest with a
// virtio-blk root, a tap in the --netns namespace and vsock, configured with curl through the
// API socket inside the chroot; the guest reaches userspace, pings the host through the tap
// and sends over vsock. Checked from outside: ember's uid/gid, root, cgroup, limits; drive
// paths that point outside the chroot are refused; nothing is left mounted afterwards.
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

constexpr const char* kUid = "1234";
constexpr const char* kGid = "2345";

// Accepts one connection on `path` once its folder exists, reads it to EOF and counts the bytes:
// the host end of the guest's "vsock-io connect 2 6000 send".
class VsockSink {
 public:
  explicit VsockSink(const fs::path& path) : thread_([this, path] { run(path); }) {}
  ~VsockSink() {
    stop_ = true;
    thread_.join();
  }
  size_t bytes() const { return bytes_; }

 private:
  void run(const fs::path& path) {
    double deadline = 300 * time_scale();
    auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    while (!stop_ && !fs::exists(path.parent_path()) && elapsed() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd, 1) < 0) {
      ::close(fd);
      return;
    }
    ::chmod(path.c_str(), 0777);  // ember runs as the jail's uid
    int conn = -1;
    while (!stop_ && conn < 0 && elapsed() < deadline) {
      conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    char buf[65536];
    for (ssize_t n; conn >= 0 && (n = ::read(conn, buf, sizeof(buf))) > 0;) bytes_ += static_cast<size_t>(n);
    if (conn >= 0) ::close(conn);
    ::close(fd);
  }

  std::atomic<bool> stop_{false};
  std::atomic<size_t> bytes_{0};
  std::thread thread_;
};


std::string prelude() {
  return "set -u\n"
         + api_shell_functions();
}

// Shell lines that start ember jailed with id `id` under `base` in the background ($<var>_pid,
// killed after a deadline so that a hang fails only this test), wait for its API socket in the
// chroot, and copy `files` into the chroot for the jail's uid. Console to <log>-console.txt.
std::string start_jailed(const std::string& id, const std::string& var, const std::string& base, const std::string& flags,
                         const std::string& files, const std::string& log) {
  std::string ember = env("EMBER_BIN"), root = base + "/ember/" + id + "/root";
  std::string jailer = (fs::path(ember).parent_path() / "ember-jailer").string();
  return "'" + jailer + "' --id " + id + " --exec-file '" + ember + "' --uid " + kUid + " --gid " + kGid +
         " --chroot-base-dir " + base + " " + flags + " -- --api-sock /api.sock > " + log + "-console.txt 2> " + log +
         "-stderr.txt &\n" + var + "_pid=$!\n" + "(sleep " + std::to_string(static_cast<int>(60 * time_scale())) +
         "; kill $" + var + "_pid) >/dev/null 2>&1 &\n" + "wait_sock " + root + "/api.sock\n" +
         "cp " + files + " " + root + "/ && (cd " + root + " && chown " + kUid + ":" + kGid + " $(basename -a " + files +
         "))\n";
}

// Why the jail cannot hold this build's ember ("" if it can): it holds only the binary.
std::string unjailable_ember() {
  std::string ember = env("EMBER_BIN");
  return statically_linked(ember) ? "" : ember + " is dynamically linked (sanitized build): the jail holds only the binary";
}

constexpr const char* kGuestScript =
    "ip link set lo up; ip link set eth0 up && ip addr add 169.254.10.2/24 dev eth0\n"
    "ping -c 3 -W 5 169.254.10.1 >/dev/null && echo GUEST_PING_OK\n"
    "vsock-io connect 2 6000 send 65536 5 >/dev/null && echo GUEST_VSOCK_SENT\n"
    "echo GUEST_WAITING; sleep 5\n";  // while the host lists ember's threads

TEST(Jailer, JailedEmberBootsWithBlkNetAndVsockOverTheApiInsideTheChroot) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}, {"ip", "iproute2"}, {"zcat", "gzip"}, {"cpio", "cpio"}, {"mke2fs", "e2fsprogs"}}));
  if (std::string why = unjailable_ember(); !why.empty()) GTEST_SKIP() << why;
  std::string ember = env("EMBER_BIN");
  fs::path dir = scratch_dir("jailer");
  std::string d = dir.string(), guest = env("EMBER_GUEST_DIR");
  std::string id = "jail-e2e", ns = "ember-jail-" + std::to_string(::getpid());
  std::string parent_cgroup = "ember-e2e-" + std::to_string(::getpid());
  fs::path root = dir / "jails" / "ember" / id / "root";
  // The root file system: the guest's initramfs as ext4, made outside and copied in (as users
  // hard-link or copy their images into the chroot).
  sh("mkdir -p " + d + "/tree && cd " + d + "/tree && zcat '" + guest + "/initramfs.cpio.gz' | cpio -idm --quiet 2>/dev/null && "
     "mke2fs -q -F -t ext4 -d " + d + "/tree " + d + "/root.img 64M");
  std::string cgroups = cgroup2_mount();
  // The network namespace the jail joins, with a tap the jail's uid may attach to (/run/netns
  // may be missing in the emulated host).
  sh("mkdir -p /run/netns && ip netns add " + ns + " && ip netns exec " + ns + " sh -c 'ip link set lo up && "
     "ip tuntap add dev tap0 mode tap user " + kUid + " group " + kGid + " && ip addr add " + kHostIp +
     "/24 dev tap0 && ip link set tap0 up'");
  VsockSink sink(root / "v.sock_6000");
  std::ofstream(dir / "boot-source.json") << R"({"kernel_image_path": "/bzImage", "boot_args": ")"
                                          << cmdline(kGuestScript) << R"( init=/init"})";
  std::string s = root.string() + "/api.sock", r = root.string();
  std::string proc = "/proc/$pid";
  ProcessResult result = run_process(
      {"/bin/sh", "-c",
       prelude() +
           start_jailed(id, "ember", d + "/jails",
                        "--netns /run/netns/" + ns + " --parent-cgroup " + parent_cgroup +
                            " --resource-limit no-file=1024 --resource-limit fsize=268435456",
                        "'" + guest + "/bzImage' " + d + "/root.img", d + "/ember") +
           "pid=$ember_pid\n"
           "echo \"IDS $(grep -E '^(Uid|Gid|Groups):' " + proc + "/status | tr -s '\\t' ' ' | tr '\\n' ';')\"\n"
           // /proc/PID/root reads "/" from outside ember's mount namespace: compare the folders.
           "echo \"ROOT $(stat -L -c %d:%i " + proc + "/root/) $(stat -c %d:%i " + r + ")\"\n"
           "echo \"CGROUP $(grep '^0::' " + proc + "/cgroup)\"\n"
           "echo \"LIMITS $(grep -E 'Max (open files|file size)' " + proc + "/limits | tr -s ' ' | tr '\\n' ';')\"\n"
           "echo \"NETNS $(readlink " + proc + "/ns/net) $(ip netns exec " + ns + " readlink /proc/self/ns/net)\"\n"
           "api " + s + " PUT /boot-source -d @" + d + "/boot-source.json\n"
           "api " + s + " PUT /machine-config -d '{\"vcpu_count\": 1, \"mem_size_mib\": 128}'\n"
           // Paths that lead outside the chroot name nothing there: PUT /drives opens the file.
           "test -f /etc/shadow && echo HOST_HAS_SHADOW\n"
           "for p in /etc/shadow ../../../etc/shadow; do\n"
           "  api " + s + " PUT /drives/rootfs -d \"{\\\"drive_id\\\": \\\"rootfs\\\", \\\"path_on_host\\\": \\\"$p\\\", "
           "\\\"is_root_device\\\": true, \\\"is_read_only\\\": true}\"\n"
           "done\n"
           "api " + s + " PUT /drives/rootfs -d '{\"drive_id\": \"rootfs\", \"path_on_host\": \"/root.img\", "
           "\"is_root_device\": true, \"is_read_only\": false}'\n"
           "api " + s + " PUT /network-interfaces/eth0 -d '{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}'\n"
           "api " + s + " PUT /vsock -d '{\"guest_cid\": 3, \"uds_path\": \"/v.sock\"}'\n"
           "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n"
           // Every thread of the jailed ember runs under its seccomp filter.
           "for i in $(seq 2400); do grep -q GUEST_WAITING " + d + "/ember-console.txt && break; sleep 0.25; done\n"
           "for t in " + proc + "/task/*; do echo \"TASK $(cat $t/comm) $(awk '/^Seccomp:/{print $2}' $t/status)\"; done\n"
           "wait $pid; echo EMBER_EXIT=$?\n"
           "grep -c '" + r + "' /proc/self/mountinfo | sed 's/^/JAIL_MOUNTS /'\n"},
      600 * time_scale());
  std::string console = read_text(dir / "ember-console.txt");
  SCOPED_TRACE(describe(result) + "\n--- console ---\n" + console + "\n--- stderr ---\n" + read_text(dir / "ember-stderr.txt"));
  const std::string& out = result.out;
  EXPECT_NE(out.find("IDS Uid: 1234 1234 1234 1234;Gid: 2345 2345 2345 2345;Groups: ;"), std::string::npos);
  std::smatch m;
  EXPECT_TRUE(std::regex_search(out, m, std::regex("ROOT (\\d+:\\d+) (\\d+:\\d+)")) && m[1] == m[2]);
  EXPECT_NE(out.find("CGROUP 0::/" + parent_cgroup + "/" + id + "\n"), std::string::npos);
  EXPECT_NE(out.find("LIMITS Max file size 268435456 268435456 bytes ;Max open files 1024 1024 files ;"), std::string::npos);
  EXPECT_TRUE(std::regex_search(out, m, std::regex("NETNS (net:\\[\\d+\\]) (net:\\[\\d+\\])")) && m[1] == m[2]);
  EXPECT_NE(out.find("HOST_HAS_SHADOW"), std::string::npos);
  EXPECT_NE(out.find("cannot open drive 'rootfs' at '/etc/shadow': No such file or directory"), std::string::npos);
  EXPECT_NE(out.find("cannot open drive 'rootfs' at '../../../etc/shadow': No such file or directory"), std::string::npos);
  EXPECT_NE(out.find("TASK fc_vcpu 0 2\n"), std::string::npos);
  EXPECT_NE(out.find("TASK ember-event 2\n"), std::string::npos);
  EXPECT_FALSE(std::regex_search(out, m, std::regex("TASK [^\n]+ [01]\n"))) << "a thread without its filter: " << m[0];
  EXPECT_NE(console.find("EMBER_GUEST_USERSPACE"), std::string::npos);
  EXPECT_NE(console.find("GUEST_PING_OK"), std::string::npos);
  EXPECT_NE(console.find("GUEST_VSOCK_SENT"), std::string::npos);
  EXPECT_NE(console.find("EMBER_TEST_EXIT=0"), std::string::npos);
  EXPECT_EQ(sink.bytes(), 65536u);
  EXPECT_NE(out.find("EMBER_EXIT=0"), std::string::npos);
  EXPECT_NE(out.find("JAIL_MOUNTS 0"), std::string::npos);
  // What the jail's user cleans up: the cgroup, the namespace, the chroot.
  sh("rmdir " + cgroups + "/" + parent_cgroup + "/" + id + " " + cgroups + "/" + parent_cgroup + "; ip netns del " + ns);
  fs::remove_all(dir / "jails");
}

// What the tests of jails booting from an initramfs share: a scratch folder, the jails' base in
// it, and a parent cgroup of their own under the cgroup2 mount.
struct JailScratch {
  explicit JailScratch(const std::string& name)
      : dir(scratch_dir("jailer-" + name)),
        d(dir.string()),
        guest(env("EMBER_GUEST_DIR")),
        base(d + "/jails"),
        parent_cgroup("ember-e2e-" + name + "-" + std::to_string(::getpid())),
        cgroups(cgroup2_mount() + "/" + parent_cgroup) {}
  fs::path dir;
  std::string d, guest, base, parent_cgroup, cgroups;
};

// Two jails with different ids, each booting the guest from an initramfs; once both embers have
// exited, nothing is left: no mount, no process in either cgroup (rmdir succeeds), no process
// whose root is either chroot.
TEST(Jailer, TwoJailedEmbersSideBySideLeaveNothingBehind) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  if (std::string why = unjailable_ember(); !why.empty()) GTEST_SKIP() << why;
  JailScratch j("two");
  const fs::path& dir = j.dir;
  const std::string &d = j.d, &guest = j.guest, &base = j.base, &parent_cgroup = j.parent_cgroup, &cgroups = j.cgroups;
  std::string script = prelude();
  for (const char* id : {"side-a", "side-b"}) {
    std::string s = base + "/ember/" + id + "/root/api.sock", v = std::string(id).substr(5);
    std::ofstream(dir / (std::string(id) + ".json"))
        << R"({"kernel_image_path": "/bzImage", "initrd_path": "/initramfs.cpio.gz", "boot_args": ")"
        << cmdline(std::string("echo RAN_IN_") + id + "\n") << R"("})";
    script += start_jailed(id, v, base, "--parent-cgroup " + parent_cgroup,
                           "'" + guest + "/bzImage' '" + guest + "/initramfs.cpio.gz'", d + "/" + id) +
              "echo \"ROOT_" + v + " $(stat -c %d:%i " + base + "/ember/" + id + "/root)\"\n"
              "api " + s + " PUT /boot-source -d @" + d + "/" + id + ".json\n"
              "api " + s + " PUT /actions -d '{\"action_type\": \"InstanceStart\"}'\n";
  }
  script += "wait $a_pid; echo A_EXIT=$?\nwait $b_pid; echo B_EXIT=$?\n"
            "echo \"JAIL_MOUNTS $(grep -c '" + base + "' /proc/self/mountinfo)\"\n"
            "for p in /proc/[0-9]*; do echo \"PROC_ROOT $(stat -L -c %d:%i $p/root/ 2>/dev/null)\"; done\n"
            "rmdir " + cgroups + "/side-a " + cgroups + "/side-b " + cgroups + " && echo CGROUPS_REMOVED\n"
            "rm -r " + base + "/ember/side-a " + base + "/ember/side-b && echo JAILS_REMOVED\n";
  ProcessResult r = run_process({"/bin/sh", "-c", script}, 600 * time_scale());
  SCOPED_TRACE(describe(r) + "\n--- side-a ---\n" + read_text(dir / "side-a-console.txt") + read_text(dir / "side-a-stderr.txt") +
               "\n--- side-b ---\n" + read_text(dir / "side-b-console.txt") + read_text(dir / "side-b-stderr.txt"));
  EXPECT_NE(r.out.find("A_EXIT=0"), std::string::npos);
  EXPECT_NE(r.out.find("B_EXIT=0"), std::string::npos);
  EXPECT_NE(read_text(dir / "side-a-console.txt").find("RAN_IN_side-a"), std::string::npos);
  EXPECT_NE(read_text(dir / "side-b-console.txt").find("RAN_IN_side-b"), std::string::npos);
  EXPECT_NE(r.out.find("JAIL_MOUNTS 0"), std::string::npos);
  std::smatch m;
  for (const char* v : {"a", "b"}) {
    std::string out = r.out;
    ASSERT_TRUE(std::regex_search(out, m, std::regex(std::string("ROOT_") + v + " (\\d+:\\d+)")));
    EXPECT_EQ(r.out.find("PROC_ROOT " + m[1].str() + "\n"), std::string::npos) << "a process is still in jail " << v;
  }
  EXPECT_NE(r.out.find("CGROUPS_REMOVED"), std::string::npos);
  EXPECT_NE(r.out.find("JAILS_REMOVED"), std::string::npos);
}

// Kata Containers' jailed Go runtime, as it drives Firecracker: it makes <id>/root and
// root/run and puts the kernel, the initrd and fcConfig.json into root before running the
// jailer (uid 0, as Kata runs it), gives ember only --config-file, and polls GET / on
// Firecracker's default socket, <root>/run/firecracker.socket, until "state" is "Running".
TEST(Jailer, KataStyleFolderMadeBeforehandConfigFileAndTheDefaultSocket) {
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  if (std::string why = unjailable_ember(); !why.empty()) GTEST_SKIP() << why;
  JailScratch j("kata");
  std::string ember = env("EMBER_BIN");
  const fs::path& dir = j.dir;
  const std::string &d = j.d, &guest = j.guest, &base = j.base, &parent_cgroup = j.parent_cgroup, &cgroups = j.cgroups;
  fs::path root = dir / "jails" / "ember" / "kata-go" / "root";
  fs::create_directories(root / "run");
  fs::copy_file(guest + "/bzImage", root / "vmlinux");
  fs::copy_file(guest + "/initramfs.cpio.gz", root / "initrd");
  std::ofstream(root / "fcConfig.json")
      << R"({"boot-source": {"kernel_image_path": "/vmlinux", "initrd_path": "/initrd", "boot_args": ")"
      << cmdline("echo RAN_KATA_STYLE\n") << R"("}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}})";
  std::string jailer = (fs::path(ember).parent_path() / "ember-jailer").string();
  std::string s = (root / "run" / "firecracker.socket").string();
  std::string script =
      prelude() + "'" + jailer + "' --id kata-go --exec-file '" + ember + "' --uid 0 --gid 0 --chroot-base-dir " + base +
      " --parent-cgroup " + parent_cgroup + " -- --config-file /fcConfig.json > " + d + "/console.txt 2> " + d +
      "/stderr.txt &\n"
      "pid=$!\n(sleep " + std::to_string(static_cast<int>(60 * time_scale())) + "; kill $pid) >/dev/null 2>&1 &\n"
      "wait_sock " + s + "\n"
      "for i in $(seq 600); do api " + s + " GET / | grep -q '\"state\":\"Running\"' && { echo RUNNING; break; }; "
      "sleep 0.05; done\n"
      "wait $pid; echo EXIT=$?\n"
      "test -e " + s + " || echo SOCKET_REMOVED\n"
      "rmdir " + cgroups + "/kata-go " + cgroups + " && echo CGROUPS_REMOVED\n"
      "rm -r " + base + "/ember/kata-go && echo JAIL_REMOVED\n";
  ProcessResult r = run_process({"/bin/sh", "-c", script}, 300 * time_scale());
  std::string console = read_text(dir / "console.txt");
  SCOPED_TRACE(describe(r) + "\n--- console ---\n" + console + "\n--- stderr ---\n" + read_text(dir / "stderr.txt"));
  EXPECT_NE(r.out.find("RUNNING"), std::string::npos);
  EXPECT_NE(r.out.find("EXIT=0"), std::string::npos);
  EXPECT_NE(console.find("RAN_KATA_STYLE"), std::string::npos);
  EXPECT_NE(r.out.find("SOCKET_REMOVED"), std::string::npos);
  EXPECT_NE(r.out.find("CGROUPS_REMOVED"), std::string::npos);
  EXPECT_NE(r.out.find("JAIL_REMOVED"), std::string::npos);
}

}  // namespace
}  // namespace ember::e2e
