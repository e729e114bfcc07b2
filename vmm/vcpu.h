// One vCPU thread: runs KVM_RUN and dispatches exits to the port I/O and MMIO buses.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "base/bus.h"
#include "vmm/kvm/kvm.h"
#include "vmm/vm_exit.h"

namespace ember {

class Vcpu {
 public:
  Vcpu(VcpuFd fd, const Bus& pio, const Bus& mmio, ExitLatch& exit)
      : fd_(std::move(fd)), pio_(pio), mmio_(mmio), exit_(exit) {}
  ~Vcpu() { join(); }
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  VcpuFd& fd() { return fd_; }
  // Runs on this vCPU's thread just before its first KVM_RUN.
  void set_first_run_hook(std::function<void()> hook) { first_run_hook_ = std::move(hook); }
  void start();
  // Makes KVM_RUN return (now or at its next entry) so the thread sees the exit latch.
  void kick();
  void join();
  // The guest's instruction pointer (for diagnostics; call when the thread is stopped).
  uint64_t current_rip();
  // For a guest that hangs: where this vCPU is, whether it takes interrupts, its run state,
  // its local APIC's pending and in-service vectors and its timer (armed, how far from now).
  // Call when the thread is stopped; what KVM refuses to read is left out.
  std::string describe_stopped_state();

  // Pausing: request_pause() asks the thread to stop before its next KVM_RUN (and
  // kicks it out of the current one); wait_paused() returns once it has stopped, or
  // the VM is ending. resume() lets it run again. Any thread may call them.
  void request_pause();
  void wait_paused();
  void resume();
  // Wakes a paused thread so that it sees the exit latch (the VM is ending).
  void wake();

  // Exits by reason, for the metrics file (read from any thread).
  enum class ExitReason { IoIn, IoOut, MmioRead, MmioWrite, Interrupted, Shutdown, SystemEvent, Failure, Count };
  static const char* exit_reason_name(ExitReason reason);
  uint64_t exits(ExitReason reason) const { return exits_[static_cast<size_t>(reason)].load(std::memory_order_relaxed); }

  // Installs the process-wide signal handler used by kick(). Call once before start().
  static void install_kick_handler();

 private:
  void run_loop();
  // Returns false when this vCPU should stop.
  bool handle_exit(kvm_run* run);
  void handle_io(kvm_run* run);
  void handle_mmio(kvm_run* run);
  void count(ExitReason reason) { exits_[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed); }
  // Parks the thread while a pause is requested; false when the VM is ending.
  bool park_if_paused();

  VcpuFd fd_;
  const Bus& pio_;
  const Bus& mmio_;
  ExitLatch& exit_;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::function<void()> first_run_hook_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(ExitReason::Count)> exits_{};

  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  bool pause_requested_ = false;  // under pause_mu_
  bool parked_ = false;           // under pause_mu_: the thread is waiting in park_if_paused()
  bool ended_ = false;            // under pause_mu_: run_loop() returned
  std::atomic<bool> pause_pending_{false};  // lock-free check on every loop turn
};

}  // namespace ember
