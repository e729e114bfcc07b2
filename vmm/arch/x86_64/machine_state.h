// The x86-64 CPU and interrupt-controller state that KVM holds for a VM, read out of a
// paused VM and put back into a new one (snapshots). Plain structures: KVM's own ABI
// structures for the register sets, saved as they are.
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "base/state_stream.h"
#include "vmm/kvm/kvm.h"

namespace ember::x86 {

struct VcpuState {
  std::vector<kvm_cpuid_entry2> cpuid;
  std::vector<kvm_msr_entry> msrs;  // TSC, kvmclock, syscall MSRs, ... (what KVM lists)
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;  // FPU, SSE, AVX, ... (KVM's XSAVE layout, 4 KiB or more)
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  kvm_mp_state mp_state{};
  kvm_vcpu_events events{};  // pending exceptions, interrupts, NMIs
};

// The VM-wide part: the in-kernel PICs and IOAPIC, the PIT and the KVM clock.
struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

// Only while the vCPU is out of KVM_RUN (the VM is paused).
VcpuState save_vcpu_state(VcpuFd& vcpu, const KvmSystem& kvm);
// Into a vCPU just created, before its first KVM_RUN. KVM checks the values; what it
// refuses is reported naming the ioctl and the vCPU.
void restore_vcpu_state(VcpuFd& vcpu, const KvmSystem& kvm, const VcpuState& state);

VmState save_vm_state(const VmFd& vm);
// Into a VM whose irqchip and PIT exist, before any vCPU runs.
void restore_vm_state(VmFd& vm, const VmState& state);

void write_state(snapshot::StateWriter& out, const VcpuState& state);
void write_state(snapshot::StateWriter& out, const VmState& state);
VcpuState read_vcpu_state(snapshot::StateReader& in);
VmState read_vm_state(snapshot::StateReader& in);

}  // namespace ember::x86
