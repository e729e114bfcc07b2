// The VMM behind the API: builds the Vm on the main thread when InstanceStart arrives
// (or at once without an API), runs it, and serves the API's lifecycle controls.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include "api/vm_controller.h"
#include "vmm/boot_timeline.h"
#include "vmm/kvm/kvm.h"
#include "vmm/metrics_writer.h"
#include "vmm/vm.h"

namespace ember {

// Checks the boot files before KVM is touched, so the message is about them.
void check_boot_files(const VmConfig& config);

class VmmRunner : public VmController {
 public:
  VmmRunner(BootTimeline& timeline, MetricsWriter& metrics);

  // Main thread. Builds the VM now; throws Error.
  void build(const VmConfig& config);
  // Main thread. Serves InstanceStart requests (a failing one is answered and waited
  // past) until one builds a VM: true; or until SIGINT/SIGTERM: false.
  bool wait_for_start();
  // Main thread, after build() or wait_for_start(): runs the guest to its end.
  VmExit run();
  // Counters of the VM (Vm::collect_metrics), once built. Thread-safe.
  void collect_metrics(MetricGroups& out) const;

  // VmController, for the API thread.
  InstanceState state() const override;
  void start(const VmConfig& config) override;
  void pause() override;
  void resume() override;
  void send_ctrl_alt_del() override;
  void configure_logger(const log::LoggerConfig& config) override;
  void configure_metrics(const MetricsConfig& config) override;
  void flush_metrics() override;

 private:
  Vm& running_vm();  // with mu_ held; throws Error if there is none

  BootTimeline& timeline_;
  MetricsWriter& metrics_;
  std::optional<KvmSystem> kvm_;
  mutable std::mutex mu_;
  std::condition_variable answered_;
  std::unique_ptr<Vm> vm_;
  bool starting_ = false;  // a VM is being built or runs: no second InstanceStart
  bool stopped_ = false;   // the guest ended or ember is stopping
  std::optional<VmConfig> request_;      // InstanceStart waiting for the main thread
  std::optional<std::string> answer_;    // its outcome: "" or the reason it failed
  UniqueFd request_event_;
};

}  // namespace ember
