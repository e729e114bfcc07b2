#include "vmm/vm_exit.h"

#include <unistd.h>

#include "base/util/eventfd.h"

namespace ember {

int VmExit::exit_code() const {
  switch (kind) {
    case ExitKind::GuestShutdown: return 0;
    case ExitKind::GuestPanic: return 3;
    case ExitKind::TripleFault: return 4;
    case ExitKind::Signal: return 130;
    case ExitKind::Error: return 1;
  }
  return 1;
}

ExitLatch::ExitLatch() : event_(make_eventfd("the VM exit latch")) {}

void ExitLatch::note_panic(std::string line) {
  std::lock_guard lock(mu_);
  if (panic_line_.empty()) panic_line_ = std::move(line);
}

void ExitLatch::report(ExitKind kind, std::string detail) {
  {
    std::lock_guard lock(mu_);
    if (reported_.load()) return;
    // With panic=N the kernel resets after a panic: report the panic, not a clean end. A guest
    // that triple-faults after it panicked (while printing the panic, or in its reset path) also
    // ends because of the panic, which is the first cause and the one its owner needs to see.
    if (!panic_line_.empty() && kind == ExitKind::GuestShutdown) {
      kind = ExitKind::GuestPanic;
      detail = "guest kernel panic: " + panic_line_;
    } else if (!panic_line_.empty() && kind == ExitKind::TripleFault) {
      kind = ExitKind::GuestPanic;
      detail = "guest kernel panic: " + panic_line_ + " (then " + detail + ")";
    }
    exit_ = {kind, std::move(detail)};
    reported_.store(true, std::memory_order_release);
  }
  signal_eventfd(event_.get());
}

VmExit ExitLatch::get() const {
  std::lock_guard lock(mu_);
  return exit_;
}

}  // namespace ember
