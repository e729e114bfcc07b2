#include "api/request_router.h"

#include <algorithm>
#include <cctype>

#include "base/util/error.h"
#include "base/util/log.h"

namespace ember {

namespace {

ApiResponse ok() { return {204, ""}; }
// Strings from clients may be invalid UTF-8: replaced on output rather than throwing.
ApiResponse ok(const Json& body) { return {200, body.dump(-1, ' ', false, Json::error_handler_t::replace)}; }
ApiResponse bad(const std::string& message) {
  return {400, Json{{"fault_message", message}}.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

// Endpoints of Firecracker's API that ember does not implement, and the feature each is.
struct Unsupported {
  const char* resource;
  const char* feature;
};
constexpr Unsupported kUnsupported[] = {
    {"balloon", "the balloon device"},
    {"mmds", "MMDS (the metadata service)"}, {"entropy", "the entropy device (virtio-rng)"},
    {"cpu-config", "CPU templates"},   {"pmem", "pmem devices"},
    {"hotplug", "memory hotplug"},
};

// Firecracker's rule for the ids in /drives/{id} and /network-interfaces/{id}.
void check_resource_id(const std::string& id) {
  if (id.empty()) fail("The ID cannot be empty.");
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      fail("API Resource IDs can only contain alphanumeric characters and underscores.");
    }
  }
}

// "/drives/rootfs" -> ("drives", "rootfs"); "/machine-config" -> ("machine-config", "").
std::pair<std::string, std::string> split_path(const std::string& path) {
  std::string p = path.substr(0, path.find('?'));
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (p.empty() || p[0] != '/') return {"", ""};
  size_t slash = p.find('/', 1);
  if (slash == std::string::npos) return {p.substr(1), ""};
  return {p.substr(1, slash - 1), p.substr(slash + 1)};
}

}  // namespace

const char* instance_state_name(InstanceState s) {
  switch (s) {
    case InstanceState::NotStarted: return "Not started";
    case InstanceState::Running: return "Running";
    case InstanceState::Paused: return "Paused";
  }
  return "?";
}

RequestRouter::RequestRouter(VmController& vm, FullVmConfig config, std::string instance_id, std::string version)
    : vm_(vm), config_(std::move(config)), instance_id_(std::move(instance_id)), version_(std::move(version)) {}

ApiResponse RequestRouter::handle(const ApiRequest& request) {
  std::string endpoint = "unknown";
  ApiResponse response;
  try {
    response = dispatch(request.method, request.path, request.body, endpoint);
  } catch (const Error& e) {
    response = bad(e.what());
  } catch (const Json::exception& e) {  // a value of the wrong JSON type met a conversion
    response = bad(cat("request body: ", e.what()));
  }
  count(request.method, endpoint, response.status);
  if (response.status >= 400) {
    log::info(cat("API: ", request.method, " ", request.path, " -> ", response.status, " ", response.body));
  } else {
    log::debug(cat("API: ", request.method, " ", request.path, " -> ", response.status));
  }
  return response;
}

void RequestRouter::count(const std::string& method, const std::string& endpoint, int status) {
  std::string key = method + "_" + endpoint + "_" + std::to_string(status);
  std::transform(key.begin(), key.end(), key.begin(), [](char c) {
    return c == '-' || c == '/' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  std::lock_guard lock(counters_mu_);
  ++counters_["api"][key];
}

void RequestRouter::collect_metrics(MetricGroups& out) const {
  std::lock_guard lock(counters_mu_);
  for (const auto& [group, values] : counters_) out[group].insert(values.begin(), values.end());
}

ApiResponse RequestRouter::dispatch(const std::string& method, const std::string& path, const std::string& body,
                                    std::string& endpoint) {
  auto [resource, id] = split_path(path);
  for (const Unsupported& u : kUnsupported) {
    if (resource == u.resource) {
      endpoint = resource;
      return bad(cat(u.feature, " (/", u.resource, ") is not supported by ember"));
    }
  }
  bool has_id = !id.empty();
  endpoint = resource.empty() ? "root" : resource;
  if (id.find('/') != std::string::npos) return bad(cat("unknown path ", path));
  if (id == "config" && resource == "vm") endpoint = "vm_config";

  bool get = method == "GET", put = method == "PUT", patch = method == "PATCH";
  auto not_allowed = [&] { return bad(cat(method, " is not allowed on ", path.substr(0, path.find('?')))); };
  // Firecracker's messages for a body where none belongs and none where one does.
  if (get && !body.empty()) return bad("GET request cannot have a body.");
  if ((put || patch) && body.empty()) return bad(put ? "Empty PUT request." : "Empty PATCH request.");
  Json j;
  if (put || patch) j = parse_json(body, "request body");

  if (resource.empty()) return get ? instance_info() : not_allowed();
  if (resource == "version" && !has_id) return get ? ok(Json{{"firecracker_version", version_}}) : not_allowed();
  if (resource == "vm" && id == "config") return get ? vm_config() : not_allowed();
  if (resource == "vm" && !has_id) return patch ? patch_vm(j) : not_allowed();
  if (resource == "actions" && !has_id) return put ? action(j) : not_allowed();
  if (resource == "machine-config" && !has_id) {
    if (get) return ok(to_json(config_.vm.machine));
    return put || patch ? machine_config(put, j) : not_allowed();
  }
  if (resource == "boot-source" && !has_id) return put ? put_boot_source(j) : not_allowed();
  if (resource == "drives" || resource == "network-interfaces") {
    if (!put && !patch) return not_allowed();
    check_resource_id(id);
    if (resource == "drives") return put ? put_drive(id, j) : patch_drive(id, j);
    return put ? put_net(id, j) : patch_net(id, j);
  }
  if (resource == "vsock" && !has_id) return put ? put_vsock(j) : not_allowed();
  if (resource == "snapshot" && (id == "create" || id == "load")) {
    endpoint = "snapshot_" + id;
    if (!put) return not_allowed();
    return id == "create" ? create_snapshot(j) : load_snapshot(j);
  }
  if (resource == "serial" && !has_id) {
    if (!put) return not_allowed();
    pre_boot("PUT /serial");
    // Not part of what a snapshot brings: it may precede PUT /snapshot/load, as the logger.
    SerialConfig serial = serial_from_json(j, config_.vm.serial);
    // Opened now (created if missing) so that a bad path is this request's 400, not InstanceStart's.
    vm_.check_serial_output(serial);
    config_.vm.serial = serial;
    return ok();
  }
  if (resource == "logger" && !has_id) {
    if (!put) return not_allowed();
    pre_boot("PUT /logger");
    log::LoggerConfig logger = logger_from_json(j);
    vm_.configure_logger(logger);
    config_.logger = logger;
    return ok();
  }
  if (resource == "metrics" && !has_id) {
    if (!put) return not_allowed();
    pre_boot("PUT /metrics");
    MetricsConfig metrics = metrics_from_json(j);
    vm_.configure_metrics(metrics);
    config_.metrics = metrics;
    return ok();
  }
  endpoint = "unknown";
  return bad(cat("unknown endpoint ", method, " ", path));
}

void RequestRouter::pre_boot(const char* what) const {
  if (started()) fail(what, " is only allowed before InstanceStart");
}

// Firecracker's PATCH of a device changes a running VM only; before, its message is this.
void RequestRouter::post_boot() const {
  if (!started()) fail("The requested operation is not supported before starting the microVM.");
}

ApiResponse RequestRouter::machine_config(bool put, const Json& body) {
  const char* what = put ? "PUT /machine-config" : "PATCH /machine-config";
  pre_boot(what);
  if (!put && body.is_object() && body.empty()) fail("Empty PATCH request.");
  MachineConfig base = put ? MachineConfig{} : config_.vm.machine;
  // ember's own setting, set by --prefault or TOML and absent from Firecracker's JSON: a PUT,
  // which replaces what the JSON describes, keeps it.
  base.prefault = config_.vm.machine.prefault;
  config_.vm.machine = machine_config_from_json(body, base, !put);
  configured_ = true;
  ApiResponse r = ok();
  r.deprecated = body.contains("cpu_template");
  if (r.deprecated) log::warn(cat(what, ": cpu_template field is deprecated."));
  return r;
}

ApiResponse RequestRouter::put_boot_source(const Json& body) {
  pre_boot("PUT /boot-source");
  BootSource boot = boot_source_from_json(body);
  vm_.check_boot_source(boot);  // the files open now, as in Firecracker, not only at InstanceStart
  config_.vm.boot = boot;
  configured_ = true;
  return ok();
}

ApiResponse RequestRouter::put_vsock(const Json& body) {
  pre_boot("PUT /vsock");
  config_.vm.vsock = vsock_from_json(body);
  configured_ = true;
  ApiResponse r = ok();
  r.deprecated = body.contains("vsock_id");
  if (r.deprecated) log::warn("PUT /vsock: vsock_id field is deprecated.");
  return r;
}

// Firecracker lists the root drive first (it keeps it at the front as drives are added).
ApiResponse RequestRouter::vm_config() const {
  FullVmConfig c = config_;
  std::stable_partition(c.vm.drives.begin(), c.vm.drives.end(), [](const DriveConfig& d) { return d.is_root_device; });
  return ok(to_json(c));
}

ApiResponse RequestRouter::instance_info() const {
  return ok(Json{{"id", instance_id_},
                 {"state", instance_state_name(vm_.state())},
                 {"vmm_version", version_},
                 {"app_name", "ember"}});
}

ApiResponse RequestRouter::put_drive(const std::string& id, const Json& body) {
  pre_boot("PUT /drives");
  DriveConfig d = drive_from_json(body);
  if (d.drive_id != id) fail("drive_id '", d.drive_id, "' in the body differs from '", id, "' in the path");
  std::vector<DriveConfig> drives = config_.vm.drives;
  auto same = std::find_if(drives.begin(), drives.end(), [&](const DriveConfig& x) { return x.drive_id == id; });
  if (same != drives.end()) *same = d;
  else drives.push_back(d);
  validate_drives(drives);
  vm_.check_drive(d);  // the file opens now, as in Firecracker, not only at InstanceStart
  config_.vm.drives = std::move(drives);
  configured_ = true;
  return ok();
}

ApiResponse RequestRouter::patch_drive(const std::string& id, const Json& body) {
  auto it = std::find_if(config_.vm.drives.begin(), config_.vm.drives.end(),
                         [&](const DriveConfig& x) { return x.drive_id == id; });
  if (it == config_.vm.drives.end()) fail("no drive is called '", id, "'");
  DriveUpdate u = drive_update_from_json(body, *it);
  post_boot();
  // As Firecracker: the file opens again even at the same path (a file resized on the host).
  if (u.path_given) {
    vm_.replace_drive_file(id, u.drive.path_on_host);
    it->path_on_host = u.drive.path_on_host;  // in use now, whatever happens next
  }
  if (u.rate_limiter) vm_.update_drive_rate_limiter(id, *u.rate_limiter);
  *it = u.drive;
  return ok();
}

ApiResponse RequestRouter::put_net(const std::string& id, const Json& body) {
  pre_boot("PUT /network-interfaces");
  NetConfig n = net_from_json(body);
  if (n.iface_id != id) fail("iface_id '", n.iface_id, "' in the body differs from '", id, "' in the path");
  std::vector<NetConfig> nets = config_.vm.nets;
  auto same = std::find_if(nets.begin(), nets.end(), [&](const NetConfig& x) { return x.iface_id == id; });
  if (same != nets.end()) *same = n;
  else nets.push_back(n);
  validate_nets(nets);
  config_.vm.nets = std::move(nets);
  configured_ = true;
  return ok();
}

// Firecracker's PATCH of an interface changes only its rate limiters.
ApiResponse RequestRouter::patch_net(const std::string& id, const Json& body) {
  auto it = std::find_if(config_.vm.nets.begin(), config_.vm.nets.end(),
                         [&](const NetConfig& x) { return x.iface_id == id; });
  if (it == config_.vm.nets.end()) fail("no network interface is called '", id, "'");
  NetUpdate u = net_update_from_json(body, *it);
  post_boot();
  if (u.rx || u.tx) {
    vm_.update_net_rate_limiters(id, u.rx.value_or(RateLimiterConfig{}), u.tx.value_or(RateLimiterConfig{}));
  }
  *it = u.net;
  return ok();
}

ApiResponse RequestRouter::action(const Json& body) {
  if (!body.is_object()) fail("actions must be a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() != "action_type") fail("actions: unknown field '", it.key(), "'");
  }
  if (!body.contains("action_type") || !body.at("action_type").is_string()) {
    fail("actions.action_type must be a string: InstanceStart, SendCtrlAltDel or FlushMetrics");
  }
  std::string type = body.at("action_type").get<std::string>();
  if (type == "InstanceStart") {
    if (started()) fail("InstanceStart: the VM is already started");
    vm_.start(config_.vm);  // validated there, as for every front end
    return ok();
  }
  if (type == "SendCtrlAltDel") {
    if (vm_.state() != InstanceState::Running) fail("SendCtrlAltDel needs a running VM (it is ", instance_state_name(vm_.state()), ")");
    vm_.send_ctrl_alt_del();
    return ok();
  }
  if (type == "FlushMetrics") {
    vm_.flush_metrics();
    return ok();
  }
  fail("actions.action_type \"", type, "\" is not one of InstanceStart, SendCtrlAltDel, FlushMetrics");
}

ApiResponse RequestRouter::create_snapshot(const Json& body) {
  SnapshotCreateParams params = snapshot_create_from_json(body);
  InstanceState state = vm_.state();
  if (state != InstanceState::Paused) {
    fail("PUT /snapshot/create needs a paused VM (it is ", instance_state_name(state),
         "): pause it first with PATCH /vm {\"state\": \"Paused\"}");
  }
  vm_.create_snapshot(params);
  return ok();
}

// Firecracker's rule: a snapshot is loaded into an ember that has nothing of a VM
// configured (loggers and metrics may be).
ApiResponse RequestRouter::load_snapshot(const Json& body) {
  SnapshotLoadParams params = snapshot_load_from_json(body);
  if (started()) fail("PUT /snapshot/load: a VM is already ", instance_state_name(vm_.state()), " in this ember");
  if (configured_) {
    fail("PUT /snapshot/load is only allowed before anything of the VM is configured (boot source, machine, "
         "drives, interfaces, vsock): the snapshot brings its own configuration");
  }
  config_.vm = vm_.load_snapshot(params, config_.vm.serial);
  return ok();
}

ApiResponse RequestRouter::patch_vm(const Json& body) {
  if (!body.is_object()) fail("vm must be a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() != "state") fail("vm: unknown field '", it.key(), "'");
  }
  if (!body.contains("state") || !body.at("state").is_string()) fail("vm.state must be \"Paused\" or \"Resumed\"");
  std::string state = body.at("state").get<std::string>();
  if (state != "Paused" && state != "Resumed") fail("vm.state must be \"Paused\" or \"Resumed\" (got \"", state, "\")");
  if (!started()) fail("PATCH /vm: the VM is not started");
  if (state == "Paused") vm_.pause();
  else vm_.resume();
  return ok();
}

}  // namespace ember
