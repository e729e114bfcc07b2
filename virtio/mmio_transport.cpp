#include "virtio/mmio_transport.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

#include "base/util/error.h"
#include "base/util/eventfd.h"
#include "base/util/log.h"
#include "virtio/guest_warning.h"
#include "virtio/spec.h"

namespace ember::virtio {

namespace {

void set_low(uint64_t& v, uint32_t low) { v = (v & ~0xffffffffull) | low; }
void set_high(uint64_t& v, uint32_t high) { v = (v & 0xffffffffull) | (uint64_t{high} << 32); }

constexpr uint64_t kTransportFeatures = bit(kFeatureVersion1) | bit(kFeatureIndirectDesc) | bit(kFeatureEventIdx);

QueueFeatures queue_features(uint64_t driver_features) {
  return {(driver_features & bit(kFeatureEventIdx)) != 0, (driver_features & bit(kFeatureIndirectDesc)) != 0};
}

// What the status handshake (write_status) can reach, FAILED aside.
constexpr uint32_t kReachableStatus[] = {
    0, kStatusAcknowledge, kStatusAcknowledge | kStatusDriver,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk};

// A bound on what a snapshot can make ember allocate for one device's state.
constexpr size_t kMaxSavedState = 1 << 20;

}  // namespace

MmioTransport::MmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& memory, EventLoop& loop,
                             std::string name)
    : device_(std::move(device)),
      memory_(memory),
      loop_(loop),
      name_(std::move(name)),
      max_sizes_(device_->queue_max_sizes()),
      offered_features_(device_->device_features() | kTransportFeatures),
      irq_fd_(make_eventfd(name_ + " interrupt")),
      interrupt_(irq_fd_.get()),
      queue_regs_(max_sizes_.size()) {
  for (uint16_t q = 0; q < max_sizes_.size(); ++q) {
    notify_fds_.push_back(make_eventfd(cat(name_, " queue ", q, " notification")));
    loop_.add(notify_fds_.back().get(), [this, q] { on_notify(q); });
  }
}

MmioTransport::~MmioTransport() {
  // A device destroyed while active would complete in-flight requests into queue
  // storage that is already gone (members die in reverse order).
  quiesce();
  for (const UniqueFd& fd : notify_fds_) loop_.remove(fd.get());
}

void MmioTransport::drain() {
  if (!active_) return;
  device_->drain();
  after_processing();
}

void MmioTransport::quiesce() {
  if (active_) device_->reset();
  active_ = false;
  queues_.clear();
}

void MmioTransport::update_config(const std::function<void()>& change) {
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    change();
    config_generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  // 4.2.2: InterruptStatus bit 1, so the driver re-reads the config space.
  if (active_) interrupt_.signal_config();
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= mmio::kConfig) {
    std::lock_guard<std::mutex> lock(config_mu_);
    device_->read_config(offset - mmio::kConfig, data);
    return;
  }
  // 4.2.2.2: the driver MUST use 32-bit wide, aligned accesses for registers.
  if (data.size() != 4 || offset % 4 != 0) {
    warn_guest(cat(name_, ": ", data.size(), "-byte read of register ", hex(offset), " ignored"));
    return;
  }
  uint32_t value;
  {
    std::lock_guard<std::mutex> lock(mu_);
    value = read_register(offset);
  }
  std::memcpy(data.data(), &value, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= mmio::kConfig) {
    std::lock_guard<std::mutex> lock(mu_);
    std::lock_guard<std::mutex> config_lock(config_mu_);
    device_->write_config(offset - mmio::kConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    warn_guest(cat(name_, ": ", data.size(), "-byte write of register ", hex(offset), " ignored"));
    return;
  }
  uint32_t value;
  std::memcpy(&value, data.data(), 4);
  std::lock_guard<std::mutex> lock(mu_);
  write_register(offset, value);
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  bool queue_valid = queue_sel_ < queue_regs_.size();
  switch (offset) {
    case mmio::kMagicValue: return mmio::kMagic;
    case mmio::kVersionReg: return mmio::kVersion;
    case mmio::kDeviceId: return device_->device_type();
    case mmio::kVendorIdReg: return mmio::kVendorId;
    case mmio::kDeviceFeatures:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(offered_features_ >> (32 * device_features_sel_));
    case mmio::kQueueNumMax: return queue_valid ? max_sizes_[queue_sel_] : 0;
    case mmio::kQueueReady: return queue_valid && queue_regs_[queue_sel_].ready ? 1 : 0;
    case mmio::kInterruptStatus: return interrupt_.status();
    case mmio::kStatus: return status_ | (needs_reset_.load() ? kStatusNeedsReset : 0);
    case mmio::kConfigGeneration: return config_generation_.load(std::memory_order_acquire);
    case mmio::kShmLenLow:
    case mmio::kShmLenHigh: return 0xffffffff;  // 4.2.2: no shared memory region
    default: return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
  QueueRegs* q = queue_sel_ < queue_regs_.size() ? &queue_regs_[queue_sel_] : nullptr;
  // 4.2.2.3: queue registers may change only before DRIVER_OK and while not ready.
  auto queue_writable = [&]() {
    if (q && !q->ready && !(status_ & kStatusDriverOk)) return true;
    warn_guest(cat(name_, ": write of queue register ", hex(offset), " for queue ", queue_sel_, " ignored"));
    return false;
  };
  switch (offset) {
    case mmio::kDeviceFeaturesSel: device_features_sel_ = value; break;
    case mmio::kDriverFeaturesSel: driver_features_sel_ = value; break;
    case mmio::kDriverFeatures:
      if ((status_ & (kStatusDriver | kStatusFeaturesOk)) != kStatusDriver) {
        warn_guest(cat(name_, ": driver features written in status ", hex(status_), "; ignored"));
      } else if (driver_features_sel_ == 0) {
        set_low(driver_features_, value);
      } else if (driver_features_sel_ == 1) {
        set_high(driver_features_, value);
      }
      break;
    case mmio::kQueueSel: queue_sel_ = value; break;
    case mmio::kQueueNum:
      if (queue_writable()) q->config.size = static_cast<uint16_t>(value > 0xffff ? 0 : value);
      break;
    case mmio::kQueueDescLow: if (queue_writable()) set_low(q->config.desc, value); break;
    case mmio::kQueueDescHigh: if (queue_writable()) set_high(q->config.desc, value); break;
    case mmio::kQueueDriverLow: if (queue_writable()) set_low(q->config.driver, value); break;
    case mmio::kQueueDriverHigh: if (queue_writable()) set_high(q->config.driver, value); break;
    case mmio::kQueueDeviceLow: if (queue_writable()) set_low(q->config.device, value); break;
    case mmio::kQueueDeviceHigh: if (queue_writable()) set_high(q->config.device, value); break;
    case mmio::kQueueReady:
      if (!q || (status_ & kStatusDriverOk)) {
        warn_guest(cat(name_, ": QueueReady write for queue ", queue_sel_, " ignored"));
      } else {
        q->ready = value == 1;
      }
      break;
    case mmio::kQueueNotify:
      // Normally caught by KVM_IOEVENTFD; without it, notify the same eventfd here.
      if (value < notify_fds_.size()) {
        signal_eventfd(notify_fds_[value].get());
      } else {
        warn_guest(cat(name_, ": notification for queue ", value, ", which does not exist"));
      }
      break;
    case mmio::kInterruptAck: interrupt_.ack(value); break;
    case mmio::kStatus: write_status(value); break;
    default:
      warn_guest(cat(name_, ": write to read-only or unknown register ", hex(offset), " ignored"));
  }
}

bool MmioTransport::features_acceptable() const {
  if (driver_features_ & ~offered_features_) {
    warn_guest(cat(name_, ": driver accepted features ", hex(driver_features_ & ~offered_features_),
                   " that were not offered"));
    return false;
  }
  if (!(driver_features_ & bit(kFeatureVersion1))) {
    warn_guest(cat(name_, ": driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)"));
    return false;
  }
  return true;
}

// 3.1.1 Driver initialization: status moves 0 -> ACKNOWLEDGE -> DRIVER ->
// FEATURES_OK -> DRIVER_OK, one bit at a time; 0 resets, FAILED may come anytime.
void MmioTransport::write_status(uint32_t value) {
  value &= ~kStatusNeedsReset;  // device-owned bit, echoed back by drivers
  if (value == 0) {
    reset();
    return;
  }
  if (value & kStatusFailed) {
    warn_guest(cat(name_, ": the driver gave up on the device (status FAILED)"));
    status_ |= kStatusFailed;
    return;
  }
  if (value == status_) return;
  uint32_t added = value & ~status_;
  bool keeps_bits = (value & status_) == status_;
  bool valid = keeps_bits && ((status_ == 0 && added == kStatusAcknowledge) ||
                              (status_ == kStatusAcknowledge && added == kStatusDriver) ||
                              (status_ == (kStatusAcknowledge | kStatusDriver) && added == kStatusFeaturesOk) ||
                              (status_ == (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk) &&
                               added == kStatusDriverOk));
  if (!valid) {
    warn_guest(cat(name_, ": invalid status transition ", hex(status_), " -> ", hex(value), " ignored"));
    return;
  }
  // 2.2.2: a device that cannot support the accepted features leaves FEATURES_OK clear.
  if (added == kStatusFeaturesOk && !features_acceptable()) return;
  status_ = value;
  if (added == kStatusDriverOk) activate();
}

void MmioTransport::activate() {
  QueueFeatures features = queue_features(driver_features_);
  std::vector<SplitQueue> queues;
  for (size_t i = 0; i < queue_regs_.size(); ++i) {
    Result<SplitQueue> q = queue_regs_[i].ready
                               ? SplitQueue::create(memory_, queue_regs_[i].config, max_sizes_[i], features)
                               : Failure{"it is not ready"};
    if (!q) {
      warn_guest(cat(name_, ": queue ", i, " cannot be used: ", q.error(), "; the device needs a reset"));
      needs_reset_ = true;
      interrupt_.signal_config();
      return;
    }
    queues.push_back(*q);
  }
  uint64_t acked = driver_features_;
  // The queues now belong to the event thread. Buffers the driver placed before
  // DRIVER_OK are processed right away (their notification may have come first).
  loop_.post([this, queues = std::move(queues), acked]() mutable {
    queues_ = std::move(queues);
    active_ = true;
    device_->activate(queues_, interrupt_, acked);
    for (uint16_t i = 0; i < queues_.size(); ++i) device_->process_queue(i);
    after_processing();
  });
  log::debug(cat(name_, ": activated with features ", hex(acked)));
}

void MmioTransport::reset() {
  // 2.4: after reset the device uses no buffers. The event thread stops the
  // device before the registers are cleared; the vCPU waits for it.
  loop_.run_sync([this] { quiesce(); });
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  for (auto& q : queue_regs_) q = QueueRegs{};
  interrupt_.clear();
  needs_reset_ = false;
}

void MmioTransport::on_notify(uint16_t queue) {
  uint64_t count;
  ssize_t ignored = ::read(notify_fds_[queue].get(), &count, sizeof(count));
  (void)ignored;
  if (!active_) return;
  device_->process_queue(queue);
  after_processing();
}

void MmioTransport::after_processing() {
  for (const SplitQueue& q : queues_) {
    if (q.broken() && !needs_reset_.exchange(true)) {
      // 2.1.2: set DEVICE_NEEDS_RESET and tell the driver with a config-change interrupt.
      interrupt_.signal_config();
      return;
    }
  }
}

void MmioTransport::save_state(snapshot::StateWriter& out) const {
  snapshot::StateWriter s;
  std::lock_guard<std::mutex> lock(mu_);
  s.u32(device_->device_type());
  s.u32(status_);
  s.boolean(needs_reset_.load());
  s.u32(device_features_sel_);
  s.u32(driver_features_sel_);
  s.u64(driver_features_);
  s.u32(queue_sel_);
  s.u32(config_generation_.load());
  s.u32(interrupt_.status());
  s.u16(static_cast<uint16_t>(queue_regs_.size()));
  for (const QueueRegs& q : queue_regs_) {
    s.u16(q.config.size);
    s.u64(q.config.desc);
    s.u64(q.config.driver);
    s.u64(q.config.device);
    s.boolean(q.ready);
  }
  s.boolean(active_);
  if (active_) {
    for (const SplitQueue& q : queues_) q.save_state(s);
  }
  snapshot::StateWriter device;
  device_->save_state(device);
  s.bytes(device.data());
  out.bytes(s.data());
}

void MmioTransport::restore_state(snapshot::StateReader& outer) {
  std::vector<uint8_t> blob = outer.bytes("virtio-mmio transport state", kMaxSavedState);
  snapshot::StateReader in(blob, cat(outer.context(), ": virtio device '", name_, "'"));
  std::lock_guard<std::mutex> lock(mu_);
  if (status_ != 0 || active_) fail(in.context(), ": restored into a transport a driver already set up");
  uint32_t type = in.u32("device type");
  if (type != device_->device_type()) {
    in.invalid("device type", cat(type, " saved, but this device is of type ", device_->device_type()));
  }
  uint32_t status = in.u32("status");
  if (std::find(std::begin(kReachableStatus), std::end(kReachableStatus), status & ~kStatusFailed) ==
      std::end(kReachableStatus)) {
    in.invalid("status", cat(hex(status), " is not a state the driver handshake reaches"));
  }
  bool needs_reset = in.boolean("needs reset");
  if (needs_reset && !(status & kStatusDriverOk)) in.invalid("needs reset", "set before DRIVER_OK");
  uint32_t device_features_sel = in.u32("device features select");
  uint32_t driver_features_sel = in.u32("driver features select");
  uint64_t driver_features = in.u64("driver features");
  // Before FEATURES_OK the driver may have written anything; FEATURES_OK checks it.
  if (status & kStatusFeaturesOk) {
    if (driver_features & ~offered_features_) {
      in.invalid("driver features", cat(hex(driver_features), " include ", hex(driver_features & ~offered_features_),
                                        ", which this device does not offer (it offers ", hex(offered_features_), ")"));
    }
    if (!(driver_features & bit(kFeatureVersion1))) in.invalid("driver features", "VIRTIO_F_VERSION_1 not accepted");
  }
  uint32_t queue_sel = in.u32("queue select");
  uint32_t config_generation = in.u32("config generation");
  uint32_t interrupt_status = in.u32("interrupt status");
  if (interrupt_status & ~(mmio::kInterruptUsedBuffer | mmio::kInterruptConfigChange)) {
    in.invalid("interrupt status", cat(hex(interrupt_status), " has bits other than used buffer and config change"));
  }
  uint16_t count = in.u16("queue count");
  if (count != queue_regs_.size()) in.invalid("queue count", cat(count, ", but this device has ", queue_regs_.size()));
  std::vector<QueueRegs> regs(count);
  for (QueueRegs& q : regs) {
    // Any value a driver may write before DRIVER_OK; activation checks them.
    q.config.size = in.u16("queue register size");
    q.config.desc = in.u64("queue register descriptor address");
    q.config.driver = in.u64("queue register driver address");
    q.config.device = in.u64("queue register device address");
    q.ready = in.boolean("queue ready");
  }
  bool active = in.boolean("active");
  if (active && !(status & kStatusDriverOk)) in.invalid("active", "the device is active without DRIVER_OK");
  if (!active && (status & kStatusDriverOk) && !needs_reset) {
    in.invalid("active", "DRIVER_OK is set but the device is neither active nor needs a reset");
  }
  std::vector<SplitQueue> queues;
  if (active) queues = restore_queues(in, regs, driver_features);
  std::vector<uint8_t> device_blob = in.bytes("device state", kMaxSavedState);
  snapshot::StateReader device(device_blob, cat(in.context(), " device state"));
  device_->restore_state(device);
  device.expect_end();
  in.expect_end();

  status_ = status;
  needs_reset_ = needs_reset;
  device_features_sel_ = device_features_sel;
  driver_features_sel_ = driver_features_sel;
  driver_features_ = driver_features;
  queue_sel_ = queue_sel;
  config_generation_ = config_generation;
  queue_regs_ = std::move(regs);
  interrupt_.restore_status(interrupt_status);
  if (!active) return;
  queues_ = std::move(queues);
  active_ = true;
  device_->activate(queues_, interrupt_, driver_features_);
  loop_.post([this] {
    if (!active_) return;
    for (uint16_t i = 0; i < queues_.size(); ++i) device_->process_queue(i);
    after_processing();
  });
  log::debug(cat(name_, ": restored active with features ", hex(driver_features_)));
}

std::vector<SplitQueue> MmioTransport::restore_queues(snapshot::StateReader& in, const std::vector<QueueRegs>& regs,
                                                      uint64_t driver_features) {
  std::vector<SplitQueue> queues;
  QueueFeatures features = queue_features(driver_features);
  for (size_t i = 0; i < regs.size(); ++i) {
    if (!regs[i].ready) in.invalid("queue ready", cat("queue ", i, " is in use but not ready"));
    try {
      queues.push_back(SplitQueue::restore_state(in, memory_, max_sizes_[i]));
    } catch (const Error& e) {
      fail(e.what(), " (queue ", i, ")");
    }
    const SplitQueue& q = queues.back();
    if (q.config() != regs[i].config) in.invalid("queue configuration", cat("queue ", i, " differs from its registers"));
    if (q.features().event_idx != features.event_idx || q.features().indirect != features.indirect) {
      in.invalid("queue features", cat("queue ", i, " does not match the driver features ", hex(driver_features)));
    }
  }
  return queues;
}

std::string MmioTransport::describe_state() const {
  std::string text = cat(name_, ": status ", hex(status_), ", interrupt status ", interrupt_.status(), ", ",
                         interrupt_.raised(), " interrupts raised");
  if (!active_) return text + ", not active";
  for (size_t i = 0; i < queues_.size(); ++i) text += cat("; queue ", i, ": ", queues_[i].describe_state());
  std::string device = device_->describe_state();
  if (!device.empty()) text += "; " + device;
  return text;
}

}  // namespace ember::virtio
