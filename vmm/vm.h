// A microVM: guest memory, the kernel loaded into it, legacy devices on the
// buses, and one thread per vCPU. Built from a VmConfig, run until it ends.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/bus.h"
#include "base/memory/guest_memory.h"
#include "vmm/arch/x86_64/regs.h"
#include "vmm/boot_timeline.h"
#include "vmm/devices/acpi_power.h"
#include "vmm/devices/console_output.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/kvm.h"
#include "vmm/loader/boot_info.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/metrics.h"
#include "vmm/snapshot/snapshot_file.h"
#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"
#include "vmm/vm_exit.h"

namespace ember {

// Where a restored VM comes from: the snapshot file read and checked, and the request.
struct RestoreSource {
  const snapshot::SnapshotContents& contents;
  const SnapshotLoadParams& params;
};

class Vm {
 public:
  // Creates the VM and loads the kernel; throws Error with context on failure.
  // `config` has passed validate() (VmmRunner makes sure).
  // `prepared`: a KVM VM made ahead by VmFd::create_with_irq_chip, taken instead of making
  // one (invalid: make one).
  Vm(const KvmSystem& kvm, const VmConfig& config, BootTimeline& timeline, VmFd prepared = {});
  // Creates the VM from a snapshot instead: memory from the memory backend, CPU, interrupt
  // controller and device state from the file; no kernel is loaded. `config` is the
  // snapshot's (with this ember's serial console and the request's overrides), validated.
  // run() then starts it paused unless the request says resume_vm.
  Vm(const KvmSystem& kvm, const VmConfig& config, BootTimeline& timeline, const RestoreSource& restore,
     VmFd prepared = {});
  ~Vm();

  // Runs the guest until it shuts down, fails, or ember gets SIGINT/SIGTERM. Meanwhile,
  // whenever `control_fd` (an eventfd; -1: none) is readable, calls `on_control` on this
  // thread: the API's actions are applied there. Once every thread of the running VM
  // exists, this thread restricts itself to its role (restrict_current_thread(Main))
  // before any vCPU enters the guest.
  VmExit run(int control_fd = -1, const std::function<void()>& on_control = {});

  // Lifecycle controls, applied on the thread that runs run() (between its waits).
  // pause() returns once every vCPU is stopped outside KVM_RUN and every device is
  // drained and its thread parked; resume() restarts them.
  // Both are idempotent. state() is Running or Paused while run() runs (thread-safe).
  void pause();
  void resume();
  enum class State { Running, Paused };
  State state() const;
  // Saves the paused VM (else Error): guest memory to params.mem_file_path first, then
  // the snapshot file (configuration, machine, vCPUs, devices). Each file is written
  // beside its path and renamed over it, so a failure leaves what was there. Main thread.
  void save_snapshot(const SnapshotCreateParams& params);
  // Presses and releases Ctrl+Alt+Del on the i8042 keyboard; Linux then reboots,
  // which ends run() with a guest shutdown.
  void send_ctrl_alt_del();
  // PATCH /drives and /network-interfaces: the device's limiters updated on the event
  // thread (RateLimiterConfig says how). Throws Error for an unknown id.
  void update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update);
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx, const RateLimiterConfig& tx);
  // PATCH /drives with path_on_host, running or paused (VirtioDevices::replace_drive_file);
  // a snapshot taken afterwards names the new file. Main thread. Throws Error.
  void replace_drive_file(const std::string& drive_id, const std::string& path);
  // Adds the VM's counters: "vcpu" (exits by reason), one group per device
  // ("block_<id>", "net_<id>", "vsock"), "boot" (phase times in us).
  void collect_metrics(MetricGroups& out) const;

 private:
  std::string ioapic_pin_state(uint32_t pin);
  void map_memory();
  // On the machine thread, while the main thread reads the kernel: the KVM VM, its
  // memory slots, the legacy and virtio devices, the vCPUs, page tables and MP table.
  void build_machine_now();
  void register_memory();  // KVM_SET_USER_MEMORY_REGION, once the VM exists
  // With track_dirty_pages: KVM's dirty log of every slot, into memory_.written_pages().
  void collect_dirty_pages();
  void setup_devices();
  // An eventfd wired to `gsi` with KVM_IRQFD; the returned function pulses the IRQ.
  std::function<void()> irq_trigger(UniqueFd& event, uint32_t gsi, const char* device);
  struct BootEntry {
    x86::EntryMode mode;
    uint64_t entry;
    uint64_t boot_info;
  };
  struct LoadedImages {
    LoadedKernel kernel;
    std::optional<InitrdLocation> initrd;
  };
  // Kernel and initrd into guest memory; needs no VM.
  LoadedImages load_images();
  // Command line and zero page / PVH start info (page tables and MP table: with the vCPUs).
  BootEntry write_boot_structures(const LoadedImages& images, const std::string& cmdline);
  // vCPU fds; with `boot_state` also CPUID, MSRs, FPU and LAPIC for a fresh boot (boot
  // registers are set once the kernel is loaded).
  void create_vcpus(bool boot_state);
  // The restore constructor's parts.
  void restore_memory(const SnapshotLoadParams& params);
  void build_restored_machine(const snapshot::SnapshotContents& contents);
  std::vector<uint8_t> machine_section() const;
  void check_machine_section(snapshot::StateReader& in) const;
  void stop_vcpus();
  // vm_ from prepared_ (or made now), then the KvmReady mark.
  void create_kvm_vm();

  const KvmSystem& kvm_;
  VmConfig config_;
  VmFd prepared_;  // until create_kvm_vm() takes it
  VmFd vm_;
  GuestMemory memory_;
  UniqueFd uffd_;         // Uffd restore: ember's copy of the userfaultfd
  UniqueFd uffd_socket_;  // and the handler's connection, open while the VM lives
  BootTimeline& timeline_;
  ExitLatch exit_;
  Bus pio_{"port I/O"};
  Bus mmio_{"MMIO"};
  UniqueFd serial_out_;
  std::unique_ptr<ConsoleOutput> console_;  // before serial_, which writes to it
  UniqueFd serial_irq_;
  UniqueFd i8042_irq_;
  // Owned here, pointed at by the buses; after them, so destroyed first (the vCPU
  // threads, the buses' only users, are joined before).
  std::unique_ptr<Serial> serial_;
  std::unique_ptr<I8042> i8042_;
  std::unique_ptr<AcpiPowerControl> acpi_power_;  // with ACPI: the guest's poweroff and reset
  uint64_t rsdp_address_ = 0;                      // with ACPI: where the tables start
  std::unique_ptr<BootMarker> boot_marker_;
  mutable std::mutex pause_mu_;  // serializes pause()/resume()
  std::atomic<bool> paused_{false};
  bool start_paused_ = false;  // restored without resume_vm: run() leaves it paused
  bool has_base_snapshot_ = false;  // restored, or saved once: a Diff has something to apply to
  bool restored_ = false;  // built from a snapshot: its memory is never pre-faulted (restore_memory)
  // After the buses and memory (it uses them), before the vCPUs (destroyed first).
  std::unique_ptr<VirtioDevices> virtio_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

}  // namespace ember
