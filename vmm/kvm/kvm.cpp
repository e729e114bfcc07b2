#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "base/memory/layout.h"
#include "base/util/error.h"

namespace ember {

namespace {

template <typename Arg>
int xioctl(int fd, unsigned long request, Arg arg) {
  int ret;
  do {
    ret = ::ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  return ret;
}

void check(int ret, const char* what) {
  if (ret < 0) fail(what, " failed: ", errno_text());
}

constexpr uint32_t kMaxCpuidEntries = 256;

using namespace kvm_array_ioctl;
constexpr uint32_t kMaxMsrIndices = 1024;

// A header followed by `count` entries of T, laid out as the kernel reads it.
template <typename T>
class ArrayArg {
 public:
  explicit ArrayArg(size_t count) : buf_(sizeof(ArrayHeader) + count * sizeof(T)) {
    header().count = static_cast<uint32_t>(count);
  }
  ArrayHeader& header() { return *reinterpret_cast<ArrayHeader*>(buf_.data()); }
  T* entries() { return reinterpret_cast<T*>(buf_.data() + sizeof(ArrayHeader)); }
  void* data() { return buf_.data(); }

 private:
  std::vector<uint8_t> buf_;
};

}  // namespace

kvm_cpuid_entry2* CpuidEntries::find(uint32_t function, uint32_t index) {
  for (auto& e : entries) {
    if (e.function == function && e.index == index) return &e;
  }
  return nullptr;
}

KvmSystem KvmSystem::open(const std::string& path) {
  KvmSystem kvm;
  kvm.fd_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm.fd_.valid()) {
    int err = errno;
    if (err == ENOENT) fail("cannot open ", path, ": it does not exist (is KVM enabled on this host?)");
    if (err == EACCES || err == EPERM) {
      fail("cannot open ", path, ": permission denied (add your user to the 'kvm' group)");
    }
    fail("cannot open ", path, ": ", errno_text(err));
  }
  int version = xioctl(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) fail("KVM API version ", version, " is not the supported ", KVM_API_VERSION);

  struct Required {
    long cap;
    const char* name;
  };
  static constexpr Required kRequired[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},         {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"}, {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
      {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},     {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
      {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},             {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
      {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
      {KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER"},  // the vCPUs' CPUID advertises it
  };
  for (const auto& r : kRequired) {
    if (kvm.check_extension(r.cap) <= 0) fail("KVM on this host lacks ", r.name);
  }

  int mmap_size = xioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  check(mmap_size, "KVM_GET_VCPU_MMAP_SIZE");
  kvm.vcpu_mmap_size_ = static_cast<size_t>(mmap_size);

  ArrayArg<kvm_cpuid_entry2> cpuid(kMaxCpuidEntries);
  check(xioctl(kvm.fd(), kGetSupportedCpuid, cpuid.data()), "KVM_GET_SUPPORTED_CPUID");
  kvm.supported_cpuid_.entries.assign(cpuid.entries(), cpuid.entries() + cpuid.header().count);

  int xsave2 = kvm.check_extension(KVM_CAP_XSAVE2);
  if (xsave2 > static_cast<int>(kvm.xsave_size_)) kvm.xsave_size_ = static_cast<size_t>(xsave2);
  // Only snapshots need it: a host that cannot answer still boots VMs (and the snapshot
  // request says why it cannot be saved).
  std::vector<uint32_t> msrs(1 + kMaxMsrIndices);  // MsrListHeader, then the indices
  msrs[0] = kMaxMsrIndices;
  if (xioctl(kvm.fd(), kGetMsrIndexList, msrs.data()) == 0) {
    kvm.msr_index_list_.assign(msrs.begin() + 1, msrs.begin() + 1 + std::min(msrs[0], kMaxMsrIndices));
  } else {
    kvm.msr_index_error_ = cat("KVM_GET_MSR_INDEX_LIST failed: ", errno_text());
  }
  return kvm;
}

int KvmSystem::check_extension(long cap) const { return xioctl(fd(), KVM_CHECK_EXTENSION, cap); }

VmFd VmFd::create(const KvmSystem& kvm) {
  VmFd vm;
  int fd = xioctl(kvm.fd(), KVM_CREATE_VM, 0);
  check(fd, "KVM_CREATE_VM");
  vm.fd_.reset(fd);
  check(xioctl(vm.fd(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(layout::kTssStart)), "KVM_SET_TSS_ADDR");
  uint64_t identity = layout::kIdentityMapStart;
  check(xioctl(vm.fd(), KVM_SET_IDENTITY_MAP_ADDR, &identity), "KVM_SET_IDENTITY_MAP_ADDR");
  return vm;
}

VmFd VmFd::create_with_irq_chip(const KvmSystem& kvm) {
  VmFd vm = create(kvm);
  vm.create_irq_chip_and_pit();
  return vm;
}

void kvm_get_struct(int fd, unsigned long request, void* inout, const std::string& what) {
  if (xioctl(fd, request, inout) < 0) fail(what, " failed: ", errno_text());
}

void kvm_set_struct(int fd, unsigned long request, const void* in, const std::string& what) {
  if (xioctl(fd, request, in) < 0) fail(what, " failed: ", errno_text());
}

void VmFd::set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (xioctl(fd(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    fail("KVM_SET_USER_MEMORY_REGION slot ", slot, " at ", hex(gpa), " size ", hex(size), ": ", errno_text());
  }
}

std::vector<uint64_t> VmFd::get_dirty_log(uint32_t slot, uint64_t size) {
  std::vector<uint64_t> bitmap((size / 4096 + 63) / 64);
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  if (xioctl(fd(), KVM_GET_DIRTY_LOG, &log) < 0) fail("KVM_GET_DIRTY_LOG for slot ", slot, ": ", errno_text());
  return bitmap;
}

void VmFd::create_irq_chip_and_pit() {
  check(xioctl(fd(), KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
  kvm_pit_config pit{};
  // Let KVM answer the PC speaker port (0x61) so the guest's PIT calibration never exits.
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  check(xioctl(fd(), KVM_CREATE_PIT2, &pit), "KVM_CREATE_PIT2");
}

void VmFd::set_irq_line(uint32_t irq, bool level) {
  kvm_irq_level line{};
  line.irq = irq;
  line.level = level ? 1 : 0;
  xioctl(fd(), KVM_IRQ_LINE, &line);  // best effort: called from device paths, never throws
}

void VmFd::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  if (xioctl(fd(), KVM_IRQFD, &irqfd) < 0) fail("KVM_IRQFD for GSI ", gsi, ": ", errno_text());
}

void VmFd::register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.datamatch = datamatch;
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (xioctl(fd(), KVM_IOEVENTFD, &io) < 0) {
    fail("KVM_IOEVENTFD at ", hex(addr), " for value ", datamatch, ": ", errno_text());
  }
}

VcpuFd VcpuFd::create(const KvmSystem& kvm, const VmFd& vm, uint32_t id) {
  VcpuFd vcpu;
  vcpu.id_ = id;
  int fd = xioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) fail("KVM_CREATE_VCPU ", id, ": ", errno_text());
  vcpu.fd_.reset(fd);
  void* run = ::mmap(nullptr, kvm.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) fail("mmap of kvm_run for vCPU ", id, ": ", errno_text());
  vcpu.run_ = Mapping(run, kvm.vcpu_mmap_size());
  return vcpu;
}

void VcpuFd::set_cpuid(const CpuidEntries& cpuid) {
  ArrayArg<kvm_cpuid_entry2> arg(cpuid.entries.size());
  std::copy(cpuid.entries.begin(), cpuid.entries.end(), arg.entries());
  if (xioctl(fd(), kSetCpuid2, arg.data()) < 0) fail("KVM_SET_CPUID2 on vCPU ", id_, ": ", errno_text());
}

CpuidEntries VcpuFd::get_cpuid() {
  ArrayArg<kvm_cpuid_entry2> arg(kMaxCpuidEntries);
  if (xioctl(fd(), kGetCpuid2, arg.data()) < 0) fail("KVM_GET_CPUID2 on vCPU ", id_, ": ", errno_text());
  CpuidEntries out;
  out.entries.assign(arg.entries(), arg.entries() + arg.header().count);
  return out;
}

std::vector<uint8_t> VcpuFd::get_xsave(size_t size) {
  std::vector<uint8_t> area(std::max(size, sizeof(XsaveLegacyArea)));
  bool large = area.size() > sizeof(XsaveLegacyArea);
  if (xioctl(fd(), large ? kGetXsave2 : kGetXsave, area.data()) < 0) {
    fail(large ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", " on vCPU ", id_, ": ", errno_text());
  }
  return area;
}

void VcpuFd::set_xsave(const std::vector<uint8_t>& area) {
  if (xioctl(fd(), kSetXsave, area.data()) < 0) fail("KVM_SET_XSAVE on vCPU ", id_, ": ", errno_text());
}

std::vector<kvm_msr_entry> VcpuFd::get_msrs(const std::vector<uint32_t>& indices) {
  std::vector<kvm_msr_entry> out;
  size_t next = 0;
  while (next < indices.size()) {
    size_t count = indices.size() - next;
    ArrayArg<kvm_msr_entry> arg(count);
    for (size_t i = 0; i < count; ++i) arg.entries()[i] = kvm_msr_entry{.index = indices[next + i], .reserved = 0, .data = 0};
    int got = xioctl(fd(), kGetMsrs, arg.data());
    if (got < 0) fail("KVM_GET_MSRS on vCPU ", id_, ": ", errno_text());
    out.insert(out.end(), arg.entries(), arg.entries() + got);
    next += static_cast<size_t>(got) + 1;  // skip the one KVM could not read
  }
  return out;
}

void VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
  ArrayArg<kvm_msr_entry> arg(msrs.size());
  std::copy(msrs.begin(), msrs.end(), arg.entries());
  int set = xioctl(fd(), kSetMsrs, arg.data());
  if (set < 0) fail("KVM_SET_MSRS on vCPU ", id_, ": ", errno_text());
  if (static_cast<size_t>(set) != msrs.size()) {
    fail("KVM_SET_MSRS on vCPU ", id_, " rejected MSR ", hex(msrs[static_cast<size_t>(set)].index));
  }
}

const char* kvm_exit_name(uint32_t reason) {
  switch (reason) {
#define EMBER_EXIT(name) \
  case KVM_EXIT_##name:  \
    return "KVM_EXIT_" #name;
    EMBER_EXIT(UNKNOWN) EMBER_EXIT(EXCEPTION) EMBER_EXIT(IO) EMBER_EXIT(HYPERCALL) EMBER_EXIT(DEBUG)
    EMBER_EXIT(HLT) EMBER_EXIT(MMIO) EMBER_EXIT(IRQ_WINDOW_OPEN) EMBER_EXIT(SHUTDOWN)
    EMBER_EXIT(FAIL_ENTRY) EMBER_EXIT(INTR) EMBER_EXIT(SET_TPR) EMBER_EXIT(TPR_ACCESS)
    EMBER_EXIT(NMI) EMBER_EXIT(INTERNAL_ERROR) EMBER_EXIT(OSI) EMBER_EXIT(PAPR_HCALL)
    EMBER_EXIT(WATCHDOG) EMBER_EXIT(EPR) EMBER_EXIT(SYSTEM_EVENT) EMBER_EXIT(IOAPIC_EOI)
    EMBER_EXIT(HYPERV) EMBER_EXIT(X86_RDMSR) EMBER_EXIT(X86_WRMSR) EMBER_EXIT(DIRTY_RING_FULL)
    EMBER_EXIT(AP_RESET_HOLD) EMBER_EXIT(X86_BUS_LOCK) EMBER_EXIT(XEN) EMBER_EXIT(RISCV_SBI)
#undef EMBER_EXIT
    default:
      return "KVM_EXIT_(unknown)";
  }
}

}  // namespace ember
