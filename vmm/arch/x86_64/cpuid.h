// Per-vCPU CPUID: KVM's supported set with this vCPU's APIC id and the VM's topology.
#pragma once

#include <cstdint>

#include "vmm/kvm/kvm.h"

namespace ember::x86 {

// Topology presented to the guest: one socket, `vcpu_count` cores, one thread each.
CpuidEntries vcpu_cpuid(const CpuidEntries& supported, uint32_t vcpu_id, uint32_t vcpu_count);

}  // namespace ember::x86
