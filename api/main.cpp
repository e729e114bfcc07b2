// ember's entry point: parse options, build the VM, run it, report how it ended.
// This is the one place errors are reported and the exit status chosen.
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "api/cli.h"
#include "api/toml_config.h"
#include "vmm/kvm/kvm.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/boot_timeline.h"
#include "vmm/util/error.h"
#include "vmm/util/log.h"
#include "vmm/vm.h"

namespace {
constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

// Written at exit for the boot-latency suite; a failure to write is reported, not fatal.
void write_boot_timings(const std::string& path, const ember::BootTimeline& timeline) {
  std::ofstream out(path, std::ios::trunc);
  out << timeline.to_json() << "\n";
  if (!out) std::cerr << "ember: cannot write boot timings to '" << path << "'\n";
}
}  // namespace

int main(int argc, char** argv) {
  using namespace ember;
  BootTimeline timeline;
  VmConfig config;
  std::optional<std::string> timings_path;
  try {
    CliOptions options = parse_cli(std::vector<std::string>(argv + 1, argv + argc));
    if (options.help) {
      std::cout << usage_text();
      return 0;
    }
    if (options.version) {
      std::cout << "ember " << EMBER_VERSION << "\n";
      return 0;
    }
    if (options.log_level) {
      log::Level level;
      if (!log::parse_level(*options.log_level, level)) fail("--log-level must be error, warn, info or debug");
      log::set_level(level);
    }
    if (options.config_path) config = load_toml_config(*options.config_path);
    apply_overrides(options, config);
    if (config.boot.kernel_image_path.empty()) fail("no kernel: give --config FILE or --kernel PATH");
    validate(config);
    timings_path = options.boot_timings;
    // Bad boot files are reported before KVM is touched, so the message is about them.
    detect_kernel_format(FileImage::open(config.boot.kernel_image_path, "kernel"));
    if (!config.boot.initrd_path.empty()) FileImage::open(config.boot.initrd_path, "initrd");
  } catch (const Error& e) {
    std::cerr << "ember: error: " << e.what() << "\n" << "(ember --help lists the options)\n";
    return kExitUsage;
  }

  try {
    timeline.mark(BootPhase::ArgsParsed);
    timeline.mark(BootPhase::InstanceStart);  // no API: the VM starts at once
    KvmSystem kvm = KvmSystem::open();
    Vm vm(kvm, config, timeline);
    VmExit exit = vm.run();
    if (timings_path) write_boot_timings(*timings_path, timeline);
    if (exit.kind == ExitKind::GuestShutdown) {
      log::info(exit.detail);
    } else {
      std::cerr << "ember: " << exit.detail << "\n";
    }
    return exit.exit_code();
  } catch (const Error& e) {
    std::cerr << "ember: error: " << e.what() << "\n";
    return kExitFailure;
  }
}
