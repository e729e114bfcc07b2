// vsock throughput, ember against QEMU with the same guest in the same run: the
// guest (guest/tools/vsock-io) sends N bytes to host port 7000 R times and
// reports MiB/s itself, so both VMMs are measured by the same guest-side clock.
// ember's host side is the hybrid Unix socket (<uds>_7000); QEMU's is AF_VSOCK
// through vhost-vsock-device. Writes a Markdown table to stdout.
//   usage: vsock_bench --ember BIN --guest DIR [--qemu BIN] [--bytes N] [--rounds R]
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/base64.h"

namespace {

struct Options {
  std::string ember, qemu = "qemu-system-x86_64", guest;
  uint64_t bytes = 32ull << 20;
  int rounds = 3;
};

const std::string kCmdline = "console=ttyS0 reboot=k panic=1 pci=off quiet";
constexpr uint32_t kPort = 7000;
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
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = kPort;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd, 8) < 0) {
    perror("AF_VSOCK listener (is vhost_vsock loaded?)");
    std::exit(1);
  }
  return fd;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs the VM and returns the guest's MiB/s figures.
std::vector<double> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(("timeout 900 " + command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  std::vector<double> rates;
  std::regex re("sent [0-9]+ bytes checksum [0-9a-f]+ in [0-9.]+ s: ([0-9.]+) MiB/s");
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) rates.push_back(std::stod((*it)[1]));
  if (rates.empty()) std::cerr << "vsock_bench: no figures from:\n" << command << "\n" << out << "\n";
  return rates;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--ember") o.ember = next();
    else if (a == "--qemu") o.qemu = next();
    else if (a == "--guest") o.guest = next();
    else if (a == "--bytes") o.bytes = std::stoull(next());
    else if (a == "--rounds") o.rounds = std::stoi(next());
    else {
      std::cerr << "usage: vsock_bench --ember BIN --guest DIR [--qemu BIN] [--bytes N] [--rounds R]\n";
      return 2;
    }
  }
  if (o.ember.empty() || o.guest.empty()) return 2;
  std::string script = "i=0; while [ $i -lt " + std::to_string(o.rounds) + " ]; do i=$((i+1)); vsock-io connect 2 " +
                       std::to_string(kPort) + " send " + std::to_string(o.bytes) + " $i; done\n";
  std::string append = kCmdline + " ember_test=" + ember::e2e::util::base64(script);
  std::string kernel = o.guest + "/bzImage", initrd = o.guest + "/initramfs.cpio.gz";
  const char* tmp = std::getenv("TMPDIR");
  std::string uds = std::string(tmp ? tmp : "/tmp") + "/vsock-bench.sock";

  std::vector<double> ember, qemu;
  {
    Sink sink(unix_listener(uds + "_" + std::to_string(kPort)));
    ember = run(quote(o.ember) + " --kernel " + quote(kernel) + " --initrd " + quote(initrd) + " --mem-mib 256" +
                " --cmdline " + quote(append) + " --vsock cid=" + std::to_string(kCid) + ",uds=" + uds);
  }
  {
    Sink sink(vsock_listener());
    qemu = run(quote(o.qemu) + " -M microvm,acpi=off,x-option-roms=off,rtc=off -enable-kvm -cpu host -m 256" +
               " -nodefaults -no-user-config -nographic -no-reboot -serial stdio -device i8042 -kernel " +
               quote(kernel) + " -initrd " + quote(initrd) + " -append " + quote(append) +
               " -device vhost-vsock-device,guest-cid=" + std::to_string(kCid));
  }
  ::unlink((uds + "_" + std::to_string(kPort)).c_str());

  auto row = [&](const char* name, const std::vector<double>& v) {
    std::cout << "| " << name << " |";
    for (double r : v) std::cout << " " << r << " |";
    for (size_t i = v.size(); i < static_cast<size_t>(o.rounds); ++i) std::cout << " - |";
    std::cout << " " << median(v) << " |\n";
  };
  std::cout << "guest -> host, " << (o.bytes >> 20) << " MiB per round, MiB/s measured by the guest\n\n| VMM |";
  for (int i = 1; i <= o.rounds; ++i) std::cout << " round " << i << " |";
  std::cout << " median |\n|---|";
  for (int i = 0; i <= o.rounds; ++i) std::cout << "---|";
  std::cout << "\n";
  row("ember (hybrid Unix socket)", ember);
  row("QEMU (vhost-vsock)", qemu);
  double q = median(qemu);
  std::cout << "\nember / QEMU median throughput: " << (q > 0 ? median(ember) / q : 0) << "\n";
  return ember.empty() || qemu.empty() ? 1 : 0;
}
