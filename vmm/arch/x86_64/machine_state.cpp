#include "vmm/arch/x86_64/machine_state.h"

namespace ember::x86 {

namespace {
// Bounds on what a snapshot file can make ember allocate (KVM itself allows 256 CPUID
// entries; its MSR list has about 100 entries).
constexpr size_t kMaxCpuidEntries = 256;
constexpr size_t kMaxMsrs = 1024;
constexpr size_t kMaxXsaveBytes = 64 * 1024;  // AMX's state is 8 KiB; XSAVE's whole area far less than this
}  // namespace

VcpuState save_vcpu_state(VcpuFd& vcpu, const KvmSystem& kvm) {
  VcpuState s;
  s.cpuid = vcpu.get_cpuid().entries;
  s.msrs = vcpu.get_msrs(kvm.msr_index_list());
  s.regs = vcpu.get<kvm_regs>();
  s.sregs = vcpu.get<kvm_sregs>();
  s.xsave = vcpu.get_xsave(kvm.xsave_size());
  s.xcrs = vcpu.get<kvm_xcrs>();
  s.debugregs = vcpu.get<kvm_debugregs>();
  s.lapic = vcpu.get<kvm_lapic_state>();
  s.mp_state = vcpu.get<kvm_mp_state>();
  s.events = vcpu.get<kvm_vcpu_events>();
  return s;
}

void restore_vcpu_state(VcpuFd& vcpu, const KvmSystem& kvm, const VcpuState& s) {
  // CPUID first (what the rest is checked against); the LAPIC before the MSRs (the TSC
  // deadline MSR needs its timer mode) and before the MP state; events last.
  vcpu.set_cpuid(CpuidEntries{s.cpuid});
  vcpu.set(s.regs);
  vcpu.set(s.sregs);
  std::vector<uint8_t> xsave = s.xsave;
  if (xsave.size() < kvm.xsave_size()) xsave.resize(kvm.xsave_size());  // components this host has and the saved one had not
  vcpu.set_xsave(xsave);
  vcpu.set(s.xcrs);
  vcpu.set(s.debugregs);
  vcpu.set(s.lapic);
  vcpu.set_msrs(s.msrs);
  vcpu.set(s.mp_state);
  vcpu.set(s.events);
}

VmState save_vm_state(const VmFd& vm) {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_master = vm.get(KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP (PIC master)", s.pic_master);
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.pic_slave = vm.get(KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP (PIC slave)", s.pic_slave);
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.ioapic = vm.get(KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP (IOAPIC)", s.ioapic);
  s.pit = vm.get<kvm_pit_state2>(KVM_GET_PIT2, "KVM_GET_PIT2");
  s.clock = vm.get<kvm_clock_data>(KVM_GET_CLOCK, "KVM_GET_CLOCK");
  return s;
}

void restore_vm_state(VmFd& vm, const VmState& s) {
  vm.set(KVM_SET_PIT2, s.pit, "KVM_SET_PIT2");
  // KVM_SET_CLOCK takes the clock value only; the flags KVM_GET_CLOCK reports (TSC
  // stable, realtime, host TSC) describe the old host.
  kvm_clock_data clock{};
  clock.clock = s.clock.clock;
  vm.set(KVM_SET_CLOCK, clock, "KVM_SET_CLOCK");
  vm.set(KVM_SET_IRQCHIP, s.pic_master, "KVM_SET_IRQCHIP (PIC master)");
  vm.set(KVM_SET_IRQCHIP, s.pic_slave, "KVM_SET_IRQCHIP (PIC slave)");
  vm.set(KVM_SET_IRQCHIP, s.ioapic, "KVM_SET_IRQCHIP (IOAPIC)");
}

void write_state(snapshot::StateWriter& out, const VcpuState& s) {
  out.u32(static_cast<uint32_t>(s.cpuid.size()));
  for (const auto& e : s.cpuid) out.raw(e);
  out.u32(static_cast<uint32_t>(s.msrs.size()));
  for (const auto& m : s.msrs) {
    out.u32(m.index);
    out.u64(m.data);
  }
  out.raw(s.regs);
  out.raw(s.sregs);
  out.bytes(s.xsave);
  out.raw(s.xcrs);
  out.raw(s.debugregs);
  out.raw(s.lapic);
  out.raw(s.mp_state);
  out.raw(s.events);
}

VcpuState read_vcpu_state(snapshot::StateReader& in) {
  VcpuState s;
  uint32_t cpuid_count = in.u32("cpuid entry count");
  if (cpuid_count == 0 || cpuid_count > kMaxCpuidEntries) {
    in.invalid("cpuid entry count", cat(cpuid_count, " is not within 1..", kMaxCpuidEntries));
  }
  for (uint32_t i = 0; i < cpuid_count; ++i) s.cpuid.push_back(in.raw<kvm_cpuid_entry2>("cpuid entry"));
  uint32_t msr_count = in.u32("MSR count");
  if (msr_count > kMaxMsrs) in.invalid("MSR count", cat(msr_count, " is more than ", kMaxMsrs));
  for (uint32_t i = 0; i < msr_count; ++i) {
    kvm_msr_entry m{};
    m.index = in.u32("MSR index");
    m.data = in.u64("MSR value");
    s.msrs.push_back(m);
  }
  s.regs = in.raw<kvm_regs>("general registers");
  s.sregs = in.raw<kvm_sregs>("special registers");
  s.xsave = in.bytes("XSAVE area", kMaxXsaveBytes);
  if (s.xsave.size() < sizeof(kvm_array_ioctl::XsaveLegacyArea)) {
    in.invalid("XSAVE area", cat(s.xsave.size(), " bytes, less than the 4096 of its legacy layout"));
  }
  s.xcrs = in.raw<kvm_xcrs>("XCRs");
  if (s.xcrs.nr_xcrs > KVM_MAX_XCRS) in.invalid("XCRs", cat(s.xcrs.nr_xcrs, " registers, KVM has at most ", KVM_MAX_XCRS));
  s.debugregs = in.raw<kvm_debugregs>("debug registers");
  s.lapic = in.raw<kvm_lapic_state>("local APIC");
  s.mp_state = in.raw<kvm_mp_state>("MP state");
  s.events = in.raw<kvm_vcpu_events>("vCPU events");
  in.expect_end();
  return s;
}

void write_state(snapshot::StateWriter& out, const VmState& s) {
  out.raw(s.pic_master);
  out.raw(s.pic_slave);
  out.raw(s.ioapic);
  out.raw(s.pit);
  out.raw(s.clock);
}

VmState read_vm_state(snapshot::StateReader& in) {
  VmState s;
  auto chip = [&](uint32_t id, const char* field) {
    auto c = in.raw<kvm_irqchip>(field);
    if (c.chip_id != id) in.invalid(field, cat("chip id ", c.chip_id, ", expected ", id));
    return c;
  };
  s.pic_master = chip(KVM_IRQCHIP_PIC_MASTER, "PIC master");
  s.pic_slave = chip(KVM_IRQCHIP_PIC_SLAVE, "PIC slave");
  s.ioapic = chip(KVM_IRQCHIP_IOAPIC, "IOAPIC");
  s.pit = in.raw<kvm_pit_state2>("PIT");
  s.clock = in.raw<kvm_clock_data>("KVM clock");
  in.expect_end();
  return s;
}

}  // namespace ember::x86
