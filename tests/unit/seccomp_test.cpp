// The per-role seccomp filters, each installed in a forked child as ember's threads
// install them: what the role needs still works (returns, even if with an error for a
// dummy descriptor), and what it must not do ends the process with status 148 and a
// line naming the role and the system call.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/util/thread.h"
#include "tests/unit/vsock_harness.h"
#include "vmm/kvm/kvm.h"
#include "vmm/seccomp/filters.h"
#include "vmm/seccomp/seccomp.h"

namespace ember {
namespace {

struct Outcome {
  int status;  // exit status, or 128 + signal
  std::string stderr_text;
};

// Runs `body` in a child under `role`'s filter, its stderr captured.
Outcome run_restricted(ThreadRole role, const std::function<void()>& body) {
  int err = ::memfd_create("stderr", MFD_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err, STDERR_FILENO);
    seccomp::install_violation_reporter();
    restrict_current_thread(role);  // records the role the report names
    seccomp::install_filter(role);
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string text(4096, '\0');
  ssize_t n = ::pread(err, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  ::close(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), text};
}

// The calls every filtered role makes: allocator, locks, time, logging, exit.
void common_calls() {
  void* p = ::mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ::mprotect(p, 4096, PROT_READ);
  ::madvise(p, 1 << 16, MADV_DONTNEED);
  ::munmap(p, 1 << 16);
  int word = 0;
  ::syscall(SYS_futex, &word, 1 /*FUTEX_WAKE*/, 1, nullptr, nullptr, 0);
  timespec ts{};
  ::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  ::syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &ts);
  timespec zero{};
  ::nanosleep(&zero, nullptr);
  ::syscall(SYS_getpid);
  ::syscall(SYS_gettid);
  ::sched_yield();
  if (::write(STDERR_FILENO, "", 0) < 0) ::_exit(3);
  std::vector<char> grow(1 << 20);  // brk or mmap, by size
  grow.resize(8 << 20);              // mremap
}

void polling_calls() {
  ::poll(nullptr, 0, 0);
  ::syscall(SYS_epoll_wait, -1, nullptr, 1, 0);
  ::syscall(SYS_epoll_ctl, -1, EPOLL_CTL_DEL, -1, nullptr);
}

std::function<void()> needs_of(ThreadRole role) {
  switch (role) {
    case ThreadRole::Main:
      return [] {
        polling_calls();
        ::syscall(SYS_ioctl, -1, KVM_GET_REGS, 0);
        ::syscall(SYS_ioctl, -1, TCSETS, 0);
        ::unlink("/nonexistent/ember-seccomp-test");
        ::syscall(SYS_read, -1, nullptr, 0);
        ::syscall(SYS_close, -1);
        // PUT /snapshot/create: KVM's state, new files written and renamed in.
        ::syscall(SYS_ioctl, -1, kvm_array_ioctl::kGetXsave2, 0);
        ::syscall(SYS_ioctl, -1, KVM_GET_IRQCHIP, 0);
        ::syscall(SYS_ioctl, -1, kvm_array_ioctl::kGetMsrs, 0);
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test/x", O_WRONLY | O_CREAT | O_EXCL, 0600);
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDONLY | O_DIRECTORY);
        ::syscall(SYS_pwrite64, -1, nullptr, 0, 0);
        ::syscall(SYS_fsync, -1);
        ::syscall(SYS_ftruncate, -1, 0);
        ::syscall(SYS_rename, "/nonexistent/a", "/nonexistent/b");
        // PATCH /drives with path_on_host: the new file opened as open_data_file() does, sized.
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        // ... and once more with O_DIRECT for a cache = "none" drive.
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECT);
        ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDWR | O_NONBLOCK | O_CLOEXEC | O_DIRECT);
        ::syscall(SYS_fcntl, -1, F_SETFL, O_RDWR);
        ::syscall(SYS_ioctl, -1, BLKGETSIZE64, 0);
      };
    case ThreadRole::Vcpu:
      return [] {
        ::syscall(SYS_ioctl, -1, KVM_RUN, 0);
        ::syscall(SYS_ioctl, -1, KVM_GET_REGS, 0);
      };
    case ThreadRole::Event:
      return [] {
        polling_calls();
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) ::_exit(4);
        ::close(fd);
        ::syscall(SYS_io_uring_enter, -1, 1, 0, 0, nullptr, 0);
        ::syscall(SYS_readv, -1, nullptr, 0);
        ::syscall(SYS_writev, -1, nullptr, 0);
        ::syscall(SYS_preadv, -1, nullptr, 0, 0);
        ::syscall(SYS_pwritev, -1, nullptr, 0, 0);
        ::syscall(SYS_fdatasync, -1);
        ::syscall(SYS_fallocate, -1, 0, 0, 0);  // the sync engine's DISCARD and WRITE_ZEROES
        ::syscall(SYS_sendmsg, -1, nullptr, 0);
        ::syscall(SYS_accept4, -1, nullptr, nullptr, 0);
        ::syscall(SYS_connect, -1, nullptr, 0);
        ::syscall(SYS_timerfd_settime, -1, 0, nullptr, nullptr);
        ::syscall(SYS_ioctl, -1, TUNSETOFFLOAD, 0);
        ::syscall(SYS_io_uring_register, -1, IORING_REGISTER_FILES_UPDATE, nullptr, 0);
      };
    case ThreadRole::Api:
      return [] {
        polling_calls();
        ::syscall(SYS_accept4, -1, nullptr, nullptr, 0);
        ::syscall(SYS_recvfrom, -1, nullptr, 0, 0, nullptr, nullptr);
        ::syscall(SYS_sendto, -1, nullptr, 0, 0, nullptr, 0);
      };
    case ThreadRole::Stdin:
      return [] {
        ::poll(nullptr, 0, 0);
        ::syscall(SYS_read, -1, nullptr, 0);
      };
    case ThreadRole::Console:
      return [] { ::poll(nullptr, 0, 0); };
    case ThreadRole::Prefault:
      return [] { ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19); };
    default:
      return [] {};
  }
}

const ThreadRole kFilteredRoles[] = {ThreadRole::Main,  ThreadRole::Vcpu,    ThreadRole::Event,
                                     ThreadRole::Api,   ThreadRole::Metrics, ThreadRole::Stdin,
                                     ThreadRole::Console, ThreadRole::Prefault};

TEST(Seccomp, EveryRoleThatRunsWithTheGuestHasAFilterAndOnlyBuildThreadsDoNot) {
  for (ThreadRole role : kFilteredRoles) EXPECT_TRUE(seccomp::role_has_filter(role)) << thread_role_name(role);
  EXPECT_FALSE(seccomp::role_has_filter(ThreadRole::Machine));
  EXPECT_FALSE(seccomp::role_has_filter(ThreadRole::Loader));
}

TEST(Seccomp, EachRoleCanStillMakeTheCallsItNeeds) {
  for (ThreadRole role : kFilteredRoles) {
    Outcome o = run_restricted(role, [role] {
      common_calls();
      needs_of(role)();
    });
    EXPECT_EQ(o.status, 0) << thread_role_name(role) << ": " << o.stderr_text;
  }
}

// A forbidden call: the child ends with 148 and the report names role and call.
void expect_refused(ThreadRole role, const char* syscall, const std::function<void()>& call) {
  Outcome o = run_restricted(role, call);
  EXPECT_EQ(o.status, seccomp::kExitBadSyscall) << thread_role_name(role) << " " << syscall << ": " << o.stderr_text;
  std::string expected = std::string("ember: seccomp: the ") + thread_role_name(role) +
                         " thread made a system call outside its filter: ";
  EXPECT_NE(o.stderr_text.find(expected), std::string::npos) << o.stderr_text;
  EXPECT_NE(o.stderr_text.find(std::string("(") + syscall + ")"), std::string::npos) << o.stderr_text;
}

TEST(Seccomp, NoRoleMayExecuteProgramsOrMapExecutableMemory) {
  for (ThreadRole role : kFilteredRoles) {
    expect_refused(role, "execve", [] {
      const char* argv[] = {"/bin/true", nullptr};
      ::syscall(SYS_execve, "/bin/true", argv, nullptr);
    });
    expect_refused(role, "mprotect", [] {
      void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      ::mprotect(p, 4096, PROT_READ | PROT_EXEC);
    });
    expect_refused(role, "mmap", [] {
      ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    });
    expect_refused(role, "io_uring_setup", [] {
      io_uring_params params{};
      ::syscall(SYS_io_uring_setup, 4, &params);
    });
  }
}

// KVM ioctls are checked by request number: a vCPU may run, not create VMs or vCPUs
// or change guest memory; the main thread only reads registers once running.
TEST(Seccomp, IoctlsAreCheckedByRequestNumber) {
  expect_refused(ThreadRole::Vcpu, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_CREATE_VM, 0); });
  expect_refused(ThreadRole::Vcpu, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_SET_USER_MEMORY_REGION, 0); });
  expect_refused(ThreadRole::Vcpu, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_RUN + 1, 0); });
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_CREATE_VM, 0); });
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_CREATE_VCPU, 0); });
  // A snapshot reads KVM's state; nothing may set it.
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_SET_REGS, 0); });
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, kvm_array_ioctl::kSetMsrs, 0); });
  expect_refused(ThreadRole::Event, "ioctl", [] { ::syscall(SYS_ioctl, -1, TUNSETIFF, 0); });
  expect_refused(ThreadRole::Event, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_RUN, 0); });
  expect_refused(ThreadRole::Api, "ioctl", [] { ::syscall(SYS_ioctl, -1, KVM_RUN, 0); });
}

TEST(Seccomp, SocketsAndSignalsAreCheckedByArgument) {
  expect_refused(ThreadRole::Event, "socket", [] { ::socket(AF_INET, SOCK_STREAM, 0); });
  expect_refused(ThreadRole::Event, "socket", [] { ::socket(AF_INET6, SOCK_DGRAM, 0); });
  expect_refused(ThreadRole::Event, "socket", [] { ::socket(AF_NETLINK, SOCK_RAW, 0); });
  expect_refused(ThreadRole::Api, "socket", [] { ::socket(AF_UNIX, SOCK_STREAM, 0); });
  expect_refused(ThreadRole::Vcpu, "socket", [] { ::socket(AF_UNIX, SOCK_STREAM, 0); });
  // The main thread may kick vCPUs (SIGRTMIN) and abort; not kill with anything else. The
  // sanitized build's filters allow kill and tgkill outright (its runtime signals threads).
  if (seccomp::kWithSanitizerRuntime) return;
  expect_refused(ThreadRole::Main, "tgkill", [] { ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), SIGKILL); });
  expect_refused(ThreadRole::Vcpu, "tgkill", [] { ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), SIGRTMIN); });
  expect_refused(ThreadRole::Api, "kill", [] { ::syscall(SYS_kill, 1, 0); });
}

// What the sanitizer runtime needs (rules.h) opens the sanitized build's filters to
// these; the release build, which users run, refuses them.
TEST(Seccomp, NoRoleOpensFilesCreatesThreadsOrTracesOnceRunning) {
  if (seccomp::kWithSanitizerRuntime) GTEST_SKIP() << "the sanitized build's filters allow the sanitizer runtime's files, threads and ptrace";
  for (ThreadRole role : kFilteredRoles) {
    expect_refused(role, "openat", [] { ::open("/etc/passwd", O_RDONLY | O_CLOEXEC); });
    expect_refused(role, "openat", [] { ::open("/etc/passwd", O_WRONLY | O_CLOEXEC); });
    expect_refused(role, "openat", [] { ::open("/etc/passwd", O_RDWR | O_CREAT | O_CLOEXEC, 0600); });
    expect_refused(role, "clone3", [] { ::syscall(SYS_clone3, nullptr, 0); });
    expect_refused(role, "ptrace", [] { ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); });
  }
}

// The main thread opens a swapped drive's file: an existing file, read-only or read-write,
// in exactly open_data_file()'s form. Anything wider (creating, truncating, appending,
// write-only, O_PATH, other fcntl commands or block ioctls) stays refused, and only the
// event thread may update the io_uring's file slots, with no other registration.
TEST(Seccomp, DriveSwapWidensOnlyWhatItNeeds) {
  if (!seccomp::kWithSanitizerRuntime) {
    const int kExisting = O_NONBLOCK | O_CLOEXEC;
    for (int flags : {O_RDWR | kExisting | O_CREAT, O_RDWR | kExisting | O_CREAT | O_TRUNC,
                      O_RDWR | kExisting | O_TRUNC, O_RDWR | kExisting | O_APPEND, O_WRONLY | kExisting,
                      O_PATH | kExisting, O_RDONLY | kExisting | O_NOFOLLOW, O_RDWR | O_CLOEXEC,
                      O_RDONLY | O_NONBLOCK, O_RDWR | kExisting | O_DIRECT | O_CREAT,
                      O_RDWR | kExisting | O_DIRECT | O_TRUNC, O_WRONLY | kExisting | O_DIRECT}) {
      SCOPED_TRACE(flags);
      expect_refused(ThreadRole::Main, "openat",
                     [flags] { ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", flags, 0600); });
    }
    for (int cmd : {F_SETFD, F_DUPFD, F_DUPFD_CLOEXEC, F_SETOWN, F_SETLK}) {
      SCOPED_TRACE(cmd);
      expect_refused(ThreadRole::Main, "fcntl", [cmd] { ::syscall(SYS_fcntl, -1, cmd, 0); });
    }
    expect_refused(ThreadRole::Api, "openat", [] {
      ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    });
    expect_refused(ThreadRole::Event, "openat", [] {
      ::syscall(SYS_openat, AT_FDCWD, "/nonexistent/ember-seccomp-test", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    });
  }
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, BLKDISCARD, 0); });
  expect_refused(ThreadRole::Main, "ioctl", [] { ::syscall(SYS_ioctl, -1, BLKFLSBUF, 0); });
  for (unsigned op : {IORING_REGISTER_FILES, IORING_UNREGISTER_FILES, IORING_REGISTER_EVENTFD, IORING_REGISTER_BUFFERS,
                      IORING_REGISTER_FILES2, IORING_REGISTER_FILES_UPDATE2, IORING_REGISTER_RESTRICTIONS}) {
    SCOPED_TRACE(op);
    expect_refused(ThreadRole::Event, "io_uring_register",
                   [op] { ::syscall(SYS_io_uring_register, -1, op, nullptr, 0); });
  }
  expect_refused(ThreadRole::Main, "io_uring_register",
                 [] { ::syscall(SYS_io_uring_register, -1, IORING_REGISTER_FILES_UPDATE, nullptr, 0); });
}

// A thread allocates, ends, and the main thread frees its memory under the main filter, as
// at teardown. Runs as this test binary re-executed (a fresh process): glibc reads
// /proc/sys/vm/overcommit_memory once per process, so an earlier test in the same process
// could have made it skip the open this checks for.
constexpr const char* kKeepAllocatorVariable = "EMBER_TEST_KEEP_ALLOCATOR";

TEST(Seccomp, DISABLED_FinishedThreadsMemoryFreedUnderTheMainFilter) {
  const char* keep = std::getenv(kKeepAllocatorVariable);
  if (!keep) GTEST_SKIP() << "run by MemoryOfAFinishedThreadIsFreedWithinTheMainFilter in a process of its own";
  seccomp::install_violation_reporter();
  if (keep[0] == '1') seccomp::keep_allocator_within_filters();
  std::vector<char*> blocks;
  std::thread([&blocks] {
    for (int i = 0; i < 1024; ++i) blocks.push_back(new char[1024]);  // 1 MiB in the thread's arena
  }).join();
  restrict_current_thread(ThreadRole::Main);
  seccomp::install_filter(ThreadRole::Main);
  for (char* b : blocks) delete[] b;
  ::_exit(0);
}

// The exit status of that scenario, with or without keep_allocator_within_filters() first.
int free_a_finished_threads_memory_under_the_main_filter(bool keep_allocator) {
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  pid_t pid = ::fork();
  if (pid == 0) {
    int quiet = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    ::dup2(quiet, STDOUT_FILENO);
    ::dup2(quiet, STDERR_FILENO);
    ::setenv(kKeepAllocatorVariable, keep_allocator ? "1" : "0", 1);
    ::execl(self.c_str(), self.c_str(), "--gtest_also_run_disabled_tests",
            "--gtest_filter=Seccomp.DISABLED_FinishedThreadsMemoryFreedUnderTheMainFilter", nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Seccomp, MemoryOfAFinishedThreadIsFreedWithinTheMainFilter) {
  EXPECT_EQ(free_a_finished_threads_memory_under_the_main_filter(true), 0);
  // The sanitizer's allocator never opens the file, and its filters allow opens anyway.
  if (!seccomp::kWithSanitizerRuntime) {
    EXPECT_EQ(free_a_finished_threads_memory_under_the_main_filter(false), seccomp::kExitBadSyscall)
        << "glibc no longer opens a file when it shrinks an arena: this test shows nothing any more";
  }
}

// A VM's teardown resets its devices on the main thread (the transport's destructor): a
// vsock device with a host client still in its handshake must not re-arm its timer there.
TEST(Seccomp, VsockResetWithAHandshakeInFlightStaysWithinTheMainFilter) {
  using namespace virtio::vsock::vsock_test;
  Harness t;
  t.give_rx(4);
  UniqueFd host = unix_connect(t.uds);  // no CONNECT line yet: its deadline is armed
  t.loop.run_once(200);
  ASSERT_EQ(t.device->connection_count(), 1u);
  Outcome o = run_restricted(ThreadRole::Main, [&] { t.device->reset(); });
  EXPECT_EQ(o.status, 0) << o.stderr_text;
}

TEST(Seccomp, ReportsNameTheSystemCall) {
  EXPECT_STREQ(seccomp::syscall_name(SYS_read), "read");
  EXPECT_STREQ(seccomp::syscall_name(SYS_ioctl), "ioctl");
  EXPECT_STREQ(seccomp::syscall_name(SYS_io_uring_setup), "io_uring_setup");
  EXPECT_STREQ(seccomp::syscall_name(-1), "unknown");
  EXPECT_STREQ(seccomp::syscall_name(100000), "unknown");
}

}  // namespace
}  // namespace ember
