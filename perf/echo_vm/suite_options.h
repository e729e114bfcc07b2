// What the echo-VM suites (perf/snapshot, perf/fleet) are all told: the binaries and guest,
// where results go, the VM's shape and how patiently to wait for it; and where their VMMs'
// logs are kept.
#pragma once

#include <filesystem>
#include <string>

#include "perf/bench_util.h"

namespace ember::perf::echo_vm {

struct SuiteOptions {
  std::string ember, guest, out = ".";
  std::string qemu = "qemu-system-x86_64";  // made absolute by qemu_unavailable()
  bool no_qemu = false;
  int mem_mib = 128, vcpus = 1;
  double timeout_s = 300;  // how long a suite waits for its VMs (each suite says what it times)
  int retry_ms = 10;       // between echo attempts the guest refused (it is not listening yet)

  // Takes the flag `flags` is at if it is one of these (--ember, --guest, --out, --qemu,
  // --no-qemu, --mem-mib, --vcpus, --timeout, --retry-ms); false if it is not.
  bool take(FlagReader& flags) {
    if (flags.is("--ember")) ember = flags.value();
    else if (flags.is("--guest")) guest = flags.value();
    else if (flags.is("--out")) out = flags.value();
    else if (flags.is("--qemu")) qemu = flags.value();
    else if (flags.is("--no-qemu")) no_qemu = true;
    else if (flags.is("--mem-mib")) mem_mib = std::stoi(flags.value());
    else if (flags.is("--vcpus")) vcpus = std::stoi(flags.value());
    else if (flags.is("--timeout")) timeout_s = std::stod(flags.value());
    else if (flags.is("--retry-ms")) retry_ms = std::stoi(flags.value());
    else return false;
    return true;
  }
};

// Copies every *.log under `from` (a scratch folder, perhaps inside the emulated host) to
// `out`/logs, named by its path below `from` with '/' as '-' (fleet-2/vm-7/ember.log becomes
// fleet-2-vm-7-ember.log).
inline void keep_logs(const std::filesystem::path& from, const std::string& out) {
  namespace fs = std::filesystem;
  fs::create_directories(out + "/logs");
  for (const auto& e : fs::recursive_directory_iterator(from)) {
    if (e.path().extension() != ".log") continue;
    std::string name = e.path().lexically_relative(from).string();
    for (char& c : name) {
      if (c == '/') c = '-';
    }
    fs::copy_file(e.path(), out + "/logs/" + name, fs::copy_options::overwrite_existing);
  }
}

}  // namespace ember::perf::echo_vm
