#include "vmm/seccomp/rules.h"

#include <linux/kvm.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>

#include <initializer_list>

#include "vmm/kvm/kvm.h"

namespace ember::seccomp {

namespace {

// Collects rules and remembers the first libseccomp error.
class Allowlist {
 public:
  explicit Allowlist(scmp_filter_ctx ctx) : ctx_(ctx) {}
  void allow(int nr) { keep(seccomp_rule_add(ctx_, SCMP_ACT_ALLOW, nr, 0)); }
  void allow(std::initializer_list<int> nrs) {
    for (int nr : nrs) allow(nr);
  }
  void allow_if(int nr, scmp_arg_cmp condition) { keep(seccomp_rule_add(ctx_, SCMP_ACT_ALLOW, nr, 1, condition)); }
  // ioctl(fd, request): one rule per request number.
  void allow_ioctls(std::initializer_list<unsigned long> requests) {
    for (unsigned long r : requests) allow_if(SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_EQ, r));
  }
  int result() const { return error_; }

 private:
  void keep(int rc) {
    if (rc < 0 && error_ == 0) error_ = rc;
  }
  scmp_filter_ctx ctx_;
  int error_ = 0;
};

// Every filtered thread: memory for the allocator and thread stacks (never executable),
// locks and timed waits, signal returns, its log lines (and the SIGSYS report), abort()
// and thread or process exit.
void allow_common(Allowlist& a) {
  a.allow({SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise)});
  a.allow_if(SCMP_SYS(mmap), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  a.allow_if(SCMP_SYS(mprotect), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  a.allow({SCMP_SYS(futex), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
           SCMP_SYS(sched_yield), SCMP_SYS(gettid), SCMP_SYS(getpid)});
  a.allow({SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(restart_syscall)});
  a.allow_if(SCMP_SYS(tgkill), SCMP_A2(SCMP_CMP_EQ, SIGABRT));  // abort()
  a.allow(SCMP_SYS(write));
  a.allow({SCMP_SYS(exit), SCMP_SYS(exit_group)});
}

// Waiting on descriptors, in the forms glibc uses.
void allow_polling(Allowlist& a) {
  a.allow({SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl)});
}

// The sanitizer runtime makes raw system calls of its own (x86-64's older forms: open,
// stat, getdents); LeakSanitizer's tracer at exit blocks SIGSYS, so a miss here ends it
// silently and leaves ember spinning: keep this list generous.
void allow_sanitizer_runtime(Allowlist& a) {
  a.allow({SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(readlink),
           SCMP_SYS(readlinkat), SCMP_SYS(getdents), SCMP_SYS(getdents64), SCMP_SYS(newfstatat), SCMP_SYS(fstat),
           SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(access), SCMP_SYS(lseek), SCMP_SYS(pipe),
           SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(prctl),
           SCMP_SYS(sched_getaffinity), SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction), SCMP_SYS(tgkill),
           SCMP_SYS(kill), SCMP_SYS(getppid), SCMP_SYS(pipe2), SCMP_SYS(prlimit64), SCMP_SYS(getrlimit),
           SCMP_SYS(setrlimit), SCMP_SYS(mincore), SCMP_SYS(getrusage), SCMP_SYS(uname), SCMP_SYS(set_robust_list),
           SCMP_SYS(rseq), SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(fcntl)});
}

void allow_role(Allowlist& a, ThreadRole role) {
  switch (role) {
    case ThreadRole::Main:
      // Once the guest runs: waits for the guest's end, a signal or an API action; applies
      // the actions (pause kicks vCPUs out of KVM_RUN); then the stop order's teardown
      // (reads where each vCPU stopped, closes and unmaps, removes its sockets, restores
      // the terminal). Files it writes at exit are opened before.
      allow_polling(a);
      a.allow({SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(unlink), SCMP_SYS(newfstatat), SCMP_SYS(lstat)});
      a.allow_if(SCMP_SYS(tgkill), SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(SIGRTMIN)));  // vCPU kick
      a.allow_ioctls({KVM_GET_REGS, TCGETS, TCSETS});
      // PUT /snapshot/create on the paused VM: KVM's state read out (vCPU, VM, dirty log),
      // the memory file and the snapshot file written beside their paths and renamed in
      // (mkostemp's random name), holes punched for zero pages of a diff.
      a.allow_ioctls({KVM_GET_SREGS, kvm_array_ioctl::kGetXsave, kvm_array_ioctl::kGetXsave2, KVM_GET_XCRS, KVM_GET_DEBUGREGS, KVM_GET_LAPIC,
                      KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
                      KVM_GET_DIRTY_LOG, kvm_array_ioctl::kGetCpuid2, kvm_array_ioctl::kGetMsrs});
      // It opens new files (O_CREAT|O_EXCL) and folders read-only (to fsync a rename).
      a.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_MASKED_EQ, O_CREAT | O_EXCL, O_CREAT | O_EXCL));
      a.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_MASKED_EQ, O_DIRECTORY | O_ACCMODE | O_CREAT, O_DIRECTORY | O_RDONLY));
      // PATCH /drives with path_on_host: a drive's new file, existing (no O_CREAT, O_TRUNC,
      // O_APPEND or O_PATH: these exact flags only), opened read-only or read-write as
      // open_data_file() does (O_NONBLOCK, cleared again with F_SETFL), and its size; a
      // cache = "none" drive opens it a second time with O_DIRECT.
      for (scmp_datum_t direct : {scmp_datum_t{0}, scmp_datum_t{O_DIRECT}}) {
        a.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_EQ, O_RDONLY | O_NONBLOCK | O_CLOEXEC | direct));
        a.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_EQ, O_RDWR | O_NONBLOCK | O_CLOEXEC | direct));
      }
      a.allow_if(SCMP_SYS(fcntl), SCMP_A1(SCMP_CMP_EQ, F_SETFL));
      a.allow_ioctls({BLKGETSIZE64});
      a.allow({SCMP_SYS(pwrite64), SCMP_SYS(ftruncate), SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(fallocate),
               SCMP_SYS(rename), SCMP_SYS(getrandom), SCMP_SYS(fstat)});
      break;
    case ThreadRole::Vcpu:
      // KVM_RUN and its exits: port and MMIO handlers signal eventfds (interrupts, the
      // event thread, the exit latch) and wait on locks; registers are read to report
      // an internal error. Nothing else.
      a.allow_ioctls({KVM_RUN, KVM_GET_REGS});
      break;
    case ThreadRole::Event:
      // Device backends: eventfds, the tap (preadv2: RX reads that do not wait; or O_NONBLOCK
      // set and cleared around such reads where the tap refuses RWF_NOWAIT; writev: small TX
      // frames written without io_uring), vsock's
      // Unix sockets (guest-initiated connections open new ones: AF_UNIX only), the sync
      // block engine (fallocate: a drive's DISCARD and WRITE_ZEROES), io_uring.
      allow_polling(a);
      a.allow({SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(preadv), SCMP_SYS(preadv2),
               SCMP_SYS(pwritev), SCMP_SYS(fdatasync), SCMP_SYS(fallocate), SCMP_SYS(close), SCMP_SYS(recvfrom),
               SCMP_SYS(sendto), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(accept4), SCMP_SYS(connect),
               SCMP_SYS(shutdown), SCMP_SYS(timerfd_settime), SCMP_SYS(io_uring_enter)});
      // The one registration the sealed ring still takes: a drive's slot moved to its new file.
      a.allow_if(SCMP_SYS(io_uring_register), SCMP_A1(SCMP_CMP_EQ, IORING_REGISTER_FILES_UPDATE));
      a.allow_if(SCMP_SYS(socket), SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
      a.allow_ioctls({TUNSETOFFLOAD});
      a.allow_if(SCMP_SYS(fcntl), SCMP_A1(SCMP_CMP_EQ, F_GETFL));
      a.allow_if(SCMP_SYS(fcntl), SCMP_A1(SCMP_CMP_EQ, F_SETFL));
      break;
    case ThreadRole::Api:
      // HTTP on the already bound socket; requests become actions for the main thread.
      allow_polling(a);
      a.allow({SCMP_SYS(read), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(accept4), SCMP_SYS(close)});
      break;
    case ThreadRole::Metrics:
      break;  // formats the counters and writes them to the open file
    case ThreadRole::Stdin:
      a.allow({SCMP_SYS(read), SCMP_SYS(poll), SCMP_SYS(ppoll)});
      break;
    case ThreadRole::Console:
      a.allow({SCMP_SYS(poll), SCMP_SYS(ppoll)});
      break;
    case ThreadRole::Prefault:
      // madvise(MADV_POPULATE_WRITE) is in the common set; it lowers its own priority.
      a.allow_if(SCMP_SYS(setpriority), SCMP_A0(SCMP_CMP_EQ, PRIO_PROCESS));
      break;
    case ThreadRole::Machine:
    case ThreadRole::Loader:
      break;
  }
}

}  // namespace

bool role_is_filtered(ThreadRole role) { return role != ThreadRole::Machine && role != ThreadRole::Loader; }

int add_role_rules(scmp_filter_ctx ctx, ThreadRole role, const RuleOptions& options) {
  Allowlist a(ctx);
  allow_common(a);
  allow_role(a, role);
  if (options.with_sanitizer_runtime) allow_sanitizer_runtime(a);
  return a.result();
}

}  // namespace ember::seccomp
