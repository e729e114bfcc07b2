#include "api/json_config.h"
#include "api/json_fields.h"

#include "base/util/error.h"
#include "base/util/file_io.h"

namespace ember {

namespace {

HugePages huge_pages_from(const std::string& v, const std::string& field) {
  if (v == "None") return HugePages::None;
  if (v == "Transparent") return HugePages::Transparent;
  if (v == "2M") return HugePages::Huge2M;
  fail(field, " must be \"None\", \"Transparent\" or \"2M\" (got \"", v, "\")");
}

const char* huge_pages_name(HugePages h) {
  switch (h) {
    case HugePages::None: return "None";
    case HugePages::Transparent: return "Transparent";
    case HugePages::Huge2M: return "2M";
  }
  return "None";
}

// Firecracker's TokenBucket: size and refill_time required, one_time_burst optional.
TokenBucketConfig token_bucket_from_json(const Json& j, const std::string& where) {
  Fields f(j, where);
  TokenBucketConfig b;
  b.size = f.required(f.integer("size", 0, virtio::kMaxBucketTokens), "size");
  b.one_time_burst = f.integer("one_time_burst", 0, virtio::kMaxBucketTokens).value_or(0);
  b.refill_time_ms = f.required(f.integer("refill_time", 0, virtio::kMaxRefillTimeMs), "refill_time");
  f.done();
  virtio::check_token_bucket(b, where);
  return b;
}

// Firecracker's RateLimiter: either bucket may be left out.
RateLimiterConfig rate_limiter_from_json(const Json& j, const std::string& where) {
  Fields f(j, where);
  RateLimiterConfig r;
  if (f.has("bandwidth")) r.bandwidth = token_bucket_from_json(j.at("bandwidth"), f.name("bandwidth"));
  if (f.has("ops")) r.ops = token_bucket_from_json(j.at("ops"), f.name("ops"));
  f.done();
  return r;
}

std::optional<RateLimiterConfig> optional_rate_limiter(Fields& f, const Json& j, const char* key) {
  if (!f.has(key)) return std::nullopt;
  return rate_limiter_from_json(j.at(key), f.name(key));
}

Json to_json(const TokenBucketConfig& b) {
  return {{"size", b.size}, {"one_time_burst", b.one_time_burst}, {"refill_time", b.refill_time_ms}};
}

// Only the buckets that limit something; nothing at all for no limiter.
void put_rate_limiter(Json& j, const char* key, const RateLimiterConfig& r) {
  if (!r.enabled()) return;
  Json out = Json::object();
  if (r.bandwidth && r.bandwidth->enabled()) out["bandwidth"] = to_json(*r.bandwidth);
  if (r.ops && r.ops->enabled()) out["ops"] = to_json(*r.ops);
  j[key] = out;
}

void apply_drive_fields(Fields& f, const Json& j, DriveConfig& d) {
  if (auto v = f.string("path_on_host")) d.path_on_host = *v;
  if (auto v = f.boolean("is_root_device")) d.is_root_device = *v;
  if (auto v = f.boolean("is_read_only")) d.is_read_only = *v;
  if (auto v = f.string("io_engine")) {
    if (*v == "Async") d.io_engine = DriveConfig::IoEngine::IoUring;
    else if (*v == "Sync") d.io_engine = DriveConfig::IoEngine::Sync;
    else fail(f.name("io_engine"), " must be \"Sync\" or \"Async\" (got \"", *v, "\")");
  }
  // Firecracker's "Unsafe" (its default) offers the guest no flush; its "Writeback" offers
  // flush and makes it reach the disk. ember always does the latter (VIRTIO_BLK_F_FLUSH,
  // fdatasync), which is safe for both: either is taken.
  if (auto v = f.string("cache_type"); v && *v != "Unsafe" && *v != "Writeback") {
    fail(f.name("cache_type"), " must be \"Unsafe\" or \"Writeback\" (got \"", *v, "\")");
  }
  // ember extension: O_DIRECT or not (Firecracker's cache_type is about flushes, not this).
  if (auto v = f.string("cache")) {
    if (*v == "writeback") d.cache = DriveConfig::Cache::Writeback;
    else if (*v == "none") d.cache = DriveConfig::Cache::None;
    else fail(f.name("cache"), " must be \"writeback\" or \"none\" (got \"", *v, "\")");
  }
  f.unsupported("partuuid");
  if (auto v = optional_rate_limiter(f, j, "rate_limiter")) d.rate_limiter = *v;
  f.unsupported("socket", "(vhost-user-block) is not supported by ember");
}

template <typename T, typename Parse>
std::vector<T> array_of(const Json& j, const char* where, Parse parse) {
  if (!j.is_array()) fail(where, " must be a JSON array");
  std::vector<T> out;
  for (const Json& item : j) out.push_back(parse(item));
  return out;
}

}  // namespace

SerialConfig serial_from_json(const Json& j, SerialConfig base) {
  Fields f(j, "serial");
  if (auto path = f.string("serial_out_path")) {
    if (path->empty()) fail("serial.serial_out_path must not be empty");
    base.output = SerialConfig::Output::File;
    base.path = *path;
  }
  if (f.has("rate_limiter")) base.rate_limiter = token_bucket_from_json(j.at("rate_limiter"), f.name("rate_limiter"));
  f.done();
  return base;
}

Json parse_json(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail(what, ": invalid JSON at byte ", e.byte, ": ", e.what());
  }
}

MachineConfig machine_config_from_json(const Json& j, const MachineConfig& base, bool partial) {
  Fields f(j, "machine-config");
  MachineConfig m = base;
  auto vcpus = f.integer("vcpu_count", 1, kMaxVcpuCount);
  auto mem = f.integer("mem_size_mib", kMinMemMib, kMaxMemMib);
  if (!partial) {
    m.vcpu_count = static_cast<uint32_t>(f.required(vcpus, "vcpu_count"));
    m.mem_size_mib = f.required(mem, "mem_size_mib");
  } else {
    if (vcpus) m.vcpu_count = static_cast<uint32_t>(*vcpus);
    if (mem) m.mem_size_mib = *mem;
  }
  if (f.boolean("smt").value_or(false)) fail("machine-config.smt = true is not supported: ember presents one thread per core");
  if (auto t = f.boolean("track_dirty_pages")) m.track_dirty_pages = *t;
  if (auto t = f.string("cpu_template"); t && *t != "None") {
    fail("machine-config.cpu_template \"", *t, "\" is not supported by ember (only \"None\")");
  }
  if (auto v = f.string("huge_pages")) m.huge_pages = huge_pages_from(*v, f.name("huge_pages"));
  f.done();
  check_machine(m);
  return m;
}

BootSource boot_source_from_json(const Json& j) {
  Fields f(j, "boot-source");
  BootSource b;
  b.kernel_image_path = f.required(f.string("kernel_image_path"), "kernel_image_path");
  if (b.kernel_image_path.empty()) fail("boot-source.kernel_image_path must not be empty");
  if (auto v = f.string("initrd_path")) b.initrd_path = *v;
  if (auto v = f.string("boot_args")) b.boot_args = *v;
  f.done();
  return b;
}

DriveConfig drive_from_json(const Json& j) {
  Fields f(j, "drive");
  DriveConfig d;
  d.drive_id = f.required(f.string("drive_id"), "drive_id");
  if (d.drive_id.empty()) fail("drive.drive_id must not be empty");
  apply_drive_fields(f, j, d);
  f.required(f.boolean("is_root_device"), "is_root_device");  // required by Firecracker's Drive object
  f.done();
  if (d.path_on_host.empty()) fail("drive '", d.drive_id, "': path_on_host is required");
  return d;
}

DriveUpdate drive_update_from_json(const Json& j, const DriveConfig& base) {
  Fields f(j, "drive");
  DriveUpdate u{base, false, std::nullopt};
  if (f.required(f.string("drive_id"), "drive_id") != base.drive_id) {
    fail("drive.drive_id differs from '", base.drive_id, "' in the path");
  }
  if (auto v = f.string("path_on_host")) {
    u.drive.path_on_host = *v;
    u.path_given = true;
  }
  u.rate_limiter = optional_rate_limiter(f, j, "rate_limiter");
  if (u.rate_limiter) u.drive.rate_limiter = base.rate_limiter.updated(*u.rate_limiter);
  f.done();
  if (u.drive.path_on_host.empty()) fail("drive '", base.drive_id, "': path_on_host must not be empty");
  return u;
}

NetConfig net_from_json(const Json& j) {
  Fields f(j, "network-interface");
  NetConfig n;
  n.iface_id = f.required(f.string("iface_id"), "iface_id");
  n.host_dev_name = f.required(f.string("host_dev_name"), "host_dev_name");
  if (auto v = f.string("guest_mac")) n.guest_mac = *v;
  f.unsupported("mtu");
  if (auto v = optional_rate_limiter(f, j, "rx_rate_limiter")) n.rx_rate_limiter = *v;
  if (auto v = optional_rate_limiter(f, j, "tx_rate_limiter")) n.tx_rate_limiter = *v;
  f.done();
  validate_net(n);
  return n;
}

NetUpdate net_update_from_json(const Json& j, const NetConfig& base) {
  Fields f(j, "network-interface");
  NetUpdate u{base, std::nullopt, std::nullopt};
  if (f.required(f.string("iface_id"), "iface_id") != base.iface_id) {
    fail("network-interface.iface_id differs from '", base.iface_id, "' in the path");
  }
  u.rx = optional_rate_limiter(f, j, "rx_rate_limiter");
  u.tx = optional_rate_limiter(f, j, "tx_rate_limiter");
  f.done();
  if (u.rx) u.net.rx_rate_limiter = base.rx_rate_limiter.updated(*u.rx);
  if (u.tx) u.net.tx_rate_limiter = base.tx_rate_limiter.updated(*u.tx);
  return u;
}

VsockConfig vsock_from_json(const Json& j) {
  Fields f(j, "vsock");
  VsockConfig v;
  if (auto id = f.string("vsock_id")) v.vsock_id = *id;
  v.guest_cid = static_cast<uint32_t>(f.required(f.integer("guest_cid", kMinGuestCid, kMaxGuestCid), "guest_cid"));
  v.uds_path = f.required(f.string("uds_path"), "uds_path");
  f.done();
  validate_vsock(v);
  return v;
}

log::LoggerConfig logger_from_json(const Json& j) {
  Fields f(j, "logger");
  log::LoggerConfig l;
  if (auto v = f.string("log_path")) l.log_path = *v;
  if (auto v = f.string("level")) {
    log::Level level;
    if (!log::parse_level(*v, level)) fail("logger.level must be Error, Warning, Info, Debug, Trace or Off (got \"", *v, "\")");
    l.level = level;
  }
  l.show_level = f.boolean("show_level").value_or(false);
  l.show_log_origin = f.boolean("show_log_origin").value_or(false);
  f.unsupported("module", "(per-module filtering) is not supported by ember");
  f.done();
  return l;
}

MetricsConfig metrics_from_json(const Json& j) {
  Fields f(j, "metrics");
  MetricsConfig m;
  m.metrics_path = f.required(f.string("metrics_path"), "metrics_path");
  if (m.metrics_path.empty()) fail("metrics.metrics_path must not be empty");
  m.emit_id = f.boolean("emit_id").value_or(false);
  if (f.has("properties")) {
    const Json& p = j.at("properties");
    if (!p.is_object()) fail("metrics.properties must be a JSON object of strings");
    for (auto it = p.begin(); it != p.end(); ++it) {
      if (!it.value().is_string()) fail("metrics.properties.", it.key(), " must be a string");
      m.properties[it.key()] = it.value().get<std::string>();
    }
  }
  f.done();
  return m;
}

FullVmConfig full_config_from_json(const Json& j) {
  Fields f(j, "VM config");
  FullVmConfig c;
  if (!f.has("boot-source")) fail("VM config: \"boot-source\" is required");
  c.vm.boot = boot_source_from_json(j.at("boot-source"));
  if (f.has("machine-config")) c.vm.machine = machine_config_from_json(j.at("machine-config"), MachineConfig{}, false);
  if (f.has("drives")) c.vm.drives = array_of<DriveConfig>(j.at("drives"), "drives", drive_from_json);
  if (f.has("network-interfaces")) {
    c.vm.nets = array_of<NetConfig>(j.at("network-interfaces"), "network-interfaces", net_from_json);
  }
  if (f.has("vsock")) c.vm.vsock = vsock_from_json(j.at("vsock"));
  if (f.has("logger")) c.logger = logger_from_json(j.at("logger"));
  if (f.has("metrics")) c.metrics = metrics_from_json(j.at("metrics"));
  if (f.has("serial")) c.vm.serial = serial_from_json(j.at("serial"), c.vm.serial);
  for (const char* key : {"balloon", "cpu-config", "mmds-config", "entropy", "pmem", "memory-hotplug"}) {
    f.unsupported(key);
  }
  f.done();
  return c;
}

Json to_json(const MachineConfig& m) {
  return {{"vcpu_count", m.vcpu_count},     {"mem_size_mib", m.mem_size_mib},
          {"smt", m.smt},                   {"track_dirty_pages", m.track_dirty_pages},
          {"huge_pages", huge_pages_name(m.huge_pages)}};
}

Json to_json(const BootSource& b) {
  Json j = {{"kernel_image_path", b.kernel_image_path}, {"boot_args", b.boot_args}};
  if (!b.initrd_path.empty()) j["initrd_path"] = b.initrd_path;
  return j;
}

Json to_json(const DriveConfig& d) {
  Json j = {{"drive_id", d.drive_id},
            {"path_on_host", d.path_on_host},
            {"is_root_device", d.is_root_device},
            {"is_read_only", d.is_read_only},
            {"cache_type", "Writeback"},  // what ember does, whichever was asked
            {"io_engine", d.io_engine == DriveConfig::IoEngine::Sync ? "Sync" : "Async"}};
  if (d.cache == DriveConfig::Cache::None) j["cache"] = "none";  // ember's extension, only when used
  put_rate_limiter(j, "rate_limiter", d.rate_limiter);
  return j;
}

Json to_json(const NetConfig& n) {
  Json j = {{"iface_id", n.iface_id}, {"host_dev_name", n.host_dev_name}};
  if (!n.guest_mac.empty()) j["guest_mac"] = n.guest_mac;
  put_rate_limiter(j, "rx_rate_limiter", n.rx_rate_limiter);
  put_rate_limiter(j, "tx_rate_limiter", n.tx_rate_limiter);
  return j;
}

Json to_json(const VsockConfig& v) {
  Json j = {{"guest_cid", v.guest_cid}, {"uds_path", v.uds_path}};
  if (!v.vsock_id.empty()) j["vsock_id"] = v.vsock_id;
  return j;
}

Json to_json(const log::LoggerConfig& l) {
  Json j = {{"show_level", l.show_level}, {"show_log_origin", l.show_log_origin}};
  if (!l.log_path.empty()) j["log_path"] = l.log_path;
  if (l.level) j["level"] = log::level_name(*l.level);
  return j;
}

Json to_json(const MetricsConfig& m) {
  Json j = {{"metrics_path", m.metrics_path}};
  if (m.emit_id) j["emit_id"] = true;
  if (!m.properties.empty()) j["properties"] = m.properties;
  return j;
}

Json to_json(const FullVmConfig& c) {
  Json j = {{"boot-source", to_json(c.vm.boot)}, {"machine-config", to_json(c.vm.machine)}};
  j["drives"] = Json::array();
  for (const DriveConfig& d : c.vm.drives) j["drives"].push_back(to_json(d));
  j["network-interfaces"] = Json::array();
  for (const NetConfig& n : c.vm.nets) j["network-interfaces"].push_back(to_json(n));
  if (c.vm.vsock) j["vsock"] = to_json(*c.vm.vsock);
  // Only what Firecracker's SerialDevice can say: a file output and a limiter.
  Json serial = Json::object();
  if (c.vm.serial.output == SerialConfig::Output::File) serial["serial_out_path"] = c.vm.serial.path;
  if (c.vm.serial.rate_limiter.enabled()) serial["rate_limiter"] = to_json(c.vm.serial.rate_limiter);
  if (!serial.empty()) j["serial"] = serial;
  if (c.logger) j["logger"] = to_json(*c.logger);
  if (c.metrics) j["metrics"] = to_json(*c.metrics);
  return j;
}

SnapshotCreateParams snapshot_create_from_json(const Json& j) {
  Fields f(j, "snapshot/create");
  SnapshotCreateParams p;
  std::string type = f.string("snapshot_type").value_or("Full");
  if (type == "Diff") p.type = SnapshotCreateParams::Type::Diff;
  else if (type != "Full") fail("snapshot/create.snapshot_type must be \"Full\" or \"Diff\" (got \"", type, "\")");
  p.snapshot_path = f.required(f.string("snapshot_path"), "snapshot_path");
  p.mem_file_path = f.required(f.string("mem_file_path"), "mem_file_path");
  if (p.snapshot_path.empty()) fail("snapshot/create.snapshot_path is empty");
  if (p.mem_file_path.empty()) fail("snapshot/create.mem_file_path is empty");
  if (p.snapshot_path == p.mem_file_path) fail("snapshot/create: snapshot_path and mem_file_path are the same file");
  f.string("version");  // Firecracker's deprecated target version: one format here
  f.done();
  return p;
}

SnapshotLoadParams snapshot_load_from_json(const Json& j) {
  Fields f(j, "snapshot/load");
  SnapshotLoadParams p;
  p.snapshot_path = f.required(f.string("snapshot_path"), "snapshot_path");
  if (p.snapshot_path.empty()) fail("snapshot/load.snapshot_path is empty");
  auto mem_file = f.string("mem_file_path");
  bool has_backend = f.has("mem_backend");
  if (mem_file && has_backend) fail("snapshot/load: give either mem_backend or mem_file_path, not both");
  if (!mem_file && !has_backend) fail("snapshot/load.mem_backend is required");
  if (mem_file) {
    p.backend_path = *mem_file;
  } else {
    Fields b(j.at("mem_backend"), "snapshot/load.mem_backend");
    std::string type = b.required(b.string("backend_type"), "backend_type");
    if (type == "Uffd") p.backend = SnapshotLoadParams::Backend::Uffd;
    else if (type != "File") fail("snapshot/load.mem_backend.backend_type must be \"File\" or \"Uffd\" (got \"", type, "\")");
    p.backend_path = b.required(b.string("backend_path"), "backend_path");
    b.done();
  }
  if (p.backend_path.empty()) fail("snapshot/load: the memory backend's path is empty");
  bool diff = f.boolean("enable_diff_snapshots").value_or(false);  // Firecracker's older name
  p.track_dirty_pages = f.boolean("track_dirty_pages").value_or(diff);
  p.resume_vm = f.boolean("resume_vm").value_or(false);
  if (f.has("network_overrides")) {
    const Json& list = j.at("network_overrides");
    if (!list.is_array()) fail("snapshot/load.network_overrides must be a JSON array");
    for (const Json& o : list) {
      Fields n(o, "snapshot/load.network_overrides[]");
      SnapshotLoadParams::NetOverride ov;
      ov.iface_id = n.required(n.string("iface_id"), "iface_id");
      ov.host_dev_name = n.required(n.string("host_dev_name"), "host_dev_name");
      n.done();
      p.network_overrides.push_back(std::move(ov));
    }
  }
  if (f.has("vsock_override")) {
    Fields v(j.at("vsock_override"), "snapshot/load.vsock_override");
    p.vsock_uds_path = v.required(v.string("uds_path"), "uds_path");
    v.done();
  }
  f.done();
  return p;
}

FullVmConfig load_json_config(const std::string& path) {
  std::string text = read_file(path, "config file");
  try {
    return full_config_from_json(parse_json(text, "JSON"));
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

}  // namespace ember
