// What every virtio device implements, so the transport never knows which
// device it serves (features, config space, queues, activate, reset, process).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/state_stream.h"
#include "virtio/interrupt.h"
#include "virtio/queue.h"

namespace ember::virtio {

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  // 5: device type (2 for block).
  virtual uint32_t device_type() const = 0;
  // Device-specific feature bits offered; the transport adds VERSION_1,
  // INDIRECT_DESC and EVENT_IDX, which its queue implements for every device.
  virtual uint64_t device_features() const = 0;
  // Device configuration space (4.2.2 offset 0x100 on). vCPU threads call these.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Maximum size of each queue; the count is the number of queues.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;

  // The rest runs on the VM's event thread only.
  // The driver set DRIVER_OK. `queues` stay valid until reset() returns.
  virtual void activate(std::span<SplitQueue> queues, Interrupt& interrupt, uint64_t acked_features) = 0;
  // Stops using the queues; in-flight requests are finished or abandoned first.
  virtual void reset() = 0;
  // Completes what is in flight, returning it to the used ring as usual, so that nothing
  // but the event thread will write guest memory (a VM being paused: the thread stops
  // next). Afterwards the device holds no popped chain (a snapshot saves the queues'
  // indexes, not chains). Devices that hold none have nothing to do.
  virtual void drain() {}
  // The driver notified queue `index`.
  virtual void process_queue(uint16_t index) = 0;

  // Snapshots: what the device itself keeps that the guest has seen (config space values,
  // negotiated state); the transport saves the registers and queues. Called while the
  // VM is paused (after drain(): no chain is held) or before the restored VM runs, with
  // the event loop not running. restore_state() comes before activate() and throws
  // Error naming the field (through `in`) when the saved state does not fit this device.
  virtual void save_state(snapshot::StateWriter& out) const { (void)out; }
  virtual void restore_state(snapshot::StateReader& in) { (void)in; }

  // Counters for the metrics file ("requests", "bytes_read", "errors", ...), each
  // reported through `sink`. Called from the metrics/API thread: devices keep
  // them in relaxed atomics.
  using MetricSink = std::function<void(std::string_view name, uint64_t value)>;
  virtual void report_metrics(const MetricSink& sink) const { (void)sink; }
  // What the device holds besides its queues (requests in flight, packets waiting),
  // for the state logged when ember is stopped. Event thread, or after it ended.
  virtual std::string describe_state() const { return {}; }
};

}  // namespace ember::virtio
