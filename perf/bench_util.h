// Small helpers shared by the perf drivers (boot-latency, snapshot, api): percentiles,
// /proc/PID/smaps_rollup fields, connecting to a Unix stream socket, and QEMU microvm's
// command line.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ember::perf {

// The p-th percentile (0..1) of `v`, interpolated between the two nearest samples; 0 when empty.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double idx = p * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(idx);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

// One field of /proc/PID/smaps_rollup ("Rss", "Pss", "Private_Dirty", ...) in KiB; -1 if absent.
inline long smaps_rollup_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// A connected Unix stream socket to `path` (close-on-exec), or -1.
inline int unix_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  ::close(fd);
  return -1;
}

// QEMU's fastest direct-boot setup for the project's guest, the one every suite compares
// ember with: microvm without option ROMs, RTC or default devices (ACPI only when asked: a
// kernel that needs it, like Debian's), the serial port on stdout, and an i8042 so that
// reboot=k ends QEMU as it ends ember. Suites append their devices.
inline std::vector<std::string> qemu_microvm_argv(const std::string& qemu, bool acpi, int vcpus, int mem_mib,
                                                  const std::string& kernel, const std::string& initrd,
                                                  const std::string& cmdline) {
  std::string machine = std::string("microvm,acpi=") + (acpi ? "on" : "off") + ",x-option-roms=off,rtc=off";
  return {qemu, "-M", machine, "-enable-kvm", "-cpu", "host", "-smp", std::to_string(vcpus), "-m",
          std::to_string(mem_mib), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
          "-device", "i8042", "-kernel", kernel, "-initrd", initrd, "-append", cmdline};
}

// Walks a "--flag [value]" command line: `while (flags.next()) { if (flags.is("--runs")) n =
// std::stoi(flags.value()); ... }`; value() throws when the flag is last.
class FlagReader {
 public:
  FlagReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() { return ++i_ < argc_; }
  const char* flag() const { return argv_[i_]; }
  bool is(const char* name) const { return std::string(argv_[i_]) == name; }
  std::string value() {
    if (i_ + 1 >= argc_) throw std::runtime_error(std::string(argv_[i_]) + " needs a value");
    return argv_[++i_];
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
};

// A fresh folder $TMPDIR/NAME-<pid> (or under /tmp) for one run's sockets, logs and files.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") / (name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// `item` as a number within [low, high]; throws naming `flag` otherwise.
inline int int_in_range(const std::string& item, const char* flag, int low, int high) {
  size_t used = 0;
  int k = 0;
  try {
    k = std::stoi(item, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (item.empty() || used != item.size() || k < low || k > high) {
    throw std::runtime_error(std::string(flag) + ": '" + item + "' is not a number between " + std::to_string(low) +
                             " and " + std::to_string(high));
  }
  return k;
}

// "1,10,50" as numbers, each within [low, high]; throws naming `flag` otherwise.
inline std::vector<int> int_list(const std::string& list, const char* flag, int low, int high) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = std::min(list.find(',', start), list.size());
    out.push_back(int_in_range(list.substr(start, end - start), flag, low, high));
    start = end + 1;
  }
  return out;
}

// Numbers formatted as printf does, for the reports' tables.
template <typename... Args>
std::string strprintf(const char* format, Args... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, args...);
  return buf;
}

// `parse(argc, argv)`, or, when it throws, nullopt after "TOOL: why" and `usage` on stderr
// (the caller exits 2).
template <typename Parse>
auto parse_command_line(int argc, char** argv, const char* tool, const char* usage, Parse parse)
    -> std::optional<decltype(parse(argc, argv))> {
  try {
    return parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << tool << ": " << e.what() << "\nusage: " << usage << "\n";
    return std::nullopt;
  }
}

}  // namespace ember::perf
