// How a VM ended, and the one place every thread reports it to.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "base/util/unique_fd.h"

namespace ember {

enum class ExitKind {
  GuestShutdown,  // the guest asked to reboot or power off: a normal end
  GuestPanic,     // the guest kernel panicked
  TripleFault,    // KVM_EXIT_SHUTDOWN
  Signal,         // the host asked ember to stop (SIGINT/SIGTERM)
  Error,          // ember or KVM failed
};

struct VmExit {
  ExitKind kind;
  std::string detail;
  int exit_code() const;
};

// First report wins; later ones are ignored. `fd()` becomes readable once set.
class ExitLatch {
 public:
  ExitLatch();
  void report(ExitKind kind, std::string detail);
  bool reported() const { return reported_.load(std::memory_order_acquire); }
  VmExit get() const;
  int fd() const { return event_.get(); }
  // A guest panic is seen on the console before the reset that follows it.
  void note_panic(std::string line);

 private:
  mutable std::mutex mu_;
  std::atomic<bool> reported_{false};
  VmExit exit_{ExitKind::Error, ""};
  std::string panic_line_;
  UniqueFd event_;
};

}  // namespace ember
