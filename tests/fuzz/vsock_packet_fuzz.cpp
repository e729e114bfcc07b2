// libFuzzer target: vsock packets from a hostile guest. The first byte picks the
// layer: the Connection state machine and header checks alone (with the credit
// invariants checked after every packet), or the device's tx path on real queues
// with host processes on Unix sockets (every packet the device puts on the rx
// queue must be well formed and fit its buffer).
#include <memory>
#include <optional>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/vsock/connection.h"
#include "virtio/vsock/packet.h"
#include "virtio/vsock/vsock_device.h"

namespace {

using namespace ember;
using namespace ember::virtio;
using namespace ember::virtio::vsock;
using fuzz::FuzzInput;

constexpr uint64_t kCid = 3;
constexpr uint16_t kQ = 16;
constexpr uint32_t kHostPort = 1024;  // a host process listens at <uds>_1024
constexpr uint32_t kRxBuffer = kHeaderSize + 256;

// The guest's header: as sent (raw), or with the addressing fixed up so that it
// reaches the connection logic and only the rest is hostile.
PacketHeader guest_header(FuzzInput& in) {
  uint8_t how = in.u8();
  PacketHeader h = in.take<PacketHeader>();
  if (how & 1) {
    h.src_cid = kCid;
    h.dst_cid = kHostCid;
    h.type = kTypeStream;
  }
  if (how & 2) h.dst_port = kHostPort;
  if (how & 4) h.op = static_cast<uint16_t>(h.op % 8);
  if (how & 8) h.len %= 512;
  return h;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// The state machine and header checks on their own.
void fuzz_connection(FuzzInput& in) {
  uint32_t buf_alloc = in.u32() % (1 << 20);
  auto fresh = [&] {
    return std::make_optional<Connection>(kHostPort, 5000, buf_alloc,
                                          in.u8() & 1 ? Connection::State::Connecting : Connection::State::Established);
  };
  std::optional<Connection> c = fresh();
  while (!in.empty()) {
    switch (in.u8() % 4) {
      case 0: {
        PacketHeader h = guest_header(in);
        size_t payload = in.u32() % (2 * kMaxPayload);
        Result<void, PacketError> valid = validate_tx(h, kCid, payload);
        if (!valid) {
          (void)describe(valid.error());
          (void)answer_with_rst(valid.error());
          break;
        }
        check(h.len <= payload && h.len <= kMaxPayload);
        uint32_t before = c->buffered();
        Reaction r = c->on_packet(h);
        check(!(r.reset && r.drop));
        check(!(r.reset || r.drop) || !r.forward_data);
        if (r.forward_data) check(h.op == kOpRw && c->buffered() == before + h.len);
        if (r.reset || r.drop) c = fresh();
        break;
      }
      case 1: c->on_forwarded(std::min(in.u32(), c->buffered())); break;
      case 2: c->on_sent(std::min(in.u32(), c->send_credit())); break;
      default: {
        if (in.u8() & 1) c->on_host_eof();
        PacketHeader out = make_header(kCid, kHostPort, 5000, kOpCreditUpdate);
        if (c->credit_update_due()) c->stamp(out);
        check(out.dst_cid == kCid && out.src_cid == kHostCid);
      }
    }
    // Our credit bounds what the guest may have us hold (5.10.6.3).
    check(c->buffered() <= buf_alloc);
    (void)c->wants_host_data();
    (void)c->host_write_done();
    (void)c->finished();
  }
}

// The device on its three queues, as vsock_harness.h drives it, but on hostile bytes.
struct DeviceRig {
  std::string uds = fuzz::temp_socket_path("p.sock");
  GuestMemory& memory;
  test::VirtioDriver rx{memory, kQ, 0x10000, 0x100000};
  test::VirtioDriver tx{memory, kQ, 0x40000, 0x200000};
  test::VirtioDriver ev{memory, kQ, 0x70000, 0x300000};
  UniqueFd irqfd = make_eventfd("fuzz irq");
  Interrupt interrupt{irqfd.get()};
  UniqueFd host_listener = fuzz::unix_listen(uds + "_" + std::to_string(kHostPort));
  std::vector<UniqueFd> host_streams;
  EventLoop loop;
  std::vector<SplitQueue> queues;
  std::unique_ptr<VsockDevice> device;
  std::vector<test::Buffer> rx_by_head = std::vector<test::Buffer>(kQ);
  uint16_t rx_seen = 0;
  uint16_t rx_added = 0;

  explicit DeviceRig(GuestMemory& m) : memory(m) {
    VsockDeviceOptions o;
    o.guest_cid = kCid;
    o.uds_path = uds;
    o.buf_alloc = 4096;
    o.queue_size = kQ;
    device = std::make_unique<VsockDevice>(o, loop);
    for (auto* d : {&rx, &tx, &ev}) queues.push_back(*SplitQueue::create(memory, d->config(), kQ, {}));
    device->activate(queues, interrupt, 0);
  }
  ~DeviceRig() {
    device->reset();
    device.reset();
    ::unlink((uds + "_" + std::to_string(kHostPort)).c_str());
  }

  void send(FuzzInput& in) {
    PacketHeader h = guest_header(in);
    auto payload = in.bytes(in.u16() % 1024);
    test::Buffer header{0x200000, kHeaderSize};
    std::memcpy(memory.span(header.gpa, kHeaderSize, "header").data(), &h, kHeaderSize);
    std::vector<test::Buffer> bufs{header};
    if (!payload.empty()) {
      test::Buffer data{0x201000, static_cast<uint32_t>(payload.size())};
      std::memcpy(memory.span(data.gpa, data.len, "payload").data(), payload.data(), payload.size());
      bufs.push_back(data);
    }
    tx.add(bufs, {});
    device->process_queue(kTxQueue);
  }
  // One single-descriptor chain each, so the head is the slot and, with fewer than kQ
  // outstanding, no two buffers the device holds overlap.
  void give_rx(unsigned n) {
    for (unsigned i = 0; i < n && static_cast<uint16_t>(rx_added - rx.used_idx()) < kQ; ++i, ++rx_added) {
      test::Buffer b{0x100000 + rx_added % kQ * 0x1000ull, kRxBuffer};
      rx_by_head[rx.add({}, {b})] = b;
    }
    device->process_queue(kRxQueue);
  }
  // Every packet the device gave the guest fits its buffer and says how long it is.
  void check_rx() {
    for (; rx_seen != rx.used_idx(); ++rx_seen) {
      auto used = rx.used(rx_seen);
      check(used.id < kQ);
      if (used.len == 0) continue;
      test::Buffer b = rx_by_head[used.id];
      PacketHeader h = memory.read_obj<PacketHeader>(b.gpa, "rx header");
      check(used.len == kHeaderSize + h.len && used.len <= b.len);
      check(h.src_cid == kHostCid && h.dst_cid == kCid && h.type == kTypeStream);
    }
  }
  void host_acts(FuzzInput& in) {
    uint8_t what = in.u8();
    size_t k = in.u8();
    if (what % 3 == 0 && host_streams.size() < 8) {
      UniqueFd fd = what & 4 ? fuzz::unix_connect(uds) : fuzz::unix_accept(host_listener.get());
      if (fd.valid()) host_streams.push_back(std::move(fd));
    } else if (!host_streams.empty()) {
      int fd = host_streams[k % host_streams.size()].get();
      if (what % 3 == 1) {
        fuzz::send_some(fd, in.bytes(in.u8()));
      } else if (what & 4) {
        fuzz::drain(fd);
      } else {
        host_streams.erase(host_streams.begin() + static_cast<ptrdiff_t>(k % host_streams.size()));
      }
    }
  }
};

GuestMemory& memory() {
  static GuestMemory m = test::small_guest_memory(4);
  return m;
}

void fuzz_device(FuzzInput& in) {
  fuzz::zero_guest_memory(memory());
  DeviceRig rig(memory());
  for (int steps = 0; !in.empty() && steps < 128; ++steps) {
    switch (in.u8() % 4) {
      case 0: rig.send(in); break;
      case 1: rig.give_rx(in.u8() % 4 + 1); break;
      case 2: rig.loop.run_once(0); break;
      default: rig.host_acts(in); break;
    }
    rig.check_rx();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size < 1) return 0;
  FuzzInput in(data, size);
  if (in.u8() & 1) {
    fuzz_device(in);
  } else {
    fuzz_connection(in);
  }
  return 0;
}
