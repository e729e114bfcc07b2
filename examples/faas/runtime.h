// The FaaS runtime: registered functions, their VMs (cold boot once, snapshot, then restores
// and warm reuse, as the Scheduler grants), invocations through the agent, and the state
// folder holding every VM's files. Each public call is one API endpoint's work and is safe
// to call from many threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "api/request_router.h"
#include "base/util/unique_fd.h"
#include "examples/faas/agent_client.h"
#include "examples/faas/ember_vm.h"
#include "examples/faas/function_spec.h"
#include "examples/faas/metrics.h"
#include "examples/faas/scheduler.h"

namespace ember::faas {

struct RuntimeOptions {
  std::string ember_bin;
  std::string state_dir;
  size_t host_max_vms = 64;
  std::chrono::milliseconds boot_timeout{30000};   // a start (boot or restore) to the agent answering
  std::chrono::milliseconds agent_grace{5000};     // beyond the handler's timeout, for its reply
  std::chrono::milliseconds queue_timeout{60000};  // waiting for a VM, then 503
  // Jailed VMs (ember-jailer) when set: VM n runs as uid jail_uid_base + n, with the gid
  // jail_gid_base + the function's generation, chrooted under STATE/jails, in the cgroup
  // ember-faas/<id> (cgroup2) limited to the function's memory (+64 MiB) and vCPUs.
  std::string jailer;
  uint32_t jail_uid_base = 100000;
  uint32_t jail_gid_base = 100000;
};

class Runtime {
 public:
  // Takes the state folder (a lock file in it; a second daemon there is refused) and removes
  // what a previous daemon left: its VM processes and their files, its snapshots.
  explicit Runtime(RuntimeOptions options);
  ~Runtime();

  ApiResponse put_function(const std::string& name, const std::string& body);
  ApiResponse delete_function(const std::string& name);
  // A new version of a function's code drive: staged now, swapped into each VM (PATCH
  // /drives/code) before its next invocation; the snapshot stays.
  ApiResponse put_code(const std::string& name, const std::string& body);
  ApiResponse invoke(const std::string& name, const std::string& body);
  std::string metrics_text() const;
  // Stops idle VMs past their keep-alive; the daemon calls it periodically.
  void expire_idle();
  // Stops every VM (those in use too: their invocations fail) and removes the state folder's
  // contents. Later calls answer 503.
  void shutdown();

 private:
  struct Function {
    FunctionSpec spec;
    FunctionSpec image;  // spec with the image files staged in snapshot_dir when jailed
    uint64_t generation;
    std::string snapshot_dir;
    // The code drive's current version and file (PUT .../code; mu_): version 0 is image.code,
    // what every VM boots or restores with; a VM on an older version is swapped before use.
    mutable uint64_t code_version = 0;
    mutable std::string code_file;
  };
  struct Vm {
    std::shared_ptr<EmberVm> vm;
    uint64_t code_version = 0;
  };
  struct Started {
    std::shared_ptr<EmberVm> vm;
    VmKind kind;
    double start_ms;
  };

  std::shared_ptr<const Function> function(const std::string& name) const;
  // Waits for a grant; a refusal is the answer to give. A warm VM found dead (its guest ended
  // while idle) is dropped and the wait goes on.
  std::optional<ApiResponse> acquire(const std::string& name, const Function& f, Clock::time_point t0, Grant& g,
                                     std::shared_ptr<EmberVm>& warm);
  // Starts the granted VM into s; a failure is the answer to give (the slot and, for a cold
  // boot, the snapshot state are given back).
  std::optional<ApiResponse> start(const std::string& name, const Function& f, Grant::Kind kind, VmId id, Started& s);
  // The answer from the agent's reply; the VM goes back to the pool or is stopped.
  ApiResponse finish(const std::string& name, const Function& f, VmId id, VmKind kind, const AgentResult& r,
                     const nlohmann::json& timings);
  Started start_vm(const Function& f, Grant::Kind kind, VmId id);
  // Brings VM `id` to the function's current code version; an error is the answer to give
  // (the VM is then stopped).
  std::optional<ApiResponse> update_code(const std::string& name, const Function& f, VmId id, EmberVm& vm);
  void stop(VmId id);
  void stop_all(const std::vector<VmId>& ids);
  void clean_leftovers();
  // Jailed: a copy of `ember_bin` in STATE/bin that the jailer can hard-link; its path.
  std::string stage_ember(const std::string& ember_bin) const;
  JailSpec jail_for(const Function& f, VmId id) const;

  RuntimeOptions options_;
  UniqueFd lock_;
  std::string cgroup_root_;  // where cgroup2 is mounted (jailed only)
  Scheduler scheduler_;
  Metrics metrics_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Function>> functions_;
  std::map<VmId, Vm> vms_;  // every VM from its spawn to its stop
  // Shared with each VmNetwork, which gives its slot back when the VM is gone.
  std::shared_ptr<NetworkSlots> network_slots_ = std::make_shared<NetworkSlots>();
  uint64_t next_id_ = 1;
  uint64_t next_generation_ = 1;
  std::atomic<size_t> starting_{0}, busy_{0};
  std::atomic<bool> closed_{false};
};

}  // namespace ember::faas
