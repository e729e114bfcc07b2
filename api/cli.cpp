#include "api/cli.h"

#include <charconv>

#include "vmm/util/error.h"

namespace ember {

namespace {

uint64_t parse_number(const std::string& flag, const std::string& text, uint64_t max) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    fail(flag, " needs a whole number (got '", text, "')");
  }
  if (value > max) fail(flag, " is at most ", max, " (got ", value, ")");
  return value;
}

}  // namespace

const char* usage_text() {
  return "usage: ember [--config vm.toml] [options]\n"
         "\n"
         "Boots a microVM and exits when the guest does.\n"
         "\n"
         "  --config PATH     TOML file describing the VM (see configs/)\n"
         "  --kernel PATH     kernel image: ELF vmlinux or bzImage\n"
         "  --initrd PATH     initramfs image\n"
         "  --cmdline STR     kernel command line (replaces the default)\n"
         "  --vcpus N         number of vCPUs (1-32)\n"
         "  --mem-mib N       guest memory in MiB\n"
         "  --serial-out X    guest console to 'stdout' (default), 'none', or a file path\n"
         "  --no-prefault     do not populate guest memory before boot\n"
         "  --log-level L     error, warn (default), info or debug\n"
         "  --version         print the version\n"
         "  -h, --help        this text\n"
         "\n"
         "Exit status: 0 guest shut down, 1 ember failed, 2 bad usage or configuration,\n"
         "3 guest kernel panic, 4 guest triple fault, 130 stopped by a signal.\n";
}

CliOptions parse_cli(const std::vector<std::string>& args) {
  CliOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) fail(a, " needs a value");
      return args[++i];
    };
    if (a == "-h" || a == "--help") o.help = true;
    else if (a == "--version") o.version = true;
    else if (a == "--config") o.config_path = value();
    else if (a == "--kernel") o.kernel = value();
    else if (a == "--initrd") o.initrd = value();
    else if (a == "--cmdline") o.cmdline = value();
    else if (a == "--serial-out") o.serial_out = value();
    else if (a == "--log-level") o.log_level = value();
    else if (a == "--vcpus") o.vcpus = static_cast<uint32_t>(parse_number(a, value(), kMaxVcpuCount * 1000ull));
    else if (a == "--mem-mib") o.mem_mib = parse_number(a, value(), kMaxMemMib * 1000);
    else if (a == "--no-prefault") o.no_prefault = true;
    else fail("unknown option '", a, "'");
  }
  return o;
}

void apply_overrides(const CliOptions& o, VmConfig& config) {
  if (o.kernel) config.boot.kernel_image_path = *o.kernel;
  if (o.initrd) config.boot.initrd_path = *o.initrd;
  if (o.cmdline) config.boot.boot_args = *o.cmdline;
  if (o.vcpus) config.machine.vcpu_count = *o.vcpus;
  if (o.mem_mib) config.machine.mem_size_mib = *o.mem_mib;
  if (o.no_prefault) config.machine.prefault = false;
  if (o.serial_out) {
    if (*o.serial_out == "stdout") config.serial.output = SerialConfig::Output::Stdout;
    else if (*o.serial_out == "none") config.serial.output = SerialConfig::Output::None;
    else {
      config.serial.output = SerialConfig::Output::File;
      config.serial.path = *o.serial_out;
    }
  }
}

}  // namespace ember
