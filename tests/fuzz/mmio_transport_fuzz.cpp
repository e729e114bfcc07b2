// libFuzzer target: a hostile virtio-mmio driver. The first byte picks the device
// (virtio-blk on a memfd with io_uring or the sync engine, virtio-net on a socketpair,
// vsock on a Unix socket); the rest is a program of register accesses, ring and guest
// memory writes, host-side traffic and event-loop rounds. The transport is destroyed
// at the end with whatever is still in flight (the stop order's device half).
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <vector>

#include "base/event_loop.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/unit/mmio_driver.h"
#include "tests/unit/virtio_driver.h"
#include "virtio/blk/block_device.h"
#include "virtio/io_uring_ring.h"
#include "virtio/mmio_transport.h"
#include "virtio/net/net_device.h"
#include "virtio/vsock/vsock_device.h"

namespace {

using namespace ember;
using namespace ember::virtio;
using fuzz::FuzzInput;

constexpr uint64_t kMemBytes = 1 << 20;
// Queue q's rings (and VirtioDriver's indirect tables) at kRingBase + q * kRingStride;
// buffers in [kDataBase, kMemBytes).
constexpr uint64_t kRingBase = 0x10000;
constexpr uint64_t kRingStride = 0x18000;
constexpr uint64_t kDataBase = 0x80000;
constexpr uint16_t kQueueSize = 64;
constexpr uint32_t kGuestPort = 1024;  // the host listens at <uds>_1024 for guest connections
constexpr size_t kMaxHostStreams = 8;

GuestMemory& memory() {
  static GuestMemory m = test::small_guest_memory(kMemBytes >> 20);
  return m;
}

// One device behind the transport, with the host side of its backend. Members are
// destroyed in reverse: the transport first, then the backends, the ring, the loop.
struct Rig {
  EventLoop loop;
  std::unique_ptr<IoUringRing> ring;
  std::optional<fuzz::MemFile> disk;
  UniqueFd tap_peer;
  std::string uds;
  UniqueFd guest_port_listener;
  std::vector<UniqueFd> host_streams;
  std::unique_ptr<MmioTransport> transport;

  explicit Rig(uint8_t selector) {
    std::unique_ptr<VirtioDevice> device;
    switch (selector % 4) {
      case 0:
      case 1: {
        if (selector % 4 == 0) use_ring();
        disk.emplace(std::span<const uint8_t>(), 64 * 1024);
        bool read_only = (selector >> 2) & 1;
        device = std::make_unique<blk::BlockDevice>(
            blk::BlockDeviceOptions{"disk0", disk->path(), read_only, false, kQueueSize}, ring.get());
        break;
      }
      case 2: {
        use_ring();
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
        tap_peer.reset(fds[1]);
        net::NetDeviceOptions o;
        o.id = "eth0";
        o.mac = {0x06, 1, 2, 3, 4, 5};
        o.queue_size = kQueueSize;
        o.max_tx_in_flight = 4;
        o.set_offloads = [](int, unsigned) { return 0; };
        device = std::make_unique<net::NetDevice>(o, UniqueFd(fds[0]), *ring);
        break;
      }
      default: {
        uds = fuzz::temp_socket_path("v.sock");
        guest_port_listener = fuzz::unix_listen(uds + "_" + std::to_string(kGuestPort));
        vsock::VsockDeviceOptions o;
        o.uds_path = uds;
        o.buf_alloc = 8192;
        o.queue_size = kQueueSize;
        device = std::make_unique<vsock::VsockDevice>(o, loop);
      }
    }
    if (ring) ring->seal();  // as VirtioDevices does once every device added its files
    transport = std::make_unique<MmioTransport>(std::move(device), memory(), loop, "fuzzed device");
  }
  ~Rig() {
    transport.reset();
    if (!uds.empty()) ::unlink((uds + "_" + std::to_string(kGuestPort)).c_str());
  }
  void use_ring() {
    ring = std::make_unique<IoUringRing>(64);
    loop.add(ring->event_fd(), [r = ring.get()] { r->reap(); });
  }

  // What the host does to the backend: the disk shrinks, the tap delivers or
  // drains frames, host processes connect, write, hang up.
  void host_acts(FuzzInput& in) {
    uint8_t what = in.u8();
    if (disk) {
      int ignored = ::ftruncate(disk->fd.get(), static_cast<off_t>(in.u16()) * 512);
      (void)ignored;
    } else if (tap_peer.valid()) {
      if (what & 1) {
        fuzz::send_some(tap_peer.get(), in.bytes(in.u16() % 2048));
      } else {
        fuzz::drain(tap_peer.get());
      }
    } else {
      vsock_host_acts(what, in);
    }
  }
  void vsock_host_acts(uint8_t what, FuzzInput& in) {
    size_t k = in.u8();
    switch (what % 4) {
      case 0:  // a host process connects (and usually sends its CONNECT line)
        if (host_streams.size() < kMaxHostStreams) {
          UniqueFd fd = fuzz::unix_connect(uds);
          if (fd.valid()) host_streams.push_back(std::move(fd));
        }
        break;
      case 1:  // the process listening for guest connections accepts one
        if (host_streams.size() < kMaxHostStreams) {
          UniqueFd fd = fuzz::unix_accept(guest_port_listener.get());
          if (fd.valid()) host_streams.push_back(std::move(fd));
        }
        break;
      case 2:
        if (!host_streams.empty()) fuzz::send_some(host_streams[k % host_streams.size()].get(), in.bytes(in.u8()));
        break;
      default:
        if (!host_streams.empty()) {
          auto it = host_streams.begin() + static_cast<ptrdiff_t>(k % host_streams.size());
          if (what & 4) {
            ::shutdown(it->get(), SHUT_WR);
          } else {
            host_streams.erase(it);
          }
        }
    }
  }
};

// A guest address: mostly inside guest memory, sometimes anywhere.
uint64_t guest_address(FuzzInput& in) {
  uint8_t how = in.u8();
  if (how < 0xe0) return in.u32() % kMemBytes;
  return in.u64();
}

class Driver {
 public:
  Driver(Rig& rig) : rig_(rig), regs_(*rig.transport) {}

  void step(FuzzInput& in) {
    switch (in.u8() % 15) {
      case 0: regs_.wr((in.u8() % 64) * 4, in.u32()); break;
      case 1: (void)regs_.rd((in.u8() % 64) * 4); break;
      case 2: odd_access(in); break;
      case 3: regs_.negotiate(offered() & (in.u64() | bit(kFeatureVersion1))); break;
      case 4: setup_queue(in); break;
      case 5: setup_queue_raw(in); break;
      case 6: regs_.driver_ok(); break;
      case 7: add_chain(in); break;
      case 8: write_memory(in); break;
      case 9: poke_ring(in); break;
      case 10: notify(in); break;
      case 11: rig_.loop.run_once(0); break;
      case 12: rig_.host_acts(in); break;
      case 13: regs_.wr(mmio::kStatus, 0); break;
      default: regs_.wr(mmio::kInterruptAck, regs_.rd(mmio::kInterruptStatus)); break;
    }
  }

 private:
  uint64_t offered() {
    regs_.wr(mmio::kDeviceFeaturesSel, 1);
    uint64_t high = regs_.rd(mmio::kDeviceFeatures);
    regs_.wr(mmio::kDeviceFeaturesSel, 0);
    return high << 32 | regs_.rd(mmio::kDeviceFeatures);
  }
  // Any width at any offset, registers and config space.
  void odd_access(FuzzInput& in) {
    uint64_t offset = in.u16() % 0x200;
    uint8_t how = in.u8();
    uint8_t buf[8] = {};
    std::span<uint8_t> data(buf, size_t{1} << (how % 4));
    if (how & 4) {
      auto src = in.bytes(data.size());
      std::copy(src.begin(), src.end(), buf);
      rig_.transport->write(offset, data);
    } else {
      rig_.transport->read(offset, data);
    }
  }
  // As Linux lays out a queue, at this queue's fixed place.
  void setup_queue(FuzzInput& in) {
    uint16_t q = in.u8() % (rig_.transport->queue_count() + 1);
    uint16_t size = static_cast<uint16_t>(1u << (in.u8() % 7));
    if (q >= drivers_.size()) drivers_.resize(q + 1);
    drivers_[q] = std::make_unique<test::VirtioDriver>(memory(), size, kRingBase + q * kRingStride, kDataBase);
    regs_.setup_queue(drivers_[q]->config(), q);
  }
  void setup_queue_raw(FuzzInput& in) {
    QueueConfig c;
    uint32_t q = in.u8();
    c.size = in.u16();
    c.desc = guest_address(in);
    c.driver = guest_address(in);
    c.device = guest_address(in);
    regs_.setup_queue(c, q);
    if (in.u8() & 1) regs_.wr(mmio::kQueueReady, 0);
  }
  test::VirtioDriver* driver(FuzzInput& in) {
    if (drivers_.empty()) return nullptr;
    return drivers_[in.u8() % drivers_.size()].get();
  }
  // A chain of readable then writable buffers, direct or through an indirect table.
  void add_chain(FuzzInput& in) {
    test::VirtioDriver* d = driver(in);
    uint8_t shape = in.u8();
    if (!d) return;
    auto buffers = [&](unsigned n) {
      std::vector<test::Buffer> out;
      for (unsigned i = 0; i < n; ++i) {
        uint64_t gpa = shape & 0x20 ? guest_address(in) : kDataBase + (in.u16() * 8ull) % (kMemBytes - kDataBase);
        out.push_back({gpa, in.u16()});
      }
      return out;
    };
    std::vector<test::Buffer> readable = buffers(shape & 3);
    std::vector<test::Buffer> writable = buffers((shape >> 2) & 3);
    d->add(readable, writable, (shape & 0x10) != 0);
  }
  void write_memory(FuzzInput& in) {
    uint64_t gpa = in.u32() % kMemBytes;
    auto src = in.bytes(in.u8());
    size_t n = std::min<uint64_t>(src.size(), kMemBytes - gpa);
    std::memcpy(memory().span(gpa, n, "fuzz bytes").data(), src.data(), n);
  }
  // What a broken or hostile driver does to its own rings.
  void poke_ring(FuzzInput& in) {
    test::VirtioDriver* d = driver(in);
    uint8_t what = in.u8();
    uint16_t value = in.u16();
    if (!d) return;
    switch (what % 5) {
      case 0: d->set_avail_idx(value); break;
      case 1: d->set_used_event(value); break;
      case 2: d->set_avail_flags(value); break;
      case 3: d->publish(value); break;
      default: {
        Descriptor desc{guest_address(in), in.u32(), in.u16(), in.u16()};
        d->write_desc(d->desc_table(), value % d->config().size, desc);
      }
    }
  }
  void notify(FuzzInput& in) {
    uint8_t v = in.u8();
    regs_.wr(mmio::kQueueNotify, v < 0xf0 ? v % 4 : in.u32());
  }

  Rig& rig_;
  test::MmioDriver regs_;
  std::vector<std::unique_ptr<test::VirtioDriver>> drivers_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  if (size < 1) return 0;
  FuzzInput in(data, size);
  fuzz::zero_guest_memory(memory());
  Rig rig(in.u8());
  Driver driver(rig);
  for (int steps = 0; !in.empty() && steps < 256; ++steps) driver.step(in);
  (void)rig.transport->describe_state();
  return 0;
}
