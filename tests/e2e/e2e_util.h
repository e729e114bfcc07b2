// Helpers shared by end-to-end tests: environment from run-e2e.sh, scratch
// folders, the guest command line (with an ember_test script), shell commands.
#pragma once

#include <elf.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "base/util/base64.h"
#include "tests/e2e/process.h"

namespace ember::e2e::util {

namespace fs = std::filesystem;

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    ADD_FAILURE() << name << " is not set: run the end-to-end tests through tests/e2e/run-e2e.sh";
    return "";
  }
  return v;
}

// A listening Unix stream socket at `path` (the caller closes it); a failure fails the test.
// vsock tests listen where ember forwards a guest's connections to port P: "<uds_path>_P".
inline int unix_listen(const std::string& path, int backlog = 16) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << path << ": " << std::strerror(errno);
  EXPECT_EQ(::listen(fd, backlog), 0) << path;
  return fd;
}

// Whether the executable at `path` has no interpreter. A jail holds only the executable, so a
// dynamically linked one (the sanitized build) cannot run there.
inline bool statically_linked(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof(eh))) return false;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof(ph))) return false;
    if (ph.p_type == PT_INTERP) return false;
  }
  return true;
}

inline double time_scale() {
  const char* v = std::getenv("EMBER_E2E_TIME_SCALE");
  return v ? std::atof(v) : 1.0;
}

// A fresh folder for one test.
inline fs::path scratch_dir(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  fs::path dir = fs::path(tmp ? tmp : "/tmp") / ("ember-e2e-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Quiet (each console byte is slow in the emulated host), plus the test script.
inline std::string cmdline(const std::string& script = "") {
  std::string c = "console=ttyS0 reboot=k panic=1 pci=off quiet";
  if (!script.empty()) c += " ember_test=" + base64(script);
  return c;
}

inline std::string describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + " after " +
         std::to_string(r.seconds) + " s\n--- stdout ---\n" + r.out + "\n--- stderr ---\n" + r.err;
}

// Runs `command` with /bin/sh; fails the test (and returns "") when it fails.
inline std::string sh(const std::string& command, double timeout = 120) {
  ProcessResult r = run_process({"/bin/sh", "-c", command}, timeout * time_scale());
  EXPECT_EQ(r.exit_code, 0) << command << "\n" << describe(r);
  return r.exit_code == 0 ? r.out : "";
}

// A file of `bytes` bytes of 'e', written (so allocated, also on tmpfs).
inline fs::path filled_file(const fs::path& path, uint64_t bytes) {
  sh("head -c " + std::to_string(bytes) + " /dev/zero | tr '\\0' 'e' > '" + path.string() + "'");
  return path;
}

// The host tools a test runs, checked before it starts so that a missing one fails the test
// at once, naming it and its Debian package, instead of waiting out a timeout.
// Use: ASSERT_TRUE(host_tools({{"curl", "curl"}, {"ip", "iproute2"}}));
struct HostTool {
  const char* name;
  const char* package;
};
inline ::testing::AssertionResult host_tools(std::initializer_list<HostTool> tools) {
  std::string missing;
  for (const HostTool& t : tools) {
    ProcessResult r = run_process({"/bin/sh", "-c", std::string("command -v ") + t.name}, 10);
    if (r.exit_code != 0) missing += std::string(missing.empty() ? "" : ", ") + t.name + " (Debian package " + t.package + ")";
  }
  if (missing.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "host tools not found in PATH: " << missing
                                       << "; tools/setup.sh installs them";
}

// Shell functions for scripts that drive ember's API with curl: `api SOCKET METHOD PATH [curl
// args]` prints the body then " HTTP<code>"; `wait_sock SOCKET` waits up to 60 s for it to exist.
inline std::string api_shell_functions() {
  return "api() { s=$1; m=$2; p=$3; shift 3; curl -sS --unix-socket \"$s\" -X \"$m\" \"http://localhost$p\" "
         "-H 'Accept: application/json' -H 'Content-Type: application/json' -w ' HTTP%{http_code}\\n' \"$@\"; }\n"
         "wait_sock() { for i in $(seq 600); do [ -S \"$1\" ] && return 0; sleep 0.1; done; echo NO_SOCKET; return 1; }\n";
}

// A root filesystem: the project's initramfs (busybox, /init, guest/tools) as an ext4 image of
// `size` (mke2fs syntax) in `dir`, with `files` (path in the image, contents) added. Sparse.
inline fs::path guest_root_image(const fs::path& dir, const std::map<std::string, std::string>& files,
                                 const std::string& size) {
  fs::path tree = dir / "root-tree";
  fs::create_directories(tree);
  // cpio cannot create device nodes without root; the kernel's devtmpfs has them.
  sh("cd '" + tree.string() + "' && zcat '" + env("EMBER_GUEST_DIR") +
     "/initramfs.cpio.gz' | cpio -idm --quiet 2>/dev/null; test -x bin/busybox");
  for (const auto& [path, contents] : files) std::ofstream(tree / path) << contents;
  fs::path image = dir / "root.img";
  sh("mke2fs -q -F -t ext4 -d '" + tree.string() + "' '" + image.string() + "' " + size);
  return image;
}

// Where cgroup2 is mounted (the jailer's default hierarchy), mounting it at /sys/fs/cgroup
// first if the host has none (the emulated host's init may not have).
inline std::string cgroup2_mount() {
  sh("grep -q ' - cgroup2 ' /proc/self/mountinfo || mount -t cgroup2 cgroup2 /sys/fs/cgroup");
  std::string line = sh("grep -m1 ' - cgroup2 ' /proc/self/mountinfo");
  std::string::size_type start = 0;
  for (int field = 0; field < 4 && start != std::string::npos; ++field) start = line.find(' ', start + 1);
  return start == std::string::npos ? "" : line.substr(start + 1, line.find(' ', start + 1) - start - 1);
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace ember::e2e::util
