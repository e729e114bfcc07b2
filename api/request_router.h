// The API's requests, transport aside: (method, path, body) -> (status, body) against
// a VmController. Holds the configuration being built before InstanceStart, which
// GET /vm/config returns, and counts requests per endpoint and status.
#pragma once

#include <mutex>
#include <string>

#include "api/vm_controller.h"
#include "vmm/metrics.h"

namespace ember {

struct ApiRequest {
  std::string method;
  std::string path;  // may carry a ?query, which is ignored
  std::string body;
};

struct ApiResponse {
  int status;
  std::string body;  // JSON, or empty for 204
  // The request used a field Firecracker deprecates (cpu_template, vsock_id): answered
  // with "Deprecation: true", as Firecracker does.
  bool deprecated = false;
};

class RequestRouter {
 public:
  // `config` is the starting configuration (--config-file/--config, or defaults).
  RequestRouter(VmController& vm, FullVmConfig config, std::string instance_id, std::string version);
  ApiResponse handle(const ApiRequest& request);
  // Group "api": "<method>_<endpoint>_<status>" -> count. Thread-safe.
  void collect_metrics(MetricGroups& out) const;
  // Counts a response the HTTP layer produced itself (e.g. 413, malformed request).
  void count(const std::string& method, const std::string& endpoint, int status);

 private:
  ApiResponse dispatch(const std::string& method, const std::string& path, const std::string& body,
                       std::string& endpoint);
  ApiResponse instance_info() const;
  ApiResponse vm_config() const;
  ApiResponse machine_config(bool put, const Json& body);
  ApiResponse put_boot_source(const Json& body);
  ApiResponse put_vsock(const Json& body);
  ApiResponse put_drive(const std::string& id, const Json& body);
  ApiResponse patch_drive(const std::string& id, const Json& body);
  ApiResponse put_net(const std::string& id, const Json& body);
  ApiResponse patch_net(const std::string& id, const Json& body);
  ApiResponse action(const Json& body);
  ApiResponse patch_vm(const Json& body);
  ApiResponse create_snapshot(const Json& body);
  ApiResponse load_snapshot(const Json& body);
  void pre_boot(const char* what) const;  // throws Error once the VM is started
  void post_boot() const;                 // throws Error until it is
  bool started() const { return vm_.state() != InstanceState::NotStarted; }

  VmController& vm_;
  FullVmConfig config_;
  bool configured_ = false;  // a VM object was PUT (no snapshot may be loaded then)
  std::string instance_id_;
  std::string version_;
  mutable std::mutex counters_mu_;
  MetricGroups counters_;
};

}  // namespace ember
