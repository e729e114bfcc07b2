// End-to-end virtio-vsock with the hybrid Unix-socket host side: one guest runs
// guest/tools/vsock-io while the test, as host processes, connects to its
// ports through uds_path ("CONNECT 5000") and serves <uds_path>_6000/_6001.
// Covered: 16 MiB echoed both ways with a byte-exact check, 64 concurrent
// connections, and peers vanishing mid-stream on either side without ending
// the VM. Run through tests/e2e/run-e2e.sh.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// The same data stream as vsock-io: xorshift64 words, little-endian bytes.
class Stream {
 public:
  explicit Stream(uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ull + 1) {}
  void fill(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (used_ == 8) {
        state_ ^= state_ << 13;
        state_ ^= state_ >> 7;
        state_ ^= state_ << 17;
        word_ = state_;
        used_ = 0;
      }
      out[i] = static_cast<uint8_t>(word_ >> (8 * used_++));
    }
  }

 private:
  uint64_t state_, word_ = 0;
  unsigned used_ = 8;
};

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_un address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  return a;
}

void set_timeout(int fd, double seconds) {
  timeval tv{static_cast<time_t>(seconds), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

Fd listen_at(const std::string& path) { return Fd(unix_listen(path, 128)); }

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Connects to guest `port` through the VMM's socket, retrying while the guest's
// listener is not up yet (the VMM then closes our connection without "OK").
Fd connect_guest(const std::string& uds, uint32_t port, double timeout) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < deadline) {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a = address(uds);
    if (::connect(fd.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      set_timeout(fd.fd, 60 * time_scale());
      std::string req = "CONNECT " + std::to_string(port) + "\n", line;
      write_all(fd.fd, reinterpret_cast<const uint8_t*>(req.data()), req.size());
      char c;
      while (::read(fd.fd, &c, 1) == 1 && c != '\n') line += c;
      if (line.rfind("OK ", 0) == 0) return fd;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  return Fd();
}

// Sends `bytes` of stream `seed` and checks the echo byte for byte; "" on success.
std::string echo_check(int fd, size_t bytes, uint64_t seed) {
  std::thread writer([&] {
    Stream s(seed);
    std::vector<uint8_t> buf(65536);
    for (size_t sent = 0; sent < bytes;) {
      size_t n = std::min(buf.size(), bytes - sent);
      s.fill(buf.data(), n);
      if (!write_all(fd, buf.data(), n)) break;
      sent += n;
    }
    ::shutdown(fd, SHUT_WR);
  });
  Stream s(seed);
  std::vector<uint8_t> in(65536), want(65536);
  size_t got = 0;
  std::string error;
  for (;;) {
    ssize_t n = ::read(fd, in.data(), in.size());
    if (n <= 0) {
      if (n < 0) error = "read failed after " + std::to_string(got) + " bytes: " + std::strerror(errno);
      break;
    }
    s.fill(want.data(), static_cast<size_t>(n));
    if (std::memcmp(in.data(), want.data(), static_cast<size_t>(n)) != 0) {
      error = "echo differs after " + std::to_string(got) + " bytes";
      break;
    }
    got += static_cast<size_t>(n);
  }
  writer.join();
  if (error.empty() && got != bytes) error = "echo ended after " + std::to_string(got) + " of " + std::to_string(bytes);
  return error;
}

// Accepts on `listener` until `stop`, handing each connection to `serve` on its own thread.
class Server {
 public:
  Server(Fd listener, std::function<void(int)> serve) : listener_(std::move(listener)), serve_(std::move(serve)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
    for (auto& t : workers_) t.join();
  }
  int accepted() const { return accepted_; }

 private:
  void run() {
    while (!stop_) {
      pollfd p{listener_.fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = ::accept(listener_.fd, nullptr, nullptr);
      if (c < 0) continue;
      ++accepted_;
      workers_.emplace_back([this, c] {
        Fd fd(c);
        set_timeout(c, 120 * time_scale());
        serve_(c);
      });
    }
  }
  Fd listener_;
  std::function<void(int)> serve_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

void echo_back(int fd) {
  std::vector<uint8_t> buf(65536);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0 || !write_all(fd, buf.data(), static_cast<size_t>(n))) break;
  }
  ::shutdown(fd, SHUT_WR);
}

// Reads a little, then vanishes with the guest still sending.
void read_then_vanish(int fd) {
  std::vector<uint8_t> buf(65536);
  size_t got = 0;
  while (got < 65536) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
}

constexpr const char* kGuestScript =
    "vsock-io listen 5000 echo &\n"
    "vsock-io connect 2 6000 echo 16777216 7 && echo GUEST_ECHO_OK\n"
    "vsock-io connect 2 6001 send 8388608 9 || echo PEER_GONE_NOTICED\n"
    "vsock-io listen 5001 once && echo HOST_DONE\n"
    "vsock-io connect 2 6000 echo 65536 3 && echo AFTER_OK\n";

TEST(Vsock, EchoBothWaysManyConnectionsAndVanishingPeers) {
  fs::path dir = scratch_dir("vsock");
  std::string uds = (dir / "v.sock").string();
  Server echo_server(listen_at(uds + "_6000"), echo_back);
  Server vanishing(listen_at(uds + "_6001"), read_then_vanish);

  ProcessResult r;
  std::thread vm([&] {
    r = run_process({env("EMBER_BIN"), "--kernel", env("EMBER_GUEST_DIR") + "/bzImage", "--initrd",
                     env("EMBER_GUEST_DIR") + "/initramfs.cpio.gz", "--cmdline", cmdline(kGuestScript),
                     "--mem-mib", "256", "--vsock", "cid=3,uds=" + uds},
                    900 * time_scale());
  });

  // Host-initiated: 16 MiB through the guest's echo listener.
  {
    Fd fd = connect_guest(uds, 5000, 300 * time_scale());
    ASSERT_GE(fd.fd, 0) << "no OK from the guest's port 5000";
    EXPECT_EQ(echo_check(fd.fd, 16u << 20, 11), "");
  }
  // 64 at once.
  {
    std::vector<std::string> errors(64);
    std::vector<std::thread> threads;
    for (int i = 0; i < 64; ++i) {
      threads.emplace_back([&, i] {
        Fd fd = connect_guest(uds, 5000, 120 * time_scale());
        errors[i] = fd.fd < 0 ? "no OK" : echo_check(fd.fd, 128 * 1024, 100 + i);
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 64; ++i) EXPECT_EQ(errors[i], "") << "connection " << i;
  }
  // A host peer vanishing mid-stream ends only its connection.
  {
    Fd fd = connect_guest(uds, 5000, 60 * time_scale());
    ASSERT_GE(fd.fd, 0);
    std::vector<uint8_t> junk(64 * 1024, 0x5a);
    write_all(fd.fd, junk.data(), junk.size());
  }
  {
    Fd fd = connect_guest(uds, 5000, 60 * time_scale());
    ASSERT_GE(fd.fd, 0) << "no connection after a peer vanished";
    EXPECT_EQ(echo_check(fd.fd, 65536, 5), "");
  }
  {
    Fd done = connect_guest(uds, 5001, 600 * time_scale());  // lets the guest finish
    EXPECT_GE(done.fd, 0);
  }
  vm.join();
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  for (const char* marker : {"GUEST_ECHO_OK", "PEER_GONE_NOTICED", "HOST_DONE", "AFTER_OK", "EMBER_TEST_EXIT=0"}) {
    EXPECT_NE(r.out.find(marker), std::string::npos) << marker << "\n" << describe(r);
  }
  EXPECT_EQ(vanishing.accepted(), 1);
  EXPECT_FALSE(fs::exists(uds)) << "ember left its socket behind";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember::e2e
