// A virtio-vsock device on real virtqueues, driven the way a guest driver does,
// with Unix sockets standing in for host processes. Shared by the vsock tests.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/virtio_driver.h"
#include "virtio/vsock/vsock_device.h"

namespace ember::virtio::vsock::vsock_test {

using test::Buffer;
constexpr uint64_t kCid = 3;
constexpr uint16_t kQ = 64;

inline std::string temp_path(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp ? tmp : "/tmp") + "/ember-vsock-" + std::to_string(::getpid()) + "-" + name;
}

inline UniqueFd unix_listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  ::unlink(path.c_str());
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::listen(fd.get(), 8), 0);
  return fd;
}

inline UniqueFd unix_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

inline std::string read_some(int fd) {
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Whether the other end of `fd` closed it within `wait_ms`, with nothing more to read.
inline bool peer_closed(int fd, int wait_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, wait_ms) <= 0) return false;
  char c;
  ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  // ECONNRESET: closed with bytes we sent still unread.
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

struct Packet {
  PacketHeader h;
  std::string data;
};

// The guest side of a vsock device: its socket path, memory and three queues' rings.
struct GuestRings {
  explicit GuestRings(const std::string& socket_name) : uds(temp_path(socket_name)) {}
  // The tests' listeners for guest connections (uds + "_PORT") are not the device's to remove.
  ~GuestRings() {
    std::error_code ec;
    std::filesystem::path base(uds);
    const std::string prefix = base.filename().string() + "_";
    for (const auto& entry : std::filesystem::directory_iterator(base.parent_path(), ec)) {
      if (entry.path().filename().string().starts_with(prefix)) std::filesystem::remove(entry.path(), ec);
    }
  }
  GuestRings(const GuestRings&) = delete;
  GuestRings& operator=(const GuestRings&) = delete;
  std::string uds;
  GuestMemory memory = test::small_guest_memory(8);
  test::VirtioDriver rx{memory, kQ, 0x10000, 0x100000};
  test::VirtioDriver tx{memory, kQ, 0x40000, 0x400000};
  test::VirtioDriver ev{memory, kQ, 0x70000, 0x700000};
};

struct Harness : GuestRings {
  UniqueFd irqfd{::eventfd(0, EFD_NONBLOCK)};
  Interrupt interrupt{irqfd.get()};
  EventLoop loop;
  std::unique_ptr<VsockDevice> device;
  std::vector<SplitQueue> queues;
  std::map<uint16_t, Buffer> rx_buffers;
  std::vector<Buffer> rx_pool;
  size_t rx_next = 0;
  uint16_t rx_seen = 0;
  size_t rx_returned_empty = 0;  // rx buffers given back unused (length 0)
  // tx buffers are reused: send() hands each chain to the device at once.
  Buffer tx_header = tx.alloc(kHeaderSize);
  Buffer tx_data = tx.alloc(kMaxPayload + 1);

  explicit Harness(const std::function<void(VsockDeviceOptions&)>& tweak = {}) : GuestRings("v.sock") {
    VsockDeviceOptions o;
    o.guest_cid = kCid;
    o.uds_path = uds;
    o.buf_alloc = 8192;
    o.queue_size = kQ;
    if (tweak) tweak(o);
    device = std::make_unique<VsockDevice>(o, loop);
    for (auto* d : {&rx, &tx, &ev}) queues.push_back(*SplitQueue::create(memory, d->config(), kQ, {false, false}));
    device->activate(queues, interrupt, 0);
    for (int i = 0; i < 16; ++i) rx_pool.push_back(rx.alloc(kHeaderSize + 4096));
  }
  ~Harness() {
    device->reset();
    device.reset();
  }

  void give_rx(int n) {
    for (int i = 0; i < n; ++i) {
      Buffer b = rx_pool[rx_next++ % rx_pool.size()];
      rx_buffers[rx.add({}, {b})] = b;
    }
    device->process_queue(kRxQueue);
  }
  void send(PacketHeader h, const std::string& data = "") {
    std::memcpy(tx.bytes(tx_header).data(), &h, kHeaderSize);
    std::vector<Buffer> bufs{tx_header};
    if (!data.empty()) {
      Buffer db{tx_data.gpa, static_cast<uint32_t>(data.size())};
      std::memcpy(tx.bytes(db).data(), data.data(), data.size());
      bufs.push_back(db);
    }
    tx.add(bufs, {});
    device->process_queue(kTxQueue);
  }
  // Packets the device put on the rx queue since the last call.
  std::vector<Packet> received() {
    std::vector<Packet> out;
    for (; rx_seen != rx.used_idx(); ++rx_seen) {
      auto used = rx.used(rx_seen);
      Buffer b = rx_buffers.at(static_cast<uint16_t>(used.id));
      if (used.len == 0) {
        ++rx_returned_empty;
        continue;
      }
      Packet p;
      std::memcpy(&p.h, rx.bytes(b).data(), kHeaderSize);
      EXPECT_EQ(used.len, kHeaderSize + p.h.len);
      p.data.assign(reinterpret_cast<char*>(rx.bytes(b).data()) + kHeaderSize, p.h.len);
      out.push_back(p);
    }
    return out;
  }
  PacketHeader packet(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len = 0, uint32_t flags = 0) {
    PacketHeader h = make_header(kCid, dst_port, src_port, op, flags, len);
    h.src_cid = kCid, h.dst_cid = kHostCid, h.src_port = src_port, h.dst_port = dst_port;  // from the guest
    h.buf_alloc = 65536;
    return h;
  }
  // The guest's CREDIT_UPDATE for its connection from `guest_port` to host port `port`.
  void grant_credit(uint32_t guest_port, uint32_t port, uint32_t buf_alloc, uint32_t fwd_cnt) {
    PacketHeader credit = packet(kOpCreditUpdate, guest_port, port);
    credit.buf_alloc = buf_alloc;
    credit.fwd_cnt = fwd_cnt;
    send(credit);
  }
  uint64_t metric(const std::string& name) {
    uint64_t v = ~0ull;
    device->report_metrics([&](std::string_view n, uint64_t value) {
      if (n == name) v = value;
    });
    return v;
  }
};

}  // namespace ember::virtio::vsock::vsock_test
