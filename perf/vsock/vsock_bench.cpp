// vsock throughput, ember against QEMU with the same guest in the same run, both ways:
// the guest (guest/tools/vsock-io) sends N bytes to host port 7000 R times, then receives
// N bytes on its port 7001 R times from the host, and reports MiB/s itself, so both VMMs
// are measured by the same guest-side clock. ember's host side is the hybrid Unix socket
// (<uds>_7000 to listen, <uds> with CONNECT to reach the guest); QEMU's is AF_VSOCK
// through vhost-vsock-device. Writes Markdown tables to stdout.
//   usage: vsock_bench --ember BIN --guest DIR [--qemu BIN] [--baseline BIN] [--bytes N] [--rounds R]
//                      [--json FILE]
// (--baseline: a second ember, e.g. a build of the commit before a change, measured alike
// between ember and QEMU, for ember / baseline; --json: every round's figures as JSON too)
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/util/base64.h"

namespace {

struct Options {
  std::string ember, qemu = "qemu-system-x86_64", guest, json, baseline;
  uint64_t bytes = 32ull << 20;
  int rounds = 3;
};

const std::string kCmdline = "console=ttyS0 reboot=k panic=1 pci=off quiet";
constexpr uint32_t kPort = 7000;      // guest -> host
constexpr uint32_t kGuestPort = 7001;  // host -> guest
constexpr uint32_t kCid = 3;

// Accepts connections until stopped and reads each to EOF (the guest then sees EOF).
class Sink {
 public:
  explicit Sink(int listener) : fd_(listener) {
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        std::vector<char> buf(1 << 16);
        while (::read(c, buf.data(), buf.size()) > 0) {}
        ::close(c);
      }
    });
  }
  ~Sink() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

 private:
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Connects to the guest's kGuestPort `count` times, one after the other, retrying while the
// guest does not listen yet, and sends `bytes` on each; then waits for the guest to close.
class Source {
 public:
  Source(std::function<int()> connect, uint64_t bytes, int count) {
    thread_ = std::thread([this, connect, bytes, count] {
      std::vector<char> buf(1 << 16, 'v');
      for (int i = 0; i < count && !stop_;) {
        int fd = connect();
        if (fd < 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        uint64_t left = bytes;
        while (left > 0 && !stop_) {
          ssize_t w = ::send(fd, buf.data(), std::min<uint64_t>(left, buf.size()), MSG_NOSIGNAL);
          if (w <= 0) break;
          left -= static_cast<uint64_t>(w);
        }
        ::shutdown(fd, SHUT_WR);
        while (!stop_) {  // the guest closes once it has read everything
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 100) == 0) continue;
          if (::read(fd, buf.data(), buf.size()) <= 0) break;
        }
        ::close(fd);
        ++i;
      }
    });
  }
  ~Source() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ember's hybrid vsock: connect to the Unix socket, "CONNECT <port>\n", answered "OK <n>\n".
int ember_connect(const std::string& uds) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds.c_str());
  std::string hello = "CONNECT " + std::to_string(kGuestPort) + "\n", line;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(hello.size())) {
    char c;
    pollfd p{fd, POLLIN, 0};
    while (line.size() < 32 && ::poll(&p, 1, 2000) == 1 && ::read(fd, &c, 1) == 1 && c != '\n') line += c;
  }
  if (line.rfind("OK ", 0) == 0) return fd;
  ::close(fd);
  return -1;
}

sockaddr_vm vsock_address(uint32_t cid, uint32_t port) {
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = cid;
  a.svm_port = port;
  return a;
}

int vsock_connect() {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM, 0);
  sockaddr_vm a = vsock_address(kCid, kGuestPort);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

int unix_listener(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd, 8) < 0) {
    perror(path.c_str());
    std::exit(1);
  }
  return fd;
}

int vsock_listener() {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM, 0);
  sockaddr_vm a = vsock_address(VMADDR_CID_ANY, kPort);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd, 8) < 0) {
    perror("AF_VSOCK listener (is vhost_vsock loaded?)");
    std::exit(1);
  }
  return fd;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

struct Rates {
  std::vector<double> to_host, to_guest;
};

// Runs the VM and returns the guest's MiB/s figures, each way.
Rates run(const std::string& command, uint64_t bytes) {
  std::string out;
  FILE* p = ::popen(("timeout 900 " + command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  Rates rates;
  std::regex sent("sent [0-9]+ bytes checksum [0-9a-f]+ in [0-9.]+ s: ([0-9.]+) MiB/s");
  for (std::sregex_iterator it(out.begin(), out.end(), sent), end; it != end; ++it) {
    rates.to_host.push_back(std::stod((*it)[1]));
  }
  std::regex received("received ([0-9]+) bytes in [0-9.]+ s: ([0-9.]+) MiB/s");
  for (std::sregex_iterator it(out.begin(), out.end(), received), end; it != end; ++it) {
    if (std::stoull((*it)[1]) == bytes) rates.to_guest.push_back(std::stod((*it)[2]));
    else std::cerr << "vsock_bench: the guest received " << (*it)[1] << " of " << bytes << " bytes\n";
  }
  if (rates.to_host.empty() || rates.to_guest.empty()) {
    std::cerr << "vsock_bench: figures missing from:\n" << command << "\n" << out << "\n";
  }
  return rates;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  // A connection the VMM closes must fail a send, not end the bench.
  ::signal(SIGPIPE, SIG_IGN);
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--ember") o.ember = next();
    else if (a == "--qemu") o.qemu = next();
    else if (a == "--guest") o.guest = next();
    else if (a == "--bytes") o.bytes = std::stoull(next());
    else if (a == "--rounds") o.rounds = std::stoi(next());
    else if (a == "--json") o.json = next();
    else if (a == "--baseline") o.baseline = next();
    else {
      std::cerr << "usage: vsock_bench --ember BIN --guest DIR [--qemu BIN] [--baseline BIN] [--bytes N] [--rounds R]"
                   " [--json FILE]\n";
      return 2;
    }
  }
  if (o.ember.empty() || o.guest.empty()) return 2;
  std::string script = "i=0; while [ $i -lt " + std::to_string(o.rounds) + " ]; do i=$((i+1)); vsock-io connect 2 " +
                       std::to_string(kPort) + " send " + std::to_string(o.bytes) + " $i; done\n" +
                       "vsock-io listen " + std::to_string(kGuestPort) + " receive " + std::to_string(o.rounds) + "\n";
  std::string append = kCmdline + " ember_test=" + ember::base64(script);
  std::string kernel = o.guest + "/bzImage", initrd = o.guest + "/initramfs.cpio.gz";
  const char* tmp = std::getenv("TMPDIR");
  std::string uds = std::string(tmp ? tmp : "/tmp") + "/vsock-bench.sock";

  auto run_ember = [&](const std::string& binary) {
    Sink sink(unix_listener(uds + "_" + std::to_string(kPort)));
    Source source([&] { return ember_connect(uds); }, o.bytes, o.rounds);
    return run(quote(binary) + " --kernel " + quote(kernel) + " --initrd " + quote(initrd) + " --mem-mib 256" +
                   " --cmdline " + quote(append) + " --vsock cid=" + std::to_string(kCid) + ",uds=" + uds,
               o.bytes);
  };
  Rates ember = run_ember(o.ember), baseline, qemu;
  if (!o.baseline.empty()) baseline = run_ember(o.baseline);
  {
    Sink sink(vsock_listener());
    Source source(vsock_connect, o.bytes, o.rounds);
    qemu = run(quote(o.qemu) + " -M microvm,acpi=off,x-option-roms=off,rtc=off -enable-kvm -cpu host -m 256" +
               " -nodefaults -no-user-config -nographic -no-reboot -serial stdio -device i8042 -kernel " +
               quote(kernel) + " -initrd " + quote(initrd) + " -append " + quote(append) +
               " -device vhost-vsock-device,guest-cid=" + std::to_string(kCid),
               o.bytes);
  }
  ::unlink((uds + "_" + std::to_string(kPort)).c_str());

  auto row = [&](const char* name, const std::vector<double>& v) {
    std::cout << "| " << name << " |";
    for (double r : v) std::cout << " " << r << " |";
    for (size_t i = v.size(); i < static_cast<size_t>(o.rounds); ++i) std::cout << " - |";
    std::cout << " " << median(v) << " |\n";
  };
  auto table = [&](const char* direction, const std::vector<double>& e, const std::vector<double>& b,
                   const std::vector<double>& q) {
    std::cout << direction << ", " << (o.bytes >> 20) << " MiB per round, MiB/s measured by the guest\n\n| VMM |";
    for (int i = 1; i <= o.rounds; ++i) std::cout << " round " << i << " |";
    std::cout << " median |\n|---|";
    for (int i = 0; i <= o.rounds; ++i) std::cout << "---|";
    std::cout << "\n";
    row("ember (hybrid Unix socket)", e);
    if (!o.baseline.empty()) row("ember baseline (--baseline)", b);
    row("QEMU (vhost-vsock)", q);
    double qm = median(q), bm = median(b);
    std::cout << "\nember / QEMU median throughput: " << (qm > 0 ? median(e) / qm : 0) << "\n";
    if (!o.baseline.empty()) std::cout << "ember / baseline median throughput: " << (bm > 0 ? median(e) / bm : 0) << "\n";
    std::cout << "\n";
  };
  table("guest -> host", ember.to_host, baseline.to_host, qemu.to_host);
  table("host -> guest", ember.to_guest, baseline.to_guest, qemu.to_guest);
  if (!o.json.empty()) {
    auto list = [](const std::vector<double>& v) {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
      return out + "]";
    };
    std::ofstream out(o.json);
    out << "{\"bytes\": " << o.bytes << ", \"rounds\": " << o.rounds
        << ", \"unit\": \"MiB/s\",\n \"guest_to_host\": {\"ember\": " << list(ember.to_host)
        << ", \"qemu\": " << list(qemu.to_host) << "},\n \"host_to_guest\": {\"ember\": "
        << list(ember.to_guest) << ", \"qemu\": " << list(qemu.to_guest) << "}";
    if (!o.baseline.empty()) {
      out << ",\n \"baseline\": {\"guest_to_host\": " << list(baseline.to_host)
          << ", \"host_to_guest\": " << list(baseline.to_guest) << "}";
    }
    out << "}\n";
  }
  bool complete = (o.baseline.empty() || (!baseline.to_host.empty() && !baseline.to_guest.empty())) &&
                  !ember.to_host.empty() && !qemu.to_host.empty() && !ember.to_guest.empty() && !qemu.to_guest.empty();
  return complete ? 0 : 1;
}
