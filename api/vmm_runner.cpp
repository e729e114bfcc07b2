#include "api/vmm_runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include "base/util/error.h"
#include "base/util/eventfd.h"
#include "base/util/log.h"
#include "base/util/thread.h"
#include "vmm/config_files.h"
#include "vmm/snapshot/vm_config_state.h"

namespace ember {

VmmRunner::VmmRunner(BootTimeline& timeline, MetricsWriter& metrics)
    : timeline_(timeline), metrics_(metrics), request_event_(make_eventfd("API actions")) {}

void VmmRunner::start_now(const VmConfig& config) {
  if (starting_) fail("InstanceStart: the VM is already started");
  validate(config);
  check_files(config);  // before KVM is touched, so the message is about them
  timeline_.mark(BootPhase::InstanceStart);
  build(config);
}

VmConfig VmmRunner::restore_now(const SnapshotLoadParams& params, const SerialConfig& serial) {
  timeline_.mark(BootPhase::RestoreRequested);  // the launcher's; the API marked it on arrival
  if (starting_) fail("PUT /snapshot/load: a VM is already started");
  snapshot::SnapshotContents contents = snapshot::read_snapshot_file(params.snapshot_path);
  snapshot::StateReader saved = contents.section("config");
  VmConfig config = snapshot::read_vm_config(saved);
  config.serial = serial;
  snapshot::apply_overrides(config, params);
  try {
    validate(config);
  } catch (const ConfigError& e) {
    fail("snapshot ", params.snapshot_path, ": its configuration: ", e.what());
  }
  // The drives must still be there (a tap or socket is opened when built); the kernel and
  // initrd need not: the guest's memory already holds what they were.
  check_restore_files(config);
  timeline_.mark(BootPhase::InstanceStart);
  RestoreSource source{contents, params};
  build(config, &source);
  return config;
}

void VmmRunner::build(const VmConfig& config, const RestoreSource* restore) {
  {
    std::lock_guard lock(mu_);
    starting_ = true;
  }
  std::unique_ptr<Vm> vm;
  try {
    VmFd prepared = take_prepared_vm();
    if (!kvm_) kvm_.emplace(KvmSystem::open());
    vm = restore ? std::make_unique<Vm>(*kvm_, config, timeline_, *restore, std::move(prepared))
                 : std::make_unique<Vm>(*kvm_, config, timeline_, std::move(prepared));
  } catch (...) {
    std::lock_guard lock(mu_);
    starting_ = false;  // a failed start or load may be retried
    throw;
  }
  std::lock_guard lock(mu_);
  vm_ = std::move(vm);
}

void VmmRunner::prepare_machine() {
  if (kvm_) return;  // prepared (or built) before
  // KVM's lists (supported CPUID, MSR indices) are allocated here, on the calling thread:
  // memory that a short-lived thread allocates lives in its own malloc arena, and freeing it
  // from the main thread at teardown can shrink that arena, which makes glibc open
  // /proc/sys/vm/overcommit_memory: outside the main thread's seccomp filter. The thread
  // below allocates nothing.
  try {
    kvm_.emplace(KvmSystem::open());
  } catch (const Error& e) {
    log::debug(cat("KVM not opened ahead (opened at start instead): ", e.what()));
    return;
  }
  preparing_ = JoiningThread(start_thread(ThreadRole::Machine, "ember-prepare", [this] {
    try {
      prepared_vm_ = VmFd::create_with_irq_chip(*kvm_);
    } catch (const Error&) {
      // Made at start instead, where a failure is reported.
    }
  }));
}

VmFd VmmRunner::take_prepared_vm() {
  preparing_ = JoiningThread();  // joins
  return std::move(prepared_vm_);
}

bool VmmRunner::wait_for_start() {
  prepare_machine();
  // SIGINT/SIGTERM are blocked by main() before any thread starts; taken here as an fd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  UniqueFd sigfd(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd.valid()) fail("signalfd: ", errno_text());
  for (;;) {
    pollfd fds[2] = {{request_event_.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) fail("poll: ", errno_text());
    if (fds[1].revents & POLLIN) {
      std::lock_guard lock(mu_);
      refuse_pending("ember is stopping");
      return false;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    apply_pending();
    std::lock_guard lock(mu_);
    if (vm_) return true;
  }
}

VmExit VmmRunner::run() {
  Vm* vm;
  {
    std::lock_guard lock(mu_);
    vm = vm_.get();
  }
  if (!vm) fail("no VM to run");
  VmExit exit = vm->run(request_event_.get(), [this] { apply_pending(); });
  std::lock_guard lock(mu_);
  refuse_pending("the VM has stopped");
  return exit;
}

void VmmRunner::submit(VmmAction action) {
  Pending pending{std::move(action), std::nullopt};
  std::unique_lock lock(mu_);
  if (refusal_) fail(refusal_);
  pending_.push_back(&pending);
  signal_eventfd(request_event_.get());
  answered_.wait(lock, [&] { return pending.answer.has_value(); });
  if (!pending.answer->empty()) fail(*pending.answer);
}

void VmmRunner::apply_pending() {
  uint64_t count;
  ssize_t got = ::read(request_event_.get(), &count, sizeof(count));
  (void)got;
  for (;;) {
    Pending* next;
    {
      std::lock_guard lock(mu_);
      if (pending_.empty()) return;
      next = pending_.front();
      pending_.pop_front();
    }
    // Applied without mu_: FlushMetrics gathers counters through collect_metrics().
    std::string outcome;
    try {
      apply(next->action);
    } catch (const Error& e) {
      outcome = e.what();
    }
    std::lock_guard lock(mu_);
    next->answer = outcome;
    answered_.notify_all();
  }
}

void VmmRunner::refuse_pending(const char* reason) {
  refusal_ = reason;
  for (Pending* p : pending_) p->answer = reason;
  pending_.clear();
  answered_.notify_all();
}

void VmmRunner::apply(VmmAction& action) {
  std::visit(
      [this](auto& a) {
        using A = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<A, action::StartInstance>) {
          start_now(a.config);
        } else if constexpr (std::is_same_v<A, action::CheckBootSource>) {
          check_boot_source_files(a.boot);
        } else if constexpr (std::is_same_v<A, action::CheckDrive>) {
          check_drive_file(a.drive);
        } else if constexpr (std::is_same_v<A, action::CheckSerialOutput>) {
          ember::check_serial_output(a.serial);  // the free function, not this class's API-side one
        } else if constexpr (std::is_same_v<A, action::UpdateDriveRateLimiter>) {
          running_vm().update_drive_rate_limiter(a.drive_id, a.update);
        } else if constexpr (std::is_same_v<A, action::ReplaceDriveFile>) {
          running_vm().replace_drive_file(a.drive_id, a.path);
        } else if constexpr (std::is_same_v<A, action::UpdateNetRateLimiters>) {
          running_vm().update_net_rate_limiters(a.iface_id, a.rx, a.tx);
        } else if constexpr (std::is_same_v<A, action::ConfigureLogger>) {
          log::configure(a.config);
        } else if constexpr (std::is_same_v<A, action::ConfigureMetrics>) {
          metrics_.open(a.config);
        } else if constexpr (std::is_same_v<A, action::Pause>) {
          running_vm().pause();
        } else if constexpr (std::is_same_v<A, action::Resume>) {
          running_vm().resume();
        } else if constexpr (std::is_same_v<A, action::SendCtrlAltDel>) {
          running_vm().send_ctrl_alt_del();
        } else if constexpr (std::is_same_v<A, action::FlushMetrics>) {
          metrics_.flush();
        } else if constexpr (std::is_same_v<A, action::CreateSnapshot>) {
          running_vm().save_snapshot(a.params);
        } else if constexpr (std::is_same_v<A, action::LoadSnapshot>) {
          *a.restored = restore_now(a.params, a.serial);
        }
      },
      action);
}

void VmmRunner::collect_metrics(MetricGroups& out) const {
  std::lock_guard lock(mu_);
  if (vm_) vm_->collect_metrics(out);  // includes "boot": the timeline's phases
}

InstanceState VmmRunner::state() const {
  std::lock_guard lock(mu_);
  if (!vm_) return InstanceState::NotStarted;
  return vm_->state() == Vm::State::Paused ? InstanceState::Paused : InstanceState::Running;
}

Vm& VmmRunner::running_vm() {
  Vm* vm;
  {
    std::lock_guard lock(mu_);
    vm = vm_.get();
  }
  if (!vm) fail("the VM is not started");
  return *vm;
}

void VmmRunner::start(const VmConfig& config) { submit(action::StartInstance{config}); }
void VmmRunner::check_boot_source(const BootSource& boot) { submit(action::CheckBootSource{boot}); }
void VmmRunner::check_drive(const DriveConfig& drive) { submit(action::CheckDrive{drive}); }
void VmmRunner::check_serial_output(const SerialConfig& serial) { submit(action::CheckSerialOutput{serial}); }
void VmmRunner::update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) {
  submit(action::UpdateDriveRateLimiter{drive_id, update});
}
void VmmRunner::replace_drive_file(const std::string& drive_id, const std::string& path) {
  submit(action::ReplaceDriveFile{drive_id, path});
}
void VmmRunner::update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                         const RateLimiterConfig& tx) {
  submit(action::UpdateNetRateLimiters{iface_id, rx, tx});
}
void VmmRunner::pause() { submit(action::Pause{}); }
void VmmRunner::resume() { submit(action::Resume{}); }
void VmmRunner::create_snapshot(const SnapshotCreateParams& params) { submit(action::CreateSnapshot{params}); }
VmConfig VmmRunner::load_snapshot(const SnapshotLoadParams& params, const SerialConfig& serial) {
  timeline_.mark(BootPhase::RestoreRequested);  // on the API thread: the hand-over counts too
  VmConfig restored;
  try {
    submit(action::LoadSnapshot{params, serial, &restored});
  } catch (...) {
    timeline_.unmark(BootPhase::RestoreRequested);  // refused: a later load may start it again
    throw;
  }
  return restored;
}
void VmmRunner::send_ctrl_alt_del() { submit(action::SendCtrlAltDel{}); }
void VmmRunner::configure_logger(const log::LoggerConfig& config) { submit(action::ConfigureLogger{config}); }
void VmmRunner::configure_metrics(const MetricsConfig& config) { submit(action::ConfigureMetrics{config}); }
void VmmRunner::flush_metrics() { submit(action::FlushMetrics{}); }

}  // namespace ember
