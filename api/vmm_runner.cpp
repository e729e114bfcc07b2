#include "api/vmm_runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/util/error.h"
#include "vmm/util/eventfd.h"

namespace ember {

void check_boot_files(const VmConfig& config) {
  detect_kernel_format(FileImage::open(config.boot.kernel_image_path, "kernel"));
  if (!config.boot.initrd_path.empty()) FileImage::open(config.boot.initrd_path, "initrd");
}

VmmRunner::VmmRunner(BootTimeline& timeline, MetricsWriter& metrics)
    : timeline_(timeline), metrics_(metrics), request_event_(make_eventfd("InstanceStart requests")) {}

void VmmRunner::build(const VmConfig& config) {
  {
    std::lock_guard lock(mu_);
    starting_ = true;
  }
  if (!kvm_) kvm_.emplace(KvmSystem::open());
  auto vm = std::make_unique<Vm>(*kvm_, config, timeline_);
  std::lock_guard lock(mu_);
  vm_ = std::move(vm);
}

bool VmmRunner::wait_for_start() {
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
      stopped_ = true;
      if (request_) answer_ = "ember is stopping";
      answered_.notify_all();
      return false;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    uint64_t count;
    ssize_t got = ::read(request_event_.get(), &count, sizeof(count));
    (void)got;
    std::optional<VmConfig> config;
    {
      std::lock_guard lock(mu_);
      config = std::move(request_);
      request_.reset();
    }
    if (!config) continue;
    std::string outcome;
    try {
      check_boot_files(*config);
      timeline_.mark(BootPhase::InstanceStart);
      build(*config);
    } catch (const Error& e) {
      outcome = e.what();
    }
    std::lock_guard lock(mu_);
    if (!outcome.empty()) starting_ = false;
    answer_ = outcome;
    answered_.notify_all();
    if (outcome.empty()) return true;
  }
}

VmExit VmmRunner::run() {
  Vm* vm;
  {
    std::lock_guard lock(mu_);
    vm = vm_.get();
  }
  if (!vm) fail("no VM to run");
  VmExit exit = vm->run();
  std::lock_guard lock(mu_);
  stopped_ = true;
  return exit;
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

void VmmRunner::start(const VmConfig& config) {
  std::unique_lock lock(mu_);
  if (stopped_) fail("InstanceStart: ember is stopping");
  if (starting_ || request_) fail("InstanceStart: the VM is already started");
  request_ = config;
  answer_.reset();
  signal_eventfd(request_event_.get());
  answered_.wait(lock, [this] { return answer_.has_value(); });
  std::string outcome = *answer_;
  answer_.reset();
  if (!outcome.empty()) fail(outcome);
}

Vm& VmmRunner::running_vm() {
  if (!vm_) fail("the VM is not started");
  if (stopped_) fail("the VM has stopped");
  return *vm_;
}

void VmmRunner::pause() {
  std::lock_guard lock(mu_);
  running_vm().pause();
}

void VmmRunner::resume() {
  std::lock_guard lock(mu_);
  running_vm().resume();
}

void VmmRunner::send_ctrl_alt_del() {
  std::lock_guard lock(mu_);
  running_vm().send_ctrl_alt_del();
}

void VmmRunner::configure_logger(const log::LoggerConfig& config) { log::configure(config); }
void VmmRunner::configure_metrics(const MetricsConfig& config) { metrics_.open(config); }
void VmmRunner::flush_metrics() { metrics_.flush(); }

}  // namespace ember
