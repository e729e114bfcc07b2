// The VMM behind the API: builds the Vm on the main thread when InstanceStart arrives
// (or at once without an API), runs it, and applies the API's requests as actions
// (vmm/vmm_action.h) on the main thread, before and while the VM runs.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "api/vm_controller.h"
#include "base/util/joining_thread.h"
#include "vmm/boot_timeline.h"
#include "vmm/kvm/kvm.h"
#include "vmm/metrics_writer.h"
#include "vmm/vm.h"
#include "vmm/vmm_action.h"

namespace ember {

class VmmRunner : public VmController {
 public:
  VmmRunner(BootTimeline& timeline, MetricsWriter& metrics);

  // Main thread, before start_now(), restore_now() or wait_for_start() (which calls it):
  // opens KVM and starts a Machine thread that makes the KVM VM with its interrupt
  // controllers, which costs 20-40 ms on hosts up to 6.12 (a kernel thread per VM), mostly
  // waiting; the start or restore takes it when it builds the VM, so the two overlap with
  // what comes before (reading the snapshot or the configuration's files, mapping memory,
  // or an --api-sock ember's wait for its first request). A failure is not reported there:
  // the build makes the VM itself and says why it cannot.
  void prepare_machine();
  // Main thread: validates the configuration (the one place it is) and builds the VM;
  // InstanceStart applies this too. Throws ConfigError for a configuration ember cannot
  // run, Error otherwise.
  void start_now(const VmConfig& config);
  // Main thread: builds the VM from a snapshot (what PUT /snapshot/load applies, and the
  // launcher's --restore). `serial` is this ember's console choice (not saved). Returns
  // the restored configuration.
  VmConfig restore_now(const SnapshotLoadParams& params, const SerialConfig& serial);
  // Main thread. Applies actions (a failing InstanceStart is answered and waited past)
  // until one builds a VM: true; or until SIGINT/SIGTERM: false. Meanwhile a Machine
  // thread makes the KVM VM (prepare_machine()), so that the start or restore request
  // finds it made.
  bool wait_for_start();
  // Main thread, after start_now() or wait_for_start(): runs the guest to its end, applying
  // actions meanwhile. Actions submitted after that are refused.
  VmExit run();
  // Any thread but the main one: hands `action` to the main thread and waits until it
  // is applied. Throws Error with the reason it could not be.
  void submit(VmmAction action);
  // Counters of the VM (Vm::collect_metrics), once built. Thread-safe.
  void collect_metrics(MetricGroups& out) const;

  // VmController, for the API thread.
  InstanceState state() const override;
  void start(const VmConfig& config) override;
  void check_boot_source(const BootSource& boot) override;
  void check_serial_output(const SerialConfig& serial) override;
  void check_drive(const DriveConfig& drive) override;
  void update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) override;
  void replace_drive_file(const std::string& drive_id, const std::string& path) override;
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                const RateLimiterConfig& tx) override;
  void pause() override;
  void create_snapshot(const SnapshotCreateParams& params) override;
  VmConfig load_snapshot(const SnapshotLoadParams& params, const SerialConfig& serial) override;
  void resume() override;
  void send_ctrl_alt_del() override;
  void configure_logger(const log::LoggerConfig& config) override;
  void configure_metrics(const MetricsConfig& config) override;
  void flush_metrics() override;

 private:
  struct Pending {
    VmmAction action;
    std::optional<std::string> answer;  // "" or the reason it failed
  };
  // Main thread: applies every submitted action and answers it.
  void apply_pending();
  void apply(VmmAction& action);  // throws Error
  // Builds the VM (booted, or restored when `restore` is given).
  void build(const VmConfig& config, const RestoreSource* restore = nullptr);
  // Joins that thread; the VM it made, or an invalid VmFd.
  VmFd take_prepared_vm();
  Vm& running_vm();               // throws Error if there is none
  // With mu_ held: answers what is still waiting with `reason`; refuses later actions.
  void refuse_pending(const char* reason);

  BootTimeline& timeline_;
  MetricsWriter& metrics_;
  std::optional<KvmSystem> kvm_;
  VmFd prepared_vm_;
  mutable std::mutex mu_;
  std::condition_variable answered_;
  std::unique_ptr<Vm> vm_;
  bool starting_ = false;  // a VM is being built or runs: no second InstanceStart
  const char* refusal_ = nullptr;  // set once the main thread applies no more actions
  std::deque<Pending*> pending_;   // bounded by the submitting threads (the API's one)
  UniqueFd request_event_;         // signalled for each submitted action
  // prepare_machine()'s thread, until take_prepared_vm(); last, so that it is joined before
  // what it reads and fills (kvm_, prepared_vm_) is destroyed.
  JoiningThread preparing_;
};

}  // namespace ember
