#include "vmm/seccomp/seccomp.h"

#include <linux/seccomp.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "base/util/error.h"
#include "vmm/seccomp/filters.h"

namespace ember::seccomp {

namespace {

const CompiledFilter* find(ThreadRole role) {
  for (size_t i = 0; i < kCompiledFilterCount; ++i) {
    if (kCompiledFilters[i].role == role) return &kCompiledFilters[i];
  }
  return nullptr;
}

// Async-signal-safe pieces for the report.
size_t append(char* out, size_t at, size_t cap, const char* text) {
  while (*text && at + 1 < cap) out[at++] = *text++;
  return at;
}

size_t append_number(char* out, size_t at, size_t cap, unsigned long value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value && n < sizeof(digits));
  while (n && at + 1 < cap) out[at++] = digits[--n];
  return at;
}

// Runs in the offending thread, under its filter: write and exit_group are in every role's
// allowlist. Nothing of the guest keeps running: exit_group ends every thread.
void on_sigsys(int, siginfo_t* info, void*) {
  char line[256];
  size_t at = append(line, 0, sizeof(line), "ember: seccomp: the ");
  at = append(line, at, sizeof(line), thread_role_name(current_thread_role()));
  at = append(line, at, sizeof(line), " thread made a system call outside its filter: ");
  at = append_number(line, at, sizeof(line), static_cast<unsigned long>(info->si_syscall));
  at = append(line, at, sizeof(line), " (");
  at = append(line, at, sizeof(line), syscall_name(info->si_syscall));
  at = append(line, at, sizeof(line), "); stopping\n");
  ssize_t ignored = ::write(STDERR_FILENO, line, at);
  (void)ignored;
  ::syscall(SYS_exit_group, kExitBadSyscall);
}

}  // namespace

void keep_allocator_within_filters() { ::mallopt(M_TRIM_THRESHOLD, 1 << 30); }

void install_violation_reporter() {
  struct sigaction sa{};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) < 0) fail("sigaction(SIGSYS): ", errno_text());
}

bool role_has_filter(ThreadRole role) {
  const CompiledFilter* f = find(role);
  return f && f->program;
}

void install_filter(ThreadRole role) {
  const CompiledFilter* f = find(role);
  if (!f || !f->program) return;
  // Needed to install a filter without CAP_SYS_ADMIN; ember never executes anything.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("prctl(PR_SET_NO_NEW_PRIVS): ", errno_text());
  sock_fprog program{f->length, const_cast<sock_filter*>(f->program)};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) < 0) {
    fail("cannot install the seccomp filter of the ", thread_role_name(role), " thread: ", errno_text(),
         " (a kernel without seccomp filters? --no-seccomp runs without them)");
  }
}

const char* syscall_name(long nr) {
  if (nr < 0 || static_cast<size_t>(nr) >= kSyscallNameCount || !kSyscallNames[nr]) return "unknown";
  return kSyscallNames[nr];
}

}  // namespace ember::seccomp
