// One vCPU thread: runs KVM_RUN and dispatches exits to the port I/O and MMIO buses.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "vmm/devices/bus.h"
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

  // Installs the process-wide signal handler used by kick(). Call once before start().
  static void install_kick_handler();

 private:
  void run_loop();
  // Returns false when this vCPU should stop.
  bool handle_exit(kvm_run* run);
  void handle_io(kvm_run* run);
  void handle_mmio(kvm_run* run);


  VcpuFd fd_;
  const Bus& pio_;
  const Bus& mmio_;
  ExitLatch& exit_;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::function<void()> first_run_hook_;
};

}  // namespace ember
