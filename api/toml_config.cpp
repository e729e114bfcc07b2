#include "api/toml_config.h"

#include <filesystem>
#include <functional>
#include <map>
#include <toml++/toml.h>

#include "vmm/util/error.h"
#include "vmm/util/file_io.h"

namespace ember {

namespace {

class TomlReader {
 public:
  TomlReader(std::string source, std::string base_dir) : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void error_at(const toml::node& node, const std::string& message) const {
    fail(source_, ":", node.source().begin.line, ": ", message);
  }

  std::string string(const toml::node& node, const std::string& key) const {
    if (!node.is_string()) error_at(node, key + " must be a string");
    return node.as_string()->get();
  }
  std::string path(const toml::node& node, const std::string& key) const {
    std::string value = string(node, key);
    if (value.empty()) error_at(node, key + " must not be empty");
    std::filesystem::path p(value);
    if (p.is_relative() && !base_dir_.empty()) p = std::filesystem::path(base_dir_) / p;
    return p.lexically_normal().string();
  }
  bool boolean(const toml::node& node, const std::string& key) const {
    if (!node.is_boolean()) error_at(node, key + " must be true or false");
    return node.as_boolean()->get();
  }
  int64_t integer(const toml::node& node, const std::string& key, int64_t min, int64_t max) const {
    if (!node.is_integer()) error_at(node, key + " must be an integer");
    int64_t value = node.as_integer()->get();
    if (value < min || value > max) {
      error_at(node, cat(key, " must be between ", min, " and ", max, " (got ", value, ")"));
    }
    return value;
  }

  using Handler = std::function<void(const toml::node&, const std::string&)>;
  // Calls the handler for each key of `table`; unknown keys are errors.
  void each_key(const toml::node& node, const std::string& table_name,
                const std::map<std::string, Handler>& handlers) const {
    if (!node.is_table()) error_at(node, "[" + table_name + "] must be a table");
    for (auto&& [key, value] : *node.as_table()) {
      std::string k(key.str());
      auto it = handlers.find(k);
      if (it == handlers.end()) {
        fail(source_, ":", key.source().begin.line, ": unknown key '", k, "' in [", table_name, "]");
      }
      it->second(value, table_name + "." + k);
    }
  }

 private:
  std::string source_;
  std::string base_dir_;
};

HugePages parse_huge_pages(const TomlReader& r, const toml::node& node, const std::string& key) {
  std::string v = r.string(node, key);
  if (v == "None") return HugePages::None;
  if (v == "Transparent") return HugePages::Transparent;
  if (v == "2M") return HugePages::Huge2M;
  r.error_at(node, key + " must be \"None\", \"Transparent\" or \"2M\" (got \"" + v + "\")");
}

DriveConfig::IoEngine parse_io_engine(const TomlReader& r, const toml::node& node, const std::string& key) {
  std::string v = r.string(node, key);
  if (v == "io_uring" || v == "Async") return DriveConfig::IoEngine::IoUring;
  if (v == "sync" || v == "Sync") return DriveConfig::IoEngine::Sync;
  r.error_at(node, key + " must be \"io_uring\" or \"sync\" (got \"" + v + "\")");
}

// [[drive]] tables. Keys follow the task's short names; Firecracker's Drive
// names (drive_id, path_on_host, is_read_only, is_root_device) are accepted too.
std::vector<DriveConfig> parse_drives(const TomlReader& r, const toml::node& node) {
  if (!node.is_array_of_tables()) r.error_at(node, "drive must be written as [[drive]] tables");
  std::vector<DriveConfig> drives;
  int roots = 0;
  for (const toml::node& table : *node.as_array()) {
    DriveConfig d;
    auto id = [&](const toml::node& n, const std::string& k) { d.drive_id = r.string(n, k); };
    auto path = [&](const toml::node& n, const std::string& k) { d.path_on_host = r.path(n, k); };
    auto ro = [&](const toml::node& n, const std::string& k) { d.is_read_only = r.boolean(n, k); };
    auto root = [&](const toml::node& n, const std::string& k) { d.is_root_device = r.boolean(n, k); };
    r.each_key(table, "drive",
               {{"id", id}, {"drive_id", id}, {"path", path}, {"path_on_host", path},
                {"read_only", ro}, {"is_read_only", ro}, {"root", root}, {"is_root_device", root},
                {"io_engine", [&](const toml::node& n, const std::string& k) { d.io_engine = parse_io_engine(r, n, k); }}});
    if (d.drive_id.empty()) r.error_at(table, "[[drive]] needs an id");
    if (d.path_on_host.empty()) r.error_at(table, "drive '" + d.drive_id + "' needs a path");
    for (const DriveConfig& other : drives) {
      if (other.drive_id == d.drive_id) r.error_at(table, "a second drive is called '" + d.drive_id + "'");
    }
    if (d.is_root_device && ++roots > 1) r.error_at(table, "drive '" + d.drive_id + "': only one drive can be root");
    drives.push_back(std::move(d));
  }
  if (drives.size() > kMaxDrives) r.error_at(node, cat("at most ", kMaxDrives, " drives are supported"));
  return drives;
}

// [[net]] tables, with Firecracker's NetworkInterface names.
std::vector<NetConfig> parse_nets(const TomlReader& r, const toml::node& node) {
  if (!node.is_array_of_tables()) r.error_at(node, "net must be written as [[net]] tables");
  std::vector<NetConfig> nets;
  for (const toml::node& table : *node.as_array()) {
    NetConfig n;
    r.each_key(table, "net",
               {{"iface_id", [&](const toml::node& v, const std::string& k) { n.iface_id = r.string(v, k); }},
                {"host_dev_name", [&](const toml::node& v, const std::string& k) { n.host_dev_name = r.string(v, k); }},
                {"guest_mac", [&](const toml::node& v, const std::string& k) { n.guest_mac = r.string(v, k); }}});
    try {
      validate_net(n);
    } catch (const Error& e) {
      r.error_at(table, e.what());
    }
    nets.push_back(std::move(n));
  }
  return nets;
}

VsockConfig parse_vsock(const TomlReader& r, const toml::node& node) {
  VsockConfig v;
  bool have_cid = false;
  r.each_key(node, "vsock",
             {{"vsock_id", [&](const toml::node& n, const std::string& k) { v.vsock_id = r.string(n, k); }},
              {"guest_cid", [&](const toml::node& n, const std::string& k) {
                 v.guest_cid = static_cast<uint32_t>(r.integer(n, k, kMinGuestCid, kMaxGuestCid));
                 have_cid = true;
               }},
              {"uds_path", [&](const toml::node& n, const std::string& k) { v.uds_path = r.path(n, k); }}});
  if (!have_cid) r.error_at(node, "[vsock] needs guest_cid");
  try {
    validate_vsock(v);
  } catch (const Error& e) {
    r.error_at(node, e.what());
  }
  return v;
}

}  // namespace

VmConfig parse_toml_config(const std::string& text, const std::string& source_name, const std::string& base_dir) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    fail(source_name, ":", e.source().begin.line, ":", e.source().begin.column, ": ", e.description());
  }
  TomlReader r(source_name, base_dir);
  VmConfig config;
  bool have_boot_source = false;
  bool have_kernel = false;

  std::map<std::string, TomlReader::Handler> boot_keys = {
      {"kernel_image_path", [&](const toml::node& n, const std::string& k) {
         config.boot.kernel_image_path = r.path(n, k);
         have_kernel = true;
       }},
      {"initrd_path", [&](const toml::node& n, const std::string& k) { config.boot.initrd_path = r.path(n, k); }},
      {"boot_args", [&](const toml::node& n, const std::string& k) { config.boot.boot_args = r.string(n, k); }},
  };
  std::map<std::string, TomlReader::Handler> machine_keys = {
      {"vcpu_count", [&](const toml::node& n, const std::string& k) {
         config.machine.vcpu_count = static_cast<uint32_t>(r.integer(n, k, 1, kMaxVcpuCount));
       }},
      {"mem_size_mib", [&](const toml::node& n, const std::string& k) {
         config.machine.mem_size_mib = static_cast<uint64_t>(r.integer(n, k, kMinMemMib, kMaxMemMib));
       }},
      {"smt", [&](const toml::node& n, const std::string& k) {
         if (r.boolean(n, k)) r.error_at(n, k + " = true is not supported: ember presents one thread per core");
       }},
      {"huge_pages", [&](const toml::node& n, const std::string& k) {
         config.machine.huge_pages = parse_huge_pages(r, n, k);
       }},
      {"prefault", [&](const toml::node& n, const std::string& k) {
         if (n.is_boolean()) {
           config.machine.prefault = r.boolean(n, k) ? Prefault::Background : Prefault::Off;
           return;
         }
         if (!n.is_string()) r.error_at(n, k + " must be true, false, \"sync\" or \"background\"");
         std::string v = r.string(n, k);
         if (v == "sync") config.machine.prefault = Prefault::Sync;
         else if (v == "background") config.machine.prefault = Prefault::Background;
         else if (v == "off") config.machine.prefault = Prefault::Off;
         else r.error_at(n, k + " must be true, false, \"sync\" or \"background\" (got \"" + v + "\")");
       }},
      {"track_dirty_pages", [&](const toml::node& n, const std::string& k) {
         if (r.boolean(n, k)) r.error_at(n, k + " = true is not supported yet");
       }},
      {"cpu_template", [&](const toml::node& n, const std::string& k) {
         if (r.string(n, k) != "None") r.error_at(n, k + ": only \"None\" is supported");
       }},
  };
  std::map<std::string, TomlReader::Handler> serial_keys = {
      {"output", [&](const toml::node& n, const std::string& k) {
         std::string v = r.string(n, k);
         if (v == "stdout") config.serial.output = SerialConfig::Output::Stdout;
         else if (v == "none") config.serial.output = SerialConfig::Output::None;
         else if (v == "file") config.serial.output = SerialConfig::Output::File;
         else r.error_at(n, k + " must be \"stdout\", \"file\" or \"none\" (got \"" + v + "\")");
       }},
      {"path", [&](const toml::node& n, const std::string& k) { config.serial.path = r.path(n, k); }},
      {"input", [&](const toml::node& n, const std::string& k) { config.serial.input = r.boolean(n, k); }},
  };

  for (auto&& [key, value] : root) {
    std::string k(key.str());
    if (k == "boot-source") {
      have_boot_source = true;
      r.each_key(value, k, boot_keys);
    } else if (k == "machine-config") {
      r.each_key(value, k, machine_keys);
    } else if (k == "serial") {
      r.each_key(value, k, serial_keys);
    } else if (k == "drive") {
      config.drives = parse_drives(r, value);
    } else if (k == "net") {
      config.nets = parse_nets(r, value);
    } else if (k == "vsock") {
      config.vsock = parse_vsock(r, value);
    } else {
      fail(source_name, ":", key.source().begin.line, ": unknown table or key '", k,
           "' (expected [boot-source], [machine-config], [serial], [[drive]], [[net]] or [vsock])");
    }
  }
  if (!have_boot_source || !have_kernel) {
    fail(source_name, ": [boot-source] kernel_image_path is required");
  }
  if (config.serial.output == SerialConfig::Output::File && config.serial.path.empty()) {
    fail(source_name, ": [serial] output = \"file\" needs a path");
  }
  try {
    validate_nets(config.nets);
  } catch (const Error& e) {
    fail(source_name, ": ", e.what());
  }
  return config;
}

VmConfig load_toml_config(const std::string& path) {
  std::string text = read_file(path, "config file");
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return parse_toml_config(text, path, dir);
}

}  // namespace ember
