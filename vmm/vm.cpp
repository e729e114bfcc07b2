#include "vmm/vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <exception>

#include "base/memory/layout.h"
#include "base/util/error.h"
#include "base/util/eventfd.h"
#include "base/util/joining_thread.h"
#include "base/util/log.h"
#include "base/util/output_file.h"
#include "base/util/thread.h"
#include "vmm/arch/x86_64/acpi_tables.h"
#include "vmm/arch/x86_64/cpuid.h"
#include "vmm/arch/x86_64/machine_state.h"
#include "vmm/arch/x86_64/mptable.h"
#include "vmm/arch/x86_64/regs.h"
#include "vmm/devices/i8042.h"
#include "vmm/loader/boot_info.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/snapshot/memory_file.h"
#include "vmm/snapshot/vm_config_state.h"
#include "vmm/stdin_forwarder.h"

namespace ember {

namespace {
constexpr const char* kPanicMarker = "Kernel panic - not syncing";
}

Vm::Vm(const KvmSystem& kvm, const VmConfig& config, BootTimeline& timeline, VmFd prepared)
    : kvm_(kvm), config_(config), prepared_(std::move(prepared)), timeline_(timeline) {
  map_memory();
  timeline_.mark(BootPhase::MemoryReady);
  // Reading the kernel needs no VM, and the VM, its devices and vCPUs need no kernel:
  // build them meanwhile. KVM_CREATE_VM alone takes 15-25 ms in the emulated host (on
  // hosts up to 6.12 it starts a kernel thread per VM). The thread is joined on every
  // path, so an exception on either side leaves nothing running.
  std::exception_ptr machine_error;
  JoiningThread build_machine(start_thread(ThreadRole::Machine, "ember-machine", [this, &machine_error] {
    try {
      build_machine_now();
    } catch (...) {
      machine_error = std::current_exception();
    }
  }));
  LoadedImages images = load_images();
  timeline_.mark(BootPhase::KernelLoaded);
  build_machine.join();
  if (machine_error) std::rethrow_exception(machine_error);
  BootEntry entry = write_boot_structures(images, config_.boot.boot_args + virtio_->cmdline());
  // Application processors wait for INIT/SIPI from the guest; only the BSP gets boot state.
  x86::setup_boot_registers(vcpus_.front()->fd(), entry.mode, entry.entry, entry.boot_info);
}

void Vm::create_kvm_vm() {
  vm_ = prepared_.valid() ? std::move(prepared_) : VmFd::create_with_irq_chip(kvm_);
  timeline_.mark(BootPhase::KvmReady);
}

void Vm::build_machine_now() {
  create_kvm_vm();
  register_memory();
  setup_devices();
  virtio_ = std::make_unique<VirtioDevices>(vm_, memory_, mmio_, config_);
  create_vcpus(true);
  // Neither needs the kernel, and the first write to low memory populates its 2 MiB page.
  x86::write_boot_tables(memory_);
  x86::write_mptable(memory_, config_.machine.vcpu_count);
  if (acpi_enabled(config_)) {
    rsdp_address_ = x86::write_acpi_tables(memory_, {config_.machine.vcpu_count, virtio_->slots()});
  }
  timeline_.mark(BootPhase::VcpusReady);
}

// The stop order, one place: (1) vCPUs out of KVM_RUN and joined, so nothing reaches
// a device register any more; (2) every virtio device quiesced on the event thread
// (in-flight io_uring requests completed or cancelled, chains dropped); (3) the event
// thread ended; (4) transports and devices destroyed, then the io_uring ring, then the
// loop (VirtioDevices' destructor); (5) legacy devices, the buses that point at them,
// guest memory and the VM fd (members, in reverse order of declaration).
Vm::~Vm() {
  stop_vcpus();
  if (virtio_) virtio_->stop();
}

void Vm::map_memory() {
  GuestMemoryOptions options;
  options.size_bytes = config_.machine.mem_size_mib * layout::kMiB;
  options.huge_pages = config_.machine.huge_pages;
  options.prefault = config_.machine.prefault;
  memory_ = GuestMemory::create(options);
}

void Vm::register_memory() {
  uint32_t flags = 0;
  if (config_.machine.track_dirty_pages) {
    flags = KVM_MEM_LOG_DIRTY_PAGES;
    memory_.track_writes();  // before any device runs
  }
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory_.regions()) {
    vm_.set_user_memory_region(slot++, r.gpa, r.size, memory_.host_base() + r.host_offset, flags);
  }
}

void Vm::collect_dirty_pages() {
  WrittenPages& written = *memory_.written_pages();
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory_.regions()) written.merge(r.host_offset, vm_.get_dirty_log(slot++, r.size));
}

std::function<void()> Vm::irq_trigger(UniqueFd& event, uint32_t gsi, const char* device) {
  event = make_eventfd(cat("the ", device, " IRQ"));
  vm_.register_irqfd(event.get(), gsi);
  int fd = event.get();
  return [fd] { signal_eventfd(fd); };
}

void Vm::setup_devices() {
  int out_fd = -1;
  switch (config_.serial.output) {
    case SerialConfig::Output::Stdout:
      out_fd = STDOUT_FILENO;
      break;
    case SerialConfig::Output::File:
      // A FIFO is opened without waiting for a reader; the console thread waits for room.
      serial_out_ = open_output_file(config_.serial.path, "serial output file");
      out_fd = serial_out_.get();
      break;
    case SerialConfig::Output::None:
      break;
  }
  if (out_fd >= 0) console_ = std::make_unique<ConsoleOutput>(out_fd, config_.serial.rate_limiter);
  serial_ = std::make_unique<Serial>(
      console_.get(), irq_trigger(serial_irq_, layout::kCom1Irq, "COM1"),
      [this](const std::string& line) {
        if (line.find(kPanicMarker) != std::string::npos) exit_.note_panic(line);
      });
  pio_.insert(*serial_, layout::kCom1Port, 8, "COM1");
  i8042_ = std::make_unique<I8042>([this] { exit_.report(ExitKind::GuestShutdown, "guest reset via i8042"); },
                                   irq_trigger(i8042_irq_, layout::kI8042Irq, "i8042"));
  pio_.insert(*i8042_, layout::kI8042DataPort, layout::kI8042CommandPort - layout::kI8042DataPort + 1, "i8042");
  boot_marker_ = std::make_unique<BootMarker>([this] {
                 timeline_.mark(BootPhase::BootComplete);
                 log::info(cat("guest boot complete after ", timeline_.wall_us(BootPhase::BootComplete), " us (",
                               timeline_.cpu_us(BootPhase::BootComplete), " us CPU) since process start, ",
                               timeline_.wall_us(BootPhase::BootComplete) - timeline_.wall_us(BootPhase::InstanceStart),
                               " us (",
                               timeline_.cpu_us(BootPhase::BootComplete) - timeline_.cpu_us(BootPhase::InstanceStart),
                               " us CPU) since InstanceStart"));
  });
  mmio_.insert(*boot_marker_, layout::kBootMarkerStart, layout::kBootMarkerSize, "boot marker");
  if (acpi_enabled(config_)) {
    if (std::ranges::count(cmdline_words(config_.boot.boot_args), "i8042.nopnp") > 0) {
      log::warn("boot_args has i8042.nopnp: with ACPI the guest's i8042 driver then gets no IRQ (hardware-reduced "
                "ACPI has no legacy IRQs), so SendCtrlAltDel cannot reach it; drop i8042.nopnp, or use --no-acpi");
    }
    acpi_power_ = std::make_unique<AcpiPowerControl>(
        [this] { exit_.report(ExitKind::GuestShutdown, "guest powered off (ACPI S5)"); },
        [this] { exit_.report(ExitKind::GuestShutdown, "guest reset via the ACPI reset register"); });
    pio_.insert(*acpi_power_, layout::kAcpiSleepControlPort, AcpiPowerControl::kPortCount, "ACPI power control");
  }
}

Vm::LoadedImages Vm::load_images() {
  const BootSource& boot = config_.boot;
  ReadBatch batch;  // the kernel's segments and the initrd, read by two threads at the end
  FileImage kernel_image = FileImage::open(boot.kernel_image_path, "kernel");
  kernel_image.defer_large_reads_to(&batch);
  LoadedImages images{load_kernel(kernel_image, memory_), std::nullopt};
  std::optional<FileImage> initrd_image;
  if (!boot.initrd_path.empty()) {
    initrd_image = FileImage::open(boot.initrd_path, "initrd");
    initrd_image->defer_large_reads_to(&batch);
    images.initrd = load_initrd(*initrd_image, images.kernel, memory_);
  }
  batch.run();
  return images;
}

Vm::BootEntry Vm::write_boot_structures(const LoadedImages& images, const std::string& cmdline) {
  const LoadedKernel& kernel = images.kernel;
  write_cmdline(memory_, kernel, cmdline);
  uint64_t boot_info = write_boot_info(memory_, kernel, cmdline, images.initrd, rsdp_address_);
  log::info(cat("loaded ", kernel.format == KernelFormat::Elf ? "ELF" : "bzImage", " kernel, entry ",
                hex(kernel.entry), kernel.mode == x86::EntryMode::Pvh32 ? " (PVH)" : " (64-bit)"));
  return {kernel.mode, kernel.entry, boot_info};
}

void Vm::create_vcpus(bool boot_state) {
  Vcpu::install_kick_handler();
  for (uint32_t id = 0; id < config_.machine.vcpu_count; ++id) {
    VcpuFd fd = VcpuFd::create(kvm_, vm_, id);
    if (boot_state) {
      fd.set_cpuid(x86::vcpu_cpuid(kvm_.supported_cpuid(), id, config_.machine.vcpu_count));
      x86::setup_msrs(fd);
      x86::setup_fpu(fd);
      x86::setup_lapic(fd);
    }
    vcpus_.push_back(std::make_unique<Vcpu>(std::move(fd), pio_, mmio_, exit_));
  }
  vcpus_.front()->set_first_run_hook([this] { timeline_.mark(BootPhase::FirstKvmRun); });
}

void Vm::stop_vcpus() {
  for (auto& v : vcpus_) {
    v->kick();
    v->wake();  // a paused vCPU sees the exit latch
  }
  for (auto& v : vcpus_) v->join();
}

VmExit Vm::run(int control_fd, const std::function<void()>& on_control) {
  // SIGINT/SIGTERM are taken through a signalfd by this thread only; vCPU threads
  // inherit the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  UniqueFd sigfd(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));

  std::unique_ptr<StdinForwarder> stdin_forwarder;
  if (config_.serial.input) stdin_forwarder = std::make_unique<StdinForwarder>(*serial_);
  virtio_->start();  // the event thread runs before any vCPU can notify a queue
  // Each vCPU thread restricts itself first thing, then waits here until this thread has
  // too: no guest instruction runs while any of ember's threads is unrestricted.
  for (auto& v : vcpus_) v->request_pause();
  for (auto& v : vcpus_) v->start();
  // Only after every thread exists: creating one maps its stack, which needs the mm lock
  // for writing, and in perf/boot-latency that waited behind the prefault's population of
  // the whole RAM (the first KVM_RUN came 0.3-1.2 s late in the emulated host). A restored
  // VM's configuration keeps its source's pre-fault mode, but its pages come from the memory
  // file or handler as the guest touches them (restore_memory): populating them would read
  // the whole file and map every page into each clone.
  if (config_.machine.prefault == Prefault::Background && !restored_) memory_.start_background_prefault();
  // Last: threads inherit their creator's filter, and this one creates no more threads.
  restrict_current_thread(ThreadRole::Main);
  if (start_paused_) {
    virtio_->pause();  // a restored VM waits for PATCH /vm {"state": "Resumed"}
    paused_ = true;
    log::info("VM restored, paused");
  } else {
    for (auto& v : vcpus_) v->resume();
  }

  while (!exit_.reported()) {
    pollfd fds[3] = {{exit_.fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {control_fd, POLLIN, 0}};
    int n = ::poll(fds, 3, -1);  // negative fds are ignored
    if (n < 0 && errno != EINTR) {
      exit_.report(ExitKind::Error, cat("poll: ", errno_text()));
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      ssize_t got = ::read(sigfd.get(), &info, sizeof(info));
      (void)got;
      // Named here, not by strsignal(): that may look up translations, i.e. open files.
      exit_.report(ExitKind::Signal, cat("stopped by signal ", info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM"));
    }
    if ((fds[2].revents & POLLIN) && on_control) on_control();
  }
  // The stop order (see ~Vm): vCPUs joined, then the devices' state read, then the
  // devices quiesced and the event thread ended.
  stop_vcpus();
  if (exit_.get().kind == ExitKind::Signal || exit_.get().kind == ExitKind::TripleFault) {
    // Where the guest and its devices were, for diagnosing hangs that made someone stop
    // ember, and crashes (on AMD the faulting vCPU itself comes back reset; the others
    // show what the guest was doing). Read only now: the vCPU and event threads own that
    // state while they run.
    std::string where;
    for (auto& v : vcpus_) where += cat("\n  vCPU ", v->fd().id(), ": ", v->describe_stopped_state());
    where += "\n  " + serial_->describe_state() + ioapic_pin_state(layout::kCom1Irq);
    log::warn("guest state when stopped:" + where);
    std::string devices = virtio_->describe_state();
    if (!devices.empty()) log::warn("virtio devices when stopped:" + devices);
  }
  virtio_->stop();
  stdin_forwarder.reset();
  // The guest's last console lines reach the output before ember reports how it ended.
  if (console_) console_->drain(ConsoleOutput::kDrainTimeout);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return exit_.get();
}

// One IOAPIC pin as KVM holds it (is the device's interrupt masked, waiting, or delivered but
// never acknowledged?), for the hang report.
std::string Vm::ioapic_pin_state(uint32_t pin) {
  kvm_irqchip chip{};
  chip.chip_id = KVM_IRQCHIP_IOAPIC;
  if (::ioctl(vm_.fd(), KVM_GET_IRQCHIP, &chip) < 0 || pin >= KVM_IOAPIC_NUM_PINS) return "";
  const auto& entry = chip.chip.ioapic.redirtbl[pin].fields;
  return cat(", IOAPIC pin ", pin, ": vector ", hex(entry.vector), entry.mask ? " masked" : " unmasked",
             entry.trig_mode ? " level" : " edge", entry.remote_irr ? " remote IRR" : "",
             (chip.chip.ioapic.irr & (1u << pin)) ? " request waiting" : "");
}

void Vm::pause() {
  std::lock_guard lock(pause_mu_);
  if (paused_) return;
  for (auto& v : vcpus_) v->request_pause();
  for (auto& v : vcpus_) v->wait_paused();
  virtio_->pause();  // devices next: a paused VM changes no guest memory
  paused_ = true;
  log::info("VM paused");
}

void Vm::resume() {
  std::lock_guard lock(pause_mu_);
  if (!paused_) return;
  virtio_->resume();
  for (auto& v : vcpus_) v->resume();
  paused_ = false;
  log::info("VM resumed");
}

Vm::Vm(const KvmSystem& kvm, const VmConfig& config, BootTimeline& timeline, const RestoreSource& restore,
       VmFd prepared)
    : kvm_(kvm), config_(config), prepared_(std::move(prepared)), timeline_(timeline) {
  has_base_snapshot_ = true;  // the files it was restored from
  restored_ = true;
  restore_memory(restore.params);
  timeline_.mark(BootPhase::MemoryReady);
  build_restored_machine(restore.contents);
  start_paused_ = !restore.params.resume_vm;
}

void Vm::restore_memory(const SnapshotLoadParams& params) {
  GuestMemoryOptions options;
  options.size_bytes = config_.machine.mem_size_mib * layout::kMiB;
  // Pages come from the memory file (or its handler) as the guest touches them: populating
  // them all would read the whole file and end the sharing between clones.
  options.prefault = Prefault::Off;
  if (params.backend == SnapshotLoadParams::Backend::File) {
    memory_ = snapshot::restore_memory_from_file(params.backend_path, options);
  } else {
    snapshot::UffdMemory m = snapshot::restore_memory_with_uffd(params.backend_path, options);
    memory_ = std::move(m.memory);
    uffd_ = std::move(m.uffd);
    uffd_socket_ = std::move(m.socket);
  }
}

// The machine section: the layout the snapshot's memory and devices were made for, and
// KVM's VM-wide state.
std::vector<uint8_t> Vm::machine_section() const {
  snapshot::StateWriter w;
  w.u32(config_.machine.vcpu_count);
  w.u64(memory_.size());
  w.u32(static_cast<uint32_t>(memory_.regions().size()));
  for (const MemoryRegion& r : memory_.regions()) {
    w.u64(r.gpa);
    w.u64(r.size);
    w.u64(r.host_offset);
  }
  w.boolean(acpi_power_ != nullptr);
  w.u64(rsdp_address_);
  x86::write_state(w, x86::save_vm_state(vm_));
  return w.take();
}

void Vm::check_machine_section(snapshot::StateReader& in) const {
  uint32_t vcpus = in.u32("vCPU count");
  if (vcpus != config_.machine.vcpu_count) {
    in.invalid("vCPU count", cat(vcpus, ", but its configuration says ", config_.machine.vcpu_count));
  }
  uint64_t size = in.u64("memory size");
  if (size != memory_.size()) in.invalid("memory size", cat(size, " bytes, but this VM has ", memory_.size()));
  uint32_t regions = in.u32("memory region count");
  if (regions != memory_.regions().size()) {
    in.invalid("memory region count", cat(regions, ", but this ember lays the memory out in ", memory_.regions().size()));
  }
  for (const MemoryRegion& r : memory_.regions()) {
    uint64_t gpa = in.u64("region address"), bytes = in.u64("region size"), offset = in.u64("region offset");
    if (gpa != r.gpa || bytes != r.size || offset != r.host_offset) {
      in.invalid("memory regions", cat("region at ", hex(gpa), " size ", hex(bytes), " differs from this ember's at ",
                                       hex(r.gpa), " size ", hex(r.size)));
    }
  }
  bool acpi = in.boolean("ACPI");
  if (acpi != acpi_enabled(config_)) in.invalid("ACPI", "the snapshot's VM and its configuration disagree");
}

void Vm::build_restored_machine(const snapshot::SnapshotContents& contents) {
  create_kvm_vm();
  snapshot::StateReader machine = contents.section("machine");
  check_machine_section(machine);
  rsdp_address_ = machine.u64("RSDP address");
  x86::VmState vm_state = x86::read_vm_state(machine);
  register_memory();
  setup_devices();
  snapshot::StateReader serial = contents.section("serial");
  serial_->restore_state(serial);
  serial.expect_end();
  snapshot::StateReader i8042 = contents.section("i8042");
  i8042_->restore_state(i8042);
  i8042.expect_end();
  virtio_ = std::make_unique<VirtioDevices>(vm_, memory_, mmio_, config_);
  virtio_->restore_state(contents);
  create_vcpus(false);
  x86::restore_vm_state(vm_, vm_state);
  for (auto& v : vcpus_) {
    snapshot::StateReader in = contents.section(cat("vcpu", v->fd().id()));
    x86::restore_vcpu_state(v->fd(), kvm_, x86::read_vcpu_state(in));
  }
  // Last, over the restored interrupt controllers: a pulse the snapshot may have missed.
  virtio_->resend_pending_interrupts();
  serial_->resend_interrupt_if_pending();
  i8042_->resend_interrupt_if_pending();
  timeline_.mark(BootPhase::VcpusReady);
  log::info(cat("restored the VM from ", contents.source(), " (written by ember ", contents.ember_version(), ")"));
}

void Vm::save_snapshot(const SnapshotCreateParams& params) {
  std::lock_guard lock(pause_mu_);
  if (!paused_) fail("the VM is not paused");
  bool diff = params.type == SnapshotCreateParams::Type::Diff;
  bool tracking = config_.machine.track_dirty_pages;
  if (diff && !tracking) {
    fail("a Diff snapshot needs dirty page tracking: set track_dirty_pages in machine-config before the VM starts, "
         "or in snapshot/load");
  }
  if (diff && !has_base_snapshot_) {
    fail("a Diff snapshot needs a base: this VM has no earlier snapshot (take a Full one first, or restore it from one)");
  }
  snapshot::SnapshotContents contents;
  snapshot::StateWriter config;
  snapshot::write_state(config, config_);
  contents.add("config", config.take());
  contents.add("machine", machine_section());
  for (auto& v : vcpus_) {
    snapshot::StateWriter w;
    x86::write_state(w, x86::save_vcpu_state(v->fd(), kvm_));
    contents.add(cat("vcpu", v->fd().id()), w.take());
  }
  snapshot::StateWriter serial, i8042;
  serial_->save_state(serial);
  contents.add("serial", serial.take());
  i8042_->save_state(i8042);
  contents.add("i8042", i8042.take());
  virtio_->save_state(contents);
  // Reading KVM's log clears it; the pages stay in ours until a snapshot is on disk, so a
  // failed one loses none of them.
  if (tracking) collect_dirty_pages();
  // Memory first: a snapshot file never names memory that was not written.
  snapshot::MemorySaveStats stats;
  if (diff) {
    std::vector<snapshot::DirtyBitmap> dirty;
    for (const MemoryRegion& r : memory_.regions()) dirty.push_back(memory_.written_pages()->extract(r.host_offset, r.size));
    stats = snapshot::save_memory_diff(memory_, dirty, params.mem_file_path);
  } else {
    stats = snapshot::save_memory_full(memory_, params.mem_file_path);
  }
  snapshot::write_snapshot_file(params.snapshot_path, contents);
  if (tracking) memory_.written_pages()->clear();
  has_base_snapshot_ = true;
  log::info(cat(diff ? "diff" : "full", " snapshot written: ", params.snapshot_path, " and memory ", params.mem_file_path,
                " (", stats.pages_written, diff ? " changed pages of " : " non-zero pages of ", memory_.size() / 4096, ")"));
}

Vm::State Vm::state() const { return paused_ ? State::Paused : State::Running; }

void Vm::send_ctrl_alt_del() {
  if (!i8042_->press_ctrl_alt_del()) fail("the guest is not reading its keyboard (i8042 output queue full)");
  log::info("sent Ctrl+Alt+Del to the guest");
}

void Vm::update_drive_rate_limiter(const std::string& drive_id, const RateLimiterConfig& update) {
  virtio_->update_drive_rate_limiter(drive_id, update);
}

void Vm::replace_drive_file(const std::string& drive_id, const std::string& path) {
  virtio_->replace_drive_file(drive_id, path);
  for (DriveConfig& d : config_.drives) {
    if (d.drive_id == drive_id) d.path_on_host = path;
  }
}

void Vm::update_net_rate_limiters(const std::string& iface_id, const RateLimiterConfig& rx,
                                  const RateLimiterConfig& tx) {
  virtio_->update_net_rate_limiters(iface_id, rx, tx);
}

void Vm::collect_metrics(MetricGroups& out) const {
  auto& vcpu = out["vcpu"];
  for (size_t r = 0; r < static_cast<size_t>(Vcpu::ExitReason::Count); ++r) {
    auto reason = static_cast<Vcpu::ExitReason>(r);
    uint64_t total = 0;
    for (const auto& v : vcpus_) total += v->exits(reason);
    vcpu[Vcpu::exit_reason_name(reason)] = total;
  }
  virtio_->collect_metrics(out);
  if (console_) {
    // Firecracker's group and names: bytes the output could not take, and bytes beyond the limiter.
    auto& uart = out["uart"];
    uart["missed_write_count"] = console_->dropped();
    uart["rate_limiter_dropped_bytes"] = console_->rate_limited();
  }
  auto& boot = out["boot"];
  for (size_t p = 0; p < static_cast<size_t>(BootPhase::Count); ++p) {
    auto phase = static_cast<BootPhase>(p);
    if (!timeline_.marked(phase)) continue;
    boot[std::string(boot_phase_name(phase)) + "_wall_us"] = static_cast<uint64_t>(timeline_.wall_us(phase));
    boot[std::string(boot_phase_name(phase)) + "_cpu_us"] = static_cast<uint64_t>(timeline_.cpu_us(phase));
  }
  if (timeline_.marked(BootPhase::BootComplete) && timeline_.marked(BootPhase::InstanceStart)) {
    boot["boot_complete_since_instance_start_wall_us"] =
        static_cast<uint64_t>(timeline_.wall_us(BootPhase::BootComplete) - timeline_.wall_us(BootPhase::InstanceStart));
    boot["boot_complete_since_instance_start_cpu_us"] =
        static_cast<uint64_t>(timeline_.cpu_us(BootPhase::BootComplete) - timeline_.cpu_us(BootPhase::InstanceStart));
  }
}

}  // namespace ember
