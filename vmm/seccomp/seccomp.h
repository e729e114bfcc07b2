// Per-thread seccomp filters at run time: each thread ember starts installs its role's
// compiled allowlist (filters.h) first thing; the main thread installs its own once every
// other thread exists. A system call outside the list ends ember at once with
// kExitBadSyscall, after one line naming the thread's role and the system call.
#pragma once

#include "base/util/thread.h"

namespace ember::seccomp {

// Firecracker's exit status for the same event, so supervisors need not tell them apart.
constexpr int kExitBadSyscall = 148;

// Installs the SIGSYS handler that reports a forbidden call (process-wide; once, early).
void install_violation_reporter();

// glibc returns memory to the kernel by shrinking a thread's malloc arena once its free top
// passes the trim threshold, and its first shrink opens /proc/sys/vm/overcommit_memory: from
// a thread whose filter allows no open (the main thread freeing at teardown what a finished
// thread allocated) that would end ember. Sets a threshold no arena reaches: no shrink, so no
// open (ember's heap is small; an arena that empties is still unmapped whole). Once, early.
void keep_allocator_within_filters();

// Installs the calling thread's filter for `role` (no-op for unfiltered roles: machine,
// loader). Throws Error when the kernel refuses it.
void install_filter(ThreadRole role);

// Whether `role` gets a filter at all.
bool role_has_filter(ThreadRole role);

// "read", "ioctl", ...; "unknown" for numbers the table lacks.
const char* syscall_name(long nr);

}  // namespace ember::seccomp
