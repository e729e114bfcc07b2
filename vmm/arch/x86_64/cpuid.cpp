#include "vmm/arch/x86_64/cpuid.h"

namespace ember::x86 {

namespace {

constexpr uint32_t kHypervisorBit = 1u << 31;  // leaf 1 ECX
constexpr uint32_t kTscDeadlineBit = 1u << 24;  // leaf 1 ECX
constexpr uint32_t kHttBit = 1u << 28;         // leaf 1 EDX

uint32_t bits_for(uint32_t count) {
  uint32_t bits = 0;
  while ((1u << bits) < count) ++bits;
  return bits;
}

// Leaves 0xB and 0x1F: level 0 is SMT (one thread per core), level 1 is the core level.
void set_extended_topology(kvm_cpuid_entry2& e, uint32_t apic_id, uint32_t count) {
  switch (e.index) {
    case 0:
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (1u << 8) | e.index;
      break;
    case 1:
      e.eax = bits_for(count);
      e.ebx = count;
      e.ecx = (2u << 8) | e.index;
      break;
    default:
      e.eax = 0;
      e.ebx = 0;
      e.ecx = e.index;
      break;
  }
  e.edx = apic_id;
}

}  // namespace

CpuidEntries vcpu_cpuid(const CpuidEntries& supported, uint32_t vcpu_id, uint32_t vcpu_count) {
  CpuidEntries cpuid = supported;
  const uint32_t apic_id = vcpu_id;
  for (kvm_cpuid_entry2& e : cpuid.entries) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0x0000ffffu) | (apic_id << 24) | ((vcpu_count & 0xffu) << 16);
        e.ecx |= kHypervisorBit;
        // KVM's local APIC emulates the TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER, required
        // at startup) but leaves advertising it to the VMM. Without it Linux calibrates the
        // APIC timer against the PIT during boot, ~100 ms of waiting on every boot.
        e.ecx |= kTscDeadlineBit;
        if (vcpu_count > 1) e.edx |= kHttBit;
        else e.edx &= ~kHttBit;
        break;
      case 0x4:
        // EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1.
        e.eax &= 0x3fffu;
        e.eax |= (vcpu_count - 1) << 26;
        break;
      case 0xb:
      case 0x1f:
        set_extended_topology(e, apic_id, vcpu_count);
        break;
      case 0x80000008:
        // AMD: ECX[7:0] is the number of cores - 1; ECX[15:12] 0 means "derive from NC".
        e.ecx = (e.ecx & ~0xf0ffu) | ((vcpu_count - 1) & 0xffu);
        break;
      case 0x8000001e:
        e.eax = apic_id;  // extended APIC id
        e.ebx = apic_id;  // core id, one thread per core
        e.ecx = 0;        // one node
        break;
      default:
        break;
    }
  }
  return cpuid;
}

}  // namespace ember::x86
