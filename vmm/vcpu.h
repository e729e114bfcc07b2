// One vCPU thread: runs KVM_RUN and dispatches exits to the port I/O and MMIO buses.
#pragma once

#include <atomic>
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
  void start();
  // Makes KVM_RUN return (now or at its next entry) so the thread sees the exit latch.
  void kick();
  void join();

  // Installs the process-wide signal handler used by kick(). Call once before start().
  static void install_kick_handler();

 private:
  void run_loop();
  // Returns false when this vCPU should stop.
  bool handle_exit(kvm_run* run);
  void handle_io(kvm_run* run);
  void handle_mmio(kvm_run* run);
  uint64_t current_rip();

  VcpuFd fd_;
  const Bus& pio_;
  const Bus& mmio_;
  ExitLatch& exit_;
  std::thread thread_;
  std::atomic<bool> started_{false};
};

}  // namespace ember
