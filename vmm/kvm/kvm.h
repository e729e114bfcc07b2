// Owned handles for the KVM system, a VM and a vCPU, with checked ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/util/error.h"
#include "base/util/mapping.h"
#include "base/util/unique_fd.h"

namespace ember {

// <asm/kvm.h> declares the variable-length arrays of kvm_cpuid2, kvm_msrs and
// kvm_msr_list with __DECLARE_FLEX_ARRAY, which in C++ adds an empty member: the struct
// grows to 12 bytes, the array moves and the ioctl numbers built from its size change.
// ember uses the C layout (8-byte header, array right after) and the numbers the kernel
// expects for it (the seccomp rules too).
namespace kvm_array_ioctl {
struct ArrayHeader {
  uint32_t count;
  uint32_t padding;
};
static_assert(sizeof(ArrayHeader) == 8);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, ArrayHeader);
// kvm_msr_list has no padding: its indices follow a 4-byte count.
struct MsrListHeader {
  uint32_t count;
};
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, ArrayHeader);
constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, ArrayHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, ArrayHeader);
// kvm_xsave likewise (4100 bytes in C++, 4096 in C): its ioctls are numbered for 4 KiB.
struct XsaveLegacyArea {
  uint32_t region[1024];
};
static_assert(sizeof(XsaveLegacyArea) == 4096);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveLegacyArea);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveLegacyArea);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveLegacyArea);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, ArrayHeader);
}  // namespace kvm_array_ioctl

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
  // Bytes of a vCPU's XSAVE state for KVM_GET_XSAVE2 / KVM_SET_XSAVE (more than the legacy
  // 4 KiB when the CPU has large state components such as AMX). Queried once.
  size_t xsave_size() const { return xsave_size_; }
  // The MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST), for snapshots. Queried once,
  // at open (the main thread's filter has no ioctl on /dev/kvm); throws Error with KVM's
  // answer if that query failed.
  const std::vector<uint32_t>& msr_index_list() const {
    if (!msr_index_error_.empty()) fail(msr_index_error_);
    return msr_index_list_;
  }

 private:
  UniqueFd fd_;
  CpuidEntries supported_cpuid_;
  size_t vcpu_mmap_size_ = 0;
  std::vector<uint32_t> msr_index_list_;
  std::string msr_index_error_;
  size_t xsave_size_ = sizeof(kvm_array_ioctl::XsaveLegacyArea);
};

// KVM_GET_x / KVM_SET_x of one fixed-size structure on a VM or vCPU fd; `what` names the
// ioctl and the object in the error ("KVM_GET_XSAVE on vCPU 1").
void kvm_get_struct(int fd, unsigned long request, void* inout, const std::string& what);
void kvm_set_struct(int fd, unsigned long request, const void* in, const std::string& what);

class VmFd {
 public:
  static VmFd create(const KvmSystem& kvm);
  // create() with the in-kernel interrupt controllers and PIT: what every ember VM has.
  static VmFd create_with_irq_chip(const KvmSystem& kvm);
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  // `flags`: KVM_MEM_LOG_DIRTY_PAGES to track the guest's writes (diff snapshots).
  void set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags = 0);
  // The slot's dirty bitmap since the last call (one bit per 4 KiB page, u64 words); the
  // slot must have been registered with KVM_MEM_LOG_DIRTY_PAGES.
  std::vector<uint64_t> get_dirty_log(uint32_t slot, uint64_t size);
  template <typename T>
  T get(unsigned long request, const char* what, T inout = {}) const {
    kvm_get_struct(fd(), request, &inout, what);
    return inout;
  }
  template <typename T>
  void set(unsigned long request, const T& in, const char* what) {
    kvm_set_struct(fd(), request, &in, what);
  }
  void create_irq_chip_and_pit();
  void set_irq_line(uint32_t irq, bool level);
  void register_irqfd(int eventfd, uint32_t gsi);
  // Signals `eventfd` only for writes of exactly `datamatch` (e.g. a queue index).
  void register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch);

 private:
  UniqueFd fd_;
};

// The ioctls that read and write one kind of vCPU state, by its KVM struct.
template <typename T>
struct VcpuStateIoctls;
#define EMBER_VCPU_STATE(type, get_ioctl, set_ioctl)       \
  template <>                                              \
  struct VcpuStateIoctls<type> {                           \
    static constexpr unsigned long kGet = get_ioctl;       \
    static constexpr unsigned long kSet = set_ioctl;       \
    static constexpr const char* kGetName = #get_ioctl;    \
    static constexpr const char* kSetName = #set_ioctl;    \
  };
EMBER_VCPU_STATE(kvm_regs, KVM_GET_REGS, KVM_SET_REGS)
EMBER_VCPU_STATE(kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS)
EMBER_VCPU_STATE(kvm_fpu, KVM_GET_FPU, KVM_SET_FPU)
EMBER_VCPU_STATE(kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC)
EMBER_VCPU_STATE(kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS)
EMBER_VCPU_STATE(kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS)
EMBER_VCPU_STATE(kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE)
EMBER_VCPU_STATE(kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS)
#undef EMBER_VCPU_STATE

// A 32-bit local APIC register at `offset` in KVM's copy of the APIC page.
inline uint32_t lapic_register(const kvm_lapic_state& lapic, size_t offset) {
  uint32_t value;
  std::memcpy(&value, lapic.regs + offset, sizeof(value));
  return value;
}
inline void set_lapic_register(kvm_lapic_state& lapic, size_t offset, uint32_t value) {
  std::memcpy(lapic.regs + offset, &value, sizeof(value));
}

class VcpuFd {
 public:
  static VcpuFd create(const KvmSystem& kvm, const VmFd& vm, uint32_t id);
  int fd() const { return fd_.get(); }
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }
  uint32_t id() const { return id_; }

  void set_cpuid(const CpuidEntries& cpuid);
  CpuidEntries get_cpuid();
  // The XSAVE state (KVM_GET_XSAVE2 when `size` is above 4 KiB); KVM_SET_XSAVE reads as
  // many bytes as this VM's vCPUs have, so `area` must hold at least that (pad with zeros).
  std::vector<uint8_t> get_xsave(size_t size);
  void set_xsave(const std::vector<uint8_t>& area);
  void set_msrs(const std::vector<kvm_msr_entry>& msrs);
  // The values of those of `indices` that this vCPU can read (KVM_GET_MSRS stops at the
  // first one it cannot: that one is left out and the rest read on).
  std::vector<kvm_msr_entry> get_msrs(const std::vector<uint32_t>& indices);
  // One kind of fixed-size vCPU state, by its KVM struct (kvm_regs, kvm_sregs, kvm_fpu,
  // kvm_lapic_state, kvm_xcrs, kvm_debugregs, kvm_mp_state, kvm_vcpu_events).
  template <typename T>
  T get() {
    T value{};
    kvm_get_struct(fd(), VcpuStateIoctls<T>::kGet, &value, cat(VcpuStateIoctls<T>::kGetName, " on vCPU ", id_));
    return value;
  }
  template <typename T>
  void set(const T& value) {
    kvm_set_struct(fd(), VcpuStateIoctls<T>::kSet, &value, cat(VcpuStateIoctls<T>::kSetName, " on vCPU ", id_));
  }

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t id_ = 0;
};

// Name of a KVM_EXIT_* reason, for messages.
const char* kvm_exit_name(uint32_t reason);

}  // namespace ember
