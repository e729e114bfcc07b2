#include "vmm/vcpu.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>

#include <cstring>

#include "base/util/error.h"
#include "base/util/log.h"
#include "base/util/thread.h"

namespace ember {

namespace {

thread_local kvm_run* t_run = nullptr;

int kick_signal() { return SIGRTMIN; }

void on_kick(int) {
  // Only async-signal-safe work: ask the next (or current) KVM_RUN to return.
  if (t_run) t_run->immediate_exit = 1;
}

}  // namespace

void Vcpu::install_kick_handler() {
  struct sigaction sa{};
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (::sigaction(kick_signal(), &sa, nullptr) < 0) fail("sigaction for vCPU kick: ", errno_text());
}

void Vcpu::start() {
  started_ = true;
  // Firecracker's name for its vCPU threads, which tools find them by (Kata Containers pins
  // them to host CPUs by it); the seccomp filter comes from the role, not the name.
  thread_ = start_thread(ThreadRole::Vcpu, "fc_vcpu " + std::to_string(fd_.id()), [this] { run_loop(); });
}

void Vcpu::kick() {
  if (started_ && thread_.joinable()) pthread_kill(thread_.native_handle(), kick_signal());
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::run_loop() {
  kvm_run* run = fd_.run();
  t_run = run;
  // The kick signal is blocked by the spawning thread's mask only if inherited; make sure it is open here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  if (first_run_hook_) first_run_hook_();
  while (!exit_.reported()) {
    if (pause_pending_.load(std::memory_order_acquire) && !park_if_paused()) break;
    int ret = ::ioctl(fd_.fd(), KVM_RUN, 0);
    if (ret < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        run->immediate_exit = 0;
        count(ExitReason::Interrupted);
        continue;
      }
      exit_.report(ExitKind::Error, cat("KVM_RUN failed on vCPU ", fd_.id(), ": ", errno_text()));
      break;
    }
    if (!handle_exit(run)) break;
  }
  t_run = nullptr;
  {
    std::lock_guard lock(pause_mu_);
    ended_ = true;
  }
  pause_cv_.notify_all();
}

bool Vcpu::handle_exit(kvm_run* run) {
  switch (run->exit_reason) {
    case KVM_EXIT_IO:
      count(run->io.direction == KVM_EXIT_IO_OUT ? ExitReason::IoOut : ExitReason::IoIn);
      handle_io(run);
      return true;
    case KVM_EXIT_MMIO:
      count(run->mmio.is_write ? ExitReason::MmioWrite : ExitReason::MmioRead);
      handle_mmio(run);
      return true;
    case KVM_EXIT_SHUTDOWN:
      count(ExitReason::Shutdown);
      exit_.report(ExitKind::TripleFault, cat("guest triple fault on vCPU ", fd_.id(), " (KVM_EXIT_SHUTDOWN)"));
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      count(ExitReason::SystemEvent);
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
        case KVM_SYSTEM_EVENT_RESET:
          exit_.report(ExitKind::GuestShutdown, "guest requested shutdown");
          return false;
        case KVM_SYSTEM_EVENT_CRASH:
          exit_.report(ExitKind::GuestPanic, "guest reported a crash");
          return false;
        default:
          exit_.report(ExitKind::Error, cat("unhandled KVM_EXIT_SYSTEM_EVENT type ", run->system_event.type));
          return false;
      }
    case KVM_EXIT_FAIL_ENTRY:
      count(ExitReason::Failure);
      exit_.report(ExitKind::Error, cat("KVM_EXIT_FAIL_ENTRY on vCPU ", fd_.id(), ": hardware reason ",
                                        hex(run->fail_entry.hardware_entry_failure_reason)));
      return false;
    case KVM_EXIT_INTERNAL_ERROR: {
      count(ExitReason::Failure);
      std::string data;
      for (uint32_t i = 0; i < std::min<uint32_t>(run->internal.ndata, 16); ++i) {
        data += " " + hex(run->internal.data[i]);
      }
      exit_.report(ExitKind::Error, cat("KVM_EXIT_INTERNAL_ERROR on vCPU ", fd_.id(), ": suberror ",
                                        run->internal.suberror, " at rip ", hex(current_rip()), ", data", data));
      return false;
    }
    case KVM_EXIT_INTR:
      count(ExitReason::Interrupted);
      return true;
    default:
      count(ExitReason::Failure);
      exit_.report(ExitKind::Error,
                   cat("unhandled exit ", kvm_exit_name(run->exit_reason), " (", run->exit_reason, ") on vCPU ",
                       fd_.id()));
      return false;
  }
}

const char* Vcpu::exit_reason_name(ExitReason reason) {
  switch (reason) {
    case ExitReason::IoIn: return "exit_io_in";
    case ExitReason::IoOut: return "exit_io_out";
    case ExitReason::MmioRead: return "exit_mmio_read";
    case ExitReason::MmioWrite: return "exit_mmio_write";
    case ExitReason::Interrupted: return "exit_interrupted";
    case ExitReason::Shutdown: return "exit_shutdown";
    case ExitReason::SystemEvent: return "exit_system_event";
    case ExitReason::Failure: return "exit_failure";
    case ExitReason::Count: break;
  }
  return "?";
}

void Vcpu::request_pause() {
  {
    std::lock_guard lock(pause_mu_);
    pause_requested_ = true;
    pause_pending_.store(true, std::memory_order_release);
  }
  kick();
}

void Vcpu::wait_paused() {
  std::unique_lock lock(pause_mu_);
  // A thread that never started, or has ended, is as good as paused.
  pause_cv_.wait(lock, [this] { return parked_ || !pause_requested_ || !started_ || ended_ || exit_.reported(); });
}

void Vcpu::resume() {
  {
    std::lock_guard lock(pause_mu_);
    pause_requested_ = false;
    pause_pending_.store(false, std::memory_order_release);
  }
  pause_cv_.notify_all();
}

void Vcpu::wake() {
  { std::lock_guard lock(pause_mu_); }
  pause_cv_.notify_all();
}

bool Vcpu::park_if_paused() {
  std::unique_lock lock(pause_mu_);
  if (!pause_requested_) return true;
  parked_ = true;
  pause_cv_.notify_all();  // wait_paused()
  pause_cv_.wait(lock, [this] { return !pause_requested_ || exit_.reported(); });
  parked_ = false;
  return !exit_.reported();
}

uint64_t Vcpu::current_rip() {
  kvm_regs regs{};
  if (::ioctl(fd_.fd(), KVM_GET_REGS, &regs) < 0) return 0;
  return regs.rip;
}

namespace {

// The highest vector set in one of the local APIC's 256-bit vector registers (IRR at 0x200,
// ISR at 0x100: eight 32-bit words, 16 bytes apart), or -1.
int highest_vector(const kvm_lapic_state& lapic, size_t base) {
  for (int word = 7; word >= 0; --word) {
    uint32_t bits = lapic_register(lapic, base + static_cast<size_t>(word) * 0x10);
    if (bits != 0) return word * 32 + 31 - __builtin_clz(bits);
  }
  return -1;
}

}  // namespace

std::string Vcpu::describe_stopped_state() {
  constexpr uint32_t kMsrTsc = 0x10, kMsrTscDeadline = 0x6e0;
  constexpr size_t kIsr = 0x100, kIrr = 0x200, kLvtTimer = 0x320, kTimerInitial = 0x380, kTimerCurrent = 0x390;
  kvm_regs regs{};
  if (::ioctl(fd_.fd(), KVM_GET_REGS, &regs) < 0) return cat("registers unreadable: ", errno_text());
  std::string text = cat("rip ", hex(regs.rip), ", interrupts ", (regs.rflags & (1u << 9)) ? "on" : "off");
  kvm_mp_state mp{};
  if (::ioctl(fd_.fd(), KVM_GET_MP_STATE, &mp) == 0) {
    switch (mp.mp_state) {
      case KVM_MP_STATE_RUNNABLE: text += ", runnable"; break;
      case KVM_MP_STATE_UNINITIALIZED: text += ", waiting for INIT"; break;
      case KVM_MP_STATE_INIT_RECEIVED: text += ", waiting for SIPI"; break;
      case KVM_MP_STATE_HALTED: text += ", halted"; break;
      default: text += cat(", mp_state ", mp.mp_state); break;
    }
  }
  kvm_lapic_state lapic{};
  if (::ioctl(fd_.fd(), KVM_GET_LAPIC, &lapic) == 0) {
    int pending = highest_vector(lapic, kIrr), serving = highest_vector(lapic, kIsr);
    text += cat(", APIC pending ", pending < 0 ? std::string("none") : hex(static_cast<uint32_t>(pending)),
                " in service ", serving < 0 ? std::string("none") : hex(static_cast<uint32_t>(serving)));
    uint32_t lvt = lapic_register(lapic, kLvtTimer);
    const uint32_t mode = (lvt >> 17) & 3;  // LVT timer bits 17-18
    constexpr uint32_t kTscDeadlineMode = 2;
    const char* modes[] = {"one-shot", "periodic", "TSC-deadline", "reserved"};
    text += cat(", timer ", modes[mode], (lvt & (1u << 16)) ? " masked" : "", " vector ", hex(lvt & 0xff));
    if (mode == kTscDeadlineMode) {
      std::vector<kvm_msr_entry> msrs;
      try {
        msrs = fd_.get_msrs({kMsrTsc, kMsrTscDeadline});
      } catch (const Error&) {
      }
      if (msrs.size() == 2) {
        uint64_t now = msrs[0].data, deadline = msrs[1].data;
        if (deadline == 0) text += " disarmed";
        else if (deadline > now) text += cat(" due in ", deadline - now, " TSC ticks");
        else text += cat(" due ", now - deadline, " TSC ticks ago");
      }
    } else {
      text += cat(" count ", lapic_register(lapic, kTimerCurrent), " of ", lapic_register(lapic, kTimerInitial));
    }
  }
  return text;
}

void Vcpu::handle_io(kvm_run* run) {
  auto* base = reinterpret_cast<uint8_t*>(run);
  const uint32_t size = run->io.size;
  const uint32_t count = run->io.count;
  for (uint32_t i = 0; i < count; ++i) {
    std::span<uint8_t> data(base + run->io.data_offset + uint64_t{i} * size, size);
    if (run->io.direction == KVM_EXIT_IO_OUT) {
      if (!pio_.write(run->io.port, data)) log::debug(cat("unhandled port write ", hex(run->io.port)));
    } else if (!pio_.read(run->io.port, data)) {
      std::memset(data.data(), 0xff, size);  // no device: the bus floats high
    }
  }
}

void Vcpu::handle_mmio(kvm_run* run) {
  uint32_t len = std::min<uint32_t>(run->mmio.len, sizeof(run->mmio.data));
  std::span<uint8_t> data(run->mmio.data, len);
  if (run->mmio.is_write) {
    if (!mmio_.write(run->mmio.phys_addr, data)) log::debug(cat("unhandled MMIO write ", hex(run->mmio.phys_addr)));
  } else if (!mmio_.read(run->mmio.phys_addr, data)) {
    std::memset(data.data(), 0xff, len);
  }
}

}  // namespace ember
