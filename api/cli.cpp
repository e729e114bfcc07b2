#include "api/cli.h"

#include <charconv>
#include <functional>

#include "base/util/error.h"

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

// Calls `item(key, value, text)` for each comma-separated "key=value" or "flag".
void for_each_item(const std::string& text,
                   const std::function<void(const std::string&, const std::string&, const std::string&)>& item) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = part.find('=');
    item(part.substr(0, eq), eq == std::string::npos ? "" : part.substr(eq + 1), part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

// --drive id=ID,path=P[,ro][,root][,engine=io_uring|sync][,cache=writeback|none]
DriveConfig parse_drive(const std::string& text) {
  DriveConfig d;
  for_each_item(text, [&](const std::string& key, const std::string& value, const std::string& item) {
    if (key == "id" && !value.empty()) d.drive_id = value;
    else if (key == "path" && !value.empty()) d.path_on_host = value;
    else if (item == "ro") d.is_read_only = true;
    else if (item == "root") d.is_root_device = true;
    else if (item == "engine=sync") d.io_engine = DriveConfig::IoEngine::Sync;
    else if (item == "engine=io_uring") d.io_engine = DriveConfig::IoEngine::IoUring;
    else if (item == "cache=none") d.cache = DriveConfig::Cache::None;
    else if (item == "cache=writeback") d.cache = DriveConfig::Cache::Writeback;
    else fail("--drive: unknown or empty item '", item, "' (expected id=ID,path=P[,ro][,root][,engine=sync][,cache=none])");
  });
  if (d.drive_id.empty() || d.path_on_host.empty()) fail("--drive needs id=ID and path=PATH (got '", text, "')");
  return d;
}

// --net iface_id=ID,tap=NAME[,mac=aa:bb:cc:dd:ee:ff]
NetConfig parse_net(const std::string& text) {
  NetConfig n;
  for_each_item(text, [&](const std::string& key, const std::string& value, const std::string& item) {
    if (key == "iface_id" && !value.empty()) n.iface_id = value;
    else if (key == "tap" && !value.empty()) n.host_dev_name = value;
    else if (key == "mac" && !value.empty()) n.guest_mac = value;
    else fail("--net: unknown or empty item '", item, "' (expected iface_id=ID,tap=NAME[,mac=aa:bb:cc:dd:ee:ff])");
  });
  if (n.iface_id.empty() || n.host_dev_name.empty()) fail("--net needs iface_id=ID and tap=NAME (got '", text, "')");
  return n;
}

// --vsock cid=N,uds=PATH
VsockConfig parse_vsock(const std::string& text) {
  VsockConfig v;
  bool cid = false;
  for_each_item(text, [&](const std::string& key, const std::string& value, const std::string& item) {
    if (key == "cid" && item.size() > key.size()) {
      v.guest_cid = static_cast<uint32_t>(parse_number("--vsock cid", value, kMaxGuestCid));
      cid = true;
    } else if (key == "uds" && !value.empty()) {
      v.uds_path = value;
    } else {
      fail("--vsock: unknown or empty item '", item, "' (expected cid=N,uds=PATH)");
    }
  });
  if (!cid || v.uds_path.empty()) fail("--vsock needs cid=N and uds=PATH (got '", text, "')");
  return v;
}

// Firecracker's flags that ember cannot honour, and why; refused rather than ignored.
const char* unsupported_flag(const std::string& flag) {
  if (flag == "--module") return "logs are not filtered by module";
  if (flag == "--start-time-us" || flag == "--start-time-cpu-us" || flag == "--parent-cpu-time-us") {
    return "start-up times are measured from ember's own start (--boot-timings, the \"boot\" metrics)";
  }
  if (flag == "--seccomp-filter") return "ember's seccomp filters are built in (--no-seccomp turns them off)";
  if (flag == "--mmds-size-limit" || flag == "--metadata") return "ember has no MMDS";
  if (flag == "--describe-snapshot" || flag == "--snapshot-version") {
    return "ember's snapshot files are described in vmm/snapshot/README.md, one format version per ember";
  }
  return nullptr;
}

}  // namespace

const char* usage_text() {
  return "usage: ember [--config vm.toml | --config-file vm.json] [--api-sock PATH] [options]\n"
         "\n"
         "Boots a microVM and exits when the guest does. Without a VM (no --config-file,\n"
         "--config, --kernel or --restore), waits for configuration and InstanceStart on the\n"
         "HTTP API (Firecracker's).\n"
         "\n"
         "  --config PATH     TOML file describing the VM (see configs/); no API unless --api-sock\n"
         "  --config-file P   Firecracker JSON VM config: boot it without waiting for the API\n"
         "  --api-sock PATH   serve the HTTP API on this Unix socket (default, as Firecracker:\n"
         "                    /run/firecracker.socket, except with --config, --kernel, --restore\n"
         "                    and the other flags that describe a VM)\n"
         "  --no-api          no API socket\n"
         "  --id ID           instance id shown by GET /\n"
         "  --log-path PATH   write logs to this file or FIFO instead of stderr\n"
         "  --metrics-path P  write metrics (one JSON line per flush, every 60 s) here\n"
         "  --kernel PATH     kernel image: ELF vmlinux or bzImage\n"
         "  --initrd PATH     initramfs image\n"
         "  --cmdline STR     kernel command line (replaces the default)\n"
         "  --vcpus N         number of vCPUs (1-32)\n"
         "  --mem-mib N       guest memory in MiB\n"
         "  --serial-out X    guest console to 'stdout' (default), 'none', or a file path\n"
         "  --prefault MODE   populate guest memory: background (default, while booting),\n"
         "                    sync (before boot) or off (on first touch)\n"
         "  --no-prefault     same as --prefault off\n"
         "  --drive SPEC      virtio-blk drive: id=ID,path=FILE[,ro][,root][,engine=sync][,cache=none]\n"
         "                    (repeatable; engine defaults to io_uring; root adds root=/dev/vda)\n"
         "  --net SPEC        virtio-net on a tap: iface_id=ID,tap=NAME[,mac=aa:bb:cc:dd:ee:ff]\n"
         "                    (repeatable; the tap must exist; MAC generated if not given)\n"
         "  --vsock SPEC      virtio-vsock: cid=N,uds=PATH (host side: PATH, PATH_<port>)\n"
         "  --level L         error, warn (default), info, debug or off, any case (alias --log-level)\n"
         "  --show-level      put the level on each log line; --show-log-origin: file:line too\n"
         "  --http-api-max-payload-size N  largest request body the API takes (default 51200)\n"
         "  --boot-timer      accepted for Firecracker: the boot-complete marker is always on\n"
         "  --boot-timings F  at exit, write boot phase times (JSON, microseconds) to F\n"
         "  --no-seccomp      run without the per-thread seccomp filters (debugging only)\n"
         "  --no-acpi         no ACPI tables: devices on the kernel command line (kernels\n"
         "                    without CONFIG_ACPI; acpi=off on the command line does the same)\n"
         "  --restore FILE    start from this snapshot instead of booting (PUT /snapshot/load)\n"
         "  --mem-file FILE   its memory file, mapped private (shared by clones until written)\n"
         "  --uffd-socket P   or: a page-fault handler serving the memory over userfaultfd\n"
         "  --restore-paused  leave the restored VM paused (resume with PATCH /vm)\n"
         "  --version         print the version: the Firecracker API served, and ember's\n"
         "  -h, --help        this text\n"
         "\n"
         "Exit status: 0 guest shut down, 1 ember failed, 2 bad usage or configuration,\n"
         "3 guest kernel panic, 4 guest triple fault, 130 stopped by a signal,\n"
         "148 a thread made a system call outside its seccomp filter.\n";
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
    else if (a == "--log-level" || a == "--level") o.log_level = value();
    else if (a == "--api-sock") o.api_sock = value();
    else if (a == "--config-file") o.config_file = value();
    else if (a == "--no-api") o.no_api = true;
    else if (a == "--no-seccomp") o.no_seccomp = true;
    else if (a == "--no-acpi") o.no_acpi = true;
    else if (a == "--id") o.instance_id = value();
    else if (a == "--log-path") o.log_path = value();
    else if (a == "--metrics-path") o.metrics_path = value();
    else if (a == "--boot-timings") o.boot_timings = value();
    else if (a == "--drive") o.drives.push_back(parse_drive(value()));
    else if (a == "--net") o.nets.push_back(parse_net(value()));
    else if (a == "--vsock") o.vsock = parse_vsock(value());
    else if (a == "--vcpus") o.vcpus = static_cast<uint32_t>(parse_number(a, value(), kMaxVcpuCount * 1000ull));
    else if (a == "--mem-mib") o.mem_mib = parse_number(a, value(), kMaxMemMib * 1000);
    else if (a == "--no-prefault") o.prefault = Prefault::Off;
    else if (a == "--http-api-max-payload-size") o.http_api_max_payload_size = parse_number(a, value(), 1ull << 30);
    else if (a == "--show-level") o.show_level = true;
    else if (a == "--show-log-origin") o.show_log_origin = true;
    else if (a == "--boot-timer") o.boot_timer = true;
    else if (a == "--restore") o.restore = value();
    else if (a == "--mem-file") o.mem_file = value();
    else if (a == "--uffd-socket") o.uffd_socket = value();
    else if (a == "--restore-paused") o.restore_paused = true;
    else if (const char* why = unsupported_flag(a)) fail(a, " is not supported by ember: ", why);
    else if (a == "--prefault") {
      std::string mode = value();
      if (mode == "sync") o.prefault = Prefault::Sync;
      else if (mode == "background") o.prefault = Prefault::Background;
      else if (mode == "off") o.prefault = Prefault::Off;
      else fail("--prefault must be sync, background or off (got '", mode, "')");
    }
    else fail("unknown option '", a, "'");
  }
  if (o.no_api && o.api_sock) fail("--no-api and --api-sock exclude each other");
  if (o.http_api_max_payload_size == 0) fail("--http-api-max-payload-size must be at least 1");
  if (o.config_path && o.config_file) fail("--config (TOML) and --config-file (JSON) exclude each other");
  return o;
}

std::string version_text(std::string_view ember_version) {
  return cat("Firecracker v", kFirecrackerApiVersion, " API, served by ember ", ember_version, "\n");
}

std::optional<std::string> api_socket_path(const CliOptions& o) {
  if (o.api_sock) return o.api_sock;
  // ember's own ways to give the VM (a TOML file, --kernel and the like, --restore) boot it
  // without an API, as they always have; Firecracker has none of them.
  if (o.no_api || o.config_path || describes_vm(o) || o.restore) return std::nullopt;
  return kDefaultApiSock;
}

bool describes_vm(const CliOptions& o) {
  return o.kernel || o.initrd || o.cmdline || !o.drives.empty() || !o.nets.empty() || o.vsock || o.vcpus || o.mem_mib ||
         o.prefault || o.no_acpi;
}

std::optional<SnapshotLoadParams> restore_request(const CliOptions& o) {
  if (!o.restore) {
    if (o.mem_file || o.uffd_socket || o.restore_paused) fail("--mem-file, --uffd-socket and --restore-paused go with --restore");
    return std::nullopt;
  }
  if (o.config_path || o.config_file || describes_vm(o)) {
    fail("--restore takes the VM from the snapshot: it cannot be combined with --config, --config-file or flags "
         "that describe a VM (--kernel, --drive, --mem-mib, ...)");
  }
  if (o.mem_file.has_value() == o.uffd_socket.has_value()) fail("--restore needs one of --mem-file FILE or --uffd-socket PATH");
  SnapshotLoadParams p;
  p.snapshot_path = *o.restore;
  p.backend = o.mem_file ? SnapshotLoadParams::Backend::File : SnapshotLoadParams::Backend::Uffd;
  p.backend_path = o.mem_file ? *o.mem_file : *o.uffd_socket;
  p.resume_vm = !o.restore_paused;
  return p;
}

void apply_overrides(const CliOptions& o, VmConfig& config) {
  if (o.kernel) config.boot.kernel_image_path = *o.kernel;
  if (o.initrd) config.boot.initrd_path = *o.initrd;
  if (o.cmdline) config.boot.boot_args = *o.cmdline;
  config.drives.insert(config.drives.end(), o.drives.begin(), o.drives.end());
  config.nets.insert(config.nets.end(), o.nets.begin(), o.nets.end());
  if (o.vsock) config.vsock = o.vsock;
  if (o.vcpus) config.machine.vcpu_count = *o.vcpus;
  if (o.mem_mib) config.machine.mem_size_mib = *o.mem_mib;
  if (o.prefault) config.machine.prefault = *o.prefault;
  if (o.no_acpi) config.acpi = false;
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
