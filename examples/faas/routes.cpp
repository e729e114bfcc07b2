#include "examples/faas/routes.h"

#include <nlohmann/json.hpp>

namespace ember::faas {

namespace {

ApiResponse error(int status, const std::string& message) {
  return {status, nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

}  // namespace

ApiResponse route(Runtime& runtime, const HttpRequest& request) {
  std::string path = request.path.substr(0, request.path.find('?'));
  const std::string& m = request.method;
  if (path == "/metrics") {
    if (m != "GET") return error(405, "/metrics: GET only");
    return {200, runtime.metrics_text()};
  }
  const std::string prefix = "/functions/";
  if (path.rfind(prefix, 0) != 0) return error(404, "no such endpoint: " + path);
  std::string name = path.substr(prefix.size());
  const std::string invoke = "/invoke";
  if (name.size() > invoke.size() && name.compare(name.size() - invoke.size(), invoke.size(), invoke) == 0) {
    name.resize(name.size() - invoke.size());
    if (m != "POST") return error(405, path + ": POST only");
    if (!valid_function_name(name)) return error(404, "no function '" + name + "'");
    return runtime.invoke(name, request.body);
  }
  const std::string code = "/code";
  if (name.size() > code.size() && name.compare(name.size() - code.size(), code.size(), code) == 0) {
    name.resize(name.size() - code.size());
    if (m != "PUT") return error(405, path + ": PUT only");
    if (!valid_function_name(name)) return error(404, "no function '" + name + "'");
    return runtime.put_code(name, request.body);
  }
  if (m == "PUT") return runtime.put_function(name, request.body);
  if (m == "DELETE") return runtime.delete_function(name);
  return error(405, path + ": PUT or DELETE");
}

}  // namespace ember::faas
