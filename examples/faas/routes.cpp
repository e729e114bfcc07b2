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
  // /functions/NAME/invoke (POST) and /functions/NAME/code (PUT): one method each.
  struct Action {
    const char* suffix;
    const char* method;
    ApiResponse (Runtime::*call)(const std::string&, const std::string&);
  };
  for (const Action& a : {Action{"/invoke", "POST", &Runtime::invoke}, Action{"/code", "PUT", &Runtime::put_code}}) {
    const std::string suffix = a.suffix;
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    name.resize(name.size() - suffix.size());
    if (m != a.method) return error(405, path + ": " + a.method + " only");
    if (!valid_function_name(name)) return error(404, "no function '" + name + "'");
    return (runtime.*a.call)(name, request.body);
  }
  if (m == "PUT") return runtime.put_function(name, request.body);
  if (m == "DELETE") return runtime.delete_function(name);
  return error(405, path + ": PUT or DELETE");
}

}  // namespace ember::faas
