// Owned handles for the KVM system, a VM and a vCPU, with checked ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmm/util/mapping.h"
#include "vmm/util/unique_fd.h"

namespace ember {

// CPUID entries as KVM_GET/SET_CPUID2 want them.
struct CpuidEntries {
  std::vector<kvm_cpuid_entry2> entries;
  kvm_cpuid_entry2* find(uint32_t function, uint32_t index = 0);
};

// /dev/kvm. Queried once; the supported CPUID is cached because the ioctl is slow
// and its answer never changes for the process.
class KvmSystem {
 public:
  static KvmSystem open(const std::string& path = "/dev/kvm");
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  const CpuidEntries& supported_cpuid() const { return supported_cpuid_; }
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }

 private:
  UniqueFd fd_;
  CpuidEntries supported_cpuid_;
  size_t vcpu_mmap_size_ = 0;
};

class VmFd {
 public:
  static VmFd create(const KvmSystem& kvm);
  int fd() const { return fd_.get(); }
  void set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host);
  void create_irq_chip_and_pit();
  void set_irq_line(uint32_t irq, bool level);
  void register_irqfd(int eventfd, uint32_t gsi);
  // Signals `eventfd` only for writes of exactly `datamatch` (e.g. a queue index).
  void register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch);

 private:
  UniqueFd fd_;
};

class VcpuFd {
 public:
  static VcpuFd create(const KvmSystem& kvm, const VmFd& vm, uint32_t id);
  int fd() const { return fd_.get(); }
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }
  uint32_t id() const { return id_; }

  void set_cpuid(const CpuidEntries& cpuid);
  void set_msrs(const std::vector<kvm_msr_entry>& msrs);
  kvm_regs get_regs();
  void set_regs(const kvm_regs& regs);
  kvm_sregs get_sregs();
  void set_sregs(const kvm_sregs& sregs);
  void set_fpu(const kvm_fpu& fpu);
  kvm_lapic_state get_lapic();
  void set_lapic(const kvm_lapic_state& lapic);

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t id_ = 0;
};

// Name of a KVM_EXIT_* reason, for messages.
const char* kvm_exit_name(uint32_t reason);

}  // namespace ember
