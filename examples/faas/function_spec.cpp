#include "examples/faas/function_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include "api/json_fields.h"
#include "examples/faas/agent/protocol.h"

namespace ember::faas {

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

void check_readable(const std::string& path, const std::string& field) {
  if (path.empty() || path[0] != '/') fail(field, " must be an absolute path (got '", path, "')");
  if (access(path.c_str(), R_OK) != 0) fail(field, ": cannot read '", path, "': ", std::strerror(errno));
}

// A code file becomes a virtio-blk drive: a regular file of at least one 512-byte sector.
void check_code_file(const std::string& path, const std::string& field) {
  check_readable(path, field);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) fail(field, ": '", path, "' is not a regular file");
  if (st.st_size < 512) fail(field, ": '", path, "' is ", st.st_size, " bytes; a drive needs at least 512");
}

}  // namespace

FunctionSpec parse_function_spec(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) fail("function: the body is not JSON");
  Fields f(j, "function");
  FunctionSpec s;
  s.kernel = f.required(f.string("kernel"), "kernel");
  s.initramfs = f.string("initramfs").value_or("");
  s.rootfs = f.string("rootfs").value_or("");
  s.code = f.string("code").value_or("");
  s.network = f.boolean("network").value_or(false);
  s.mem_mib = f.integer("mem_mib", 16, 32768).value_or(s.mem_mib);
  s.vcpus = f.integer("vcpus", 1, 32).value_or(s.vcpus);
  s.handler = f.required(f.string("handler"), "handler");
  s.timeout_ms = f.integer("timeout_ms", 1, FAAS_MAX_TIMEOUT_MS).value_or(s.timeout_ms);
  s.keep_alive_ms = f.integer("keep_alive_ms", 0, 86400000).value_or(s.keep_alive_ms);
  s.max_vms = f.integer("max_vms", 1, 4096).value_or(s.max_vms);
  s.max_queue = f.integer("max_queue", 0, 4096).value_or(s.max_queue);
  f.done();
  if (s.handler.empty() || s.handler.size() > FAAS_MAX_HANDLER_BYTES) {
    fail(f.name("handler"), " must be 1 to ", FAAS_MAX_HANDLER_BYTES, " bytes");
  }
  if (s.handler.find('\0') != std::string::npos) fail(f.name("handler"), " must not contain NUL");
  if (s.initramfs.empty() == s.rootfs.empty()) fail("function: exactly one of initramfs and rootfs is required");
  check_readable(s.kernel, f.name("kernel"));
  if (!s.initramfs.empty()) check_readable(s.initramfs, f.name("initramfs"));
  if (!s.rootfs.empty()) check_readable(s.rootfs, f.name("rootfs"));
  if (!s.code.empty()) check_code_file(s.code, f.name("code"));
  return s;
}

std::string parse_code_update(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) fail("code: the body is not JSON");
  Fields f(j, "code");
  std::string path = f.required(f.string("code"), "code");
  f.done();
  check_code_file(path, f.name("code"));
  return path;
}

}  // namespace ember::faas
