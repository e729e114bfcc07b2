#include "api/toml_config.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include "vmm/util/error.h"

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
      {"prefault", [&](const toml::node& n, const std::string& k) { config.machine.prefault = r.boolean(n, k); }},
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
    } else {
      fail(source_name, ":", key.source().begin.line, ": unknown table or key '", k,
           "' (expected [boot-source], [machine-config] or [serial])");
    }
  }
  if (!have_boot_source || !have_kernel) {
    fail(source_name, ": [boot-source] kernel_image_path is required");
  }
  if (config.serial.output == SerialConfig::Output::File && config.serial.path.empty()) {
    fail(source_name, ": [serial] output = \"file\" needs a path");
  }
  return config;
}

VmConfig load_toml_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read config file '", path, "': ", errno_text());
  std::stringstream text;
  text << in.rdbuf();
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return parse_toml_config(text.str(), path, dir);
}

}  // namespace ember
