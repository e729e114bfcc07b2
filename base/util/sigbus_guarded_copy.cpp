#include "base/util/sigbus_guarded_copy.h"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace ember {

namespace {

struct Guard {
  sigjmp_buf jump;
  uintptr_t src_begin, src_end, dst_begin, dst_end;
  GuardedCopyResult result;
};

// The copy in progress on this thread; SIGBUS is delivered to the thread that faulted.
thread_local Guard* active_guard = nullptr;

bool within(uintptr_t address, uintptr_t begin, uintptr_t end) { return address >= begin && address < end; }

void on_sigbus(int signo, siginfo_t* info, void*) {
  Guard* guard = active_guard;
  auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  // si_code > 0: raised by the kernel for a faulting access, not sent by kill().
  if (guard && info->si_code > 0) {
    if (within(address, guard->src_begin, guard->src_end)) {
      guard->result = {GuardedCopyResult::Fault::Source, address};
      siglongjmp(guard->jump, 1);
    }
    if (within(address, guard->dst_begin, guard->dst_end)) {
      guard->result = {GuardedCopyResult::Fault::Destination, address};
      siglongjmp(guard->jump, 1);
    }
  }
  // Not a guarded copy's: the default action, once this handler returns (SIGBUS is
  // blocked while it runs; a faulting access would repeat anyway).
  ::signal(signo, SIG_DFL);
  ::raise(signo);
}

void install_handler_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action{};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, nullptr);
  });
}

}  // namespace

GuardedCopyResult sigbus_guarded_copy(void* dst, const void* src, size_t len) {
  install_handler_once();
  Guard guard{};
  guard.src_begin = reinterpret_cast<uintptr_t>(src);
  guard.src_end = guard.src_begin + len;
  guard.dst_begin = reinterpret_cast<uintptr_t>(dst);
  guard.dst_end = guard.dst_begin + len;
  // savemask 1: the jump out of the handler also unblocks SIGBUS again.
  if (sigsetjmp(guard.jump, 1) != 0) {
    active_guard = nullptr;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // guard.result was set by the handler
    return guard.result;
  }
  active_guard = &guard;
  // The compiler knows memcpy does not read active_guard; keep the stores around it.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::memcpy(dst, src, len);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  active_guard = nullptr;
  return guard.result;
}

}  // namespace ember
