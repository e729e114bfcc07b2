#include "examples/faas/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/util/base64.h"
#include "base/util/error.h"
#include "examples/faas/agent_client.h"

namespace ember::faas {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

ApiResponse error(int status, const std::string& message) {
  return {status, json{{"error", message}}.dump()};
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

constexpr const char* kParentCgroup = "ember-faas";

std::string read_word(const fs::path& p) {
  std::ifstream in(p);
  std::string w;
  in >> w;
  return w;
}

// A process of a previous daemon, from its pid file, if that process still runs ember for this
// VM (its API socket path, or its jail id, on its command line): killed, and waited for (it is
// not our child) so that its cgroup can go.
void kill_leftover(const fs::path& vm_dir) {
  pid_t pid = std::atoi(read_word(vm_dir / "pid").c_str());
  if (pid <= 0) return;
  std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream cmd(proc + "/cmdline");
  std::string args((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  std::string jail_id = read_word(vm_dir / "jail-id");
  bool ours = args.find((vm_dir / "api.sock").string()) != std::string::npos ||
              (!jail_id.empty() && args.find(jail_id) != std::string::npos);
  if (!ours || kill(pid, SIGKILL) != 0) return;
  for (int i = 0; i < 200 && fs::exists(proc); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

std::string cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.find(" - cgroup2 ") == std::string::npos) continue;
    size_t a = line.find(' ', line.find(' ', line.find(' ', line.find(' ') + 1) + 1) + 1);  // 5th field
    return line.substr(a + 1, line.find(' ', a + 1) - a - 1);
  }
  return "";
}

}  // namespace

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)), scheduler_(options_.host_max_vms) {
  fs::create_directories(options_.state_dir);
  lock_ = UniqueFd(open((options_.state_dir + "/daemon.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_.valid()) fail("state folder ", options_.state_dir, ": ", std::strerror(errno));
  if (flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) fail("state folder ", options_.state_dir, " is in use by another ember-faas");
  if (!options_.jailer.empty()) {
    cgroup_root_ = cgroup2_mount();
    if (cgroup_root_.empty()) fail("--jailer: no cgroup2 mount in /proc/self/mountinfo (only cgroup v2 is supported)");
  }
  clean_leftovers();
  if (!options_.jailer.empty()) options_.ember_bin = stage_ember(options_.ember_bin);
}

std::string Runtime::stage_ember(const std::string& ember_bin) const {
  // Each jail gets ember from here, on the jails' file system, root's and not writable by
  // others: ember-jailer hard-links such a file instead of copying the binary (tens of MiB
  // with debug information) into every VM's chroot and deleting it again at the VM's end.
  fs::path dir = fs::path(options_.state_dir) / "bin", staged = dir / fs::path(ember_bin).filename();
  fs::path partial = staged.string() + ".partial";
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::remove(partial, ec);
  fs::copy_file(ember_bin, partial, ec);
  if (ec) fail("--ember ", ember_bin, ": copying it to ", partial.string(), ": ", ec.message());
  if (chown(partial.c_str(), 0, 0) != 0 || chmod(partial.c_str(), 0755) != 0 || rename(partial.c_str(), staged.c_str()) != 0) {
    fail("staging ember at ", staged.string(), ": ", std::strerror(errno));
  }
  return staged.string();
}

Runtime::~Runtime() { shutdown(); }

void Runtime::clean_leftovers() {
  fs::path vms = fs::path(options_.state_dir) / "vms";
  std::error_code ec;
  if (fs::is_directory(vms)) {
    for (const auto& d : fs::directory_iterator(vms)) {
      kill_leftover(d.path());
      std::string jail_id = read_word(d.path() / "jail-id");
      if (!jail_id.empty() && !cgroup_root_.empty()) rmdir(cat(cgroup_root_, "/", kParentCgroup, "/", jail_id).c_str());
    }
  }
  fs::remove_all(vms, ec);
  fs::remove_all(fs::path(options_.state_dir) / "jails", ec);
  fs::remove_all(fs::path(options_.state_dir) / "functions", ec);
  // After the VMs' processes are gone: a namespace lives on while a process is in it.
  for (const std::string& p : remove_leftover_networks(options_.state_dir + "/netns")) {
    std::fprintf(stderr, "ember-faas: a previous daemon's network: %s\n", p.c_str());
  }
  fs::create_directories(fs::path(options_.state_dir) / "netns");
  fs::create_directories(vms);
  fs::create_directories(fs::path(options_.state_dir) / "functions");
}

std::shared_ptr<const Runtime::Function> Runtime::function(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : it->second;
}

ApiResponse Runtime::put_function(const std::string& name, const std::string& body) {
  if (!valid_function_name(name)) return error(400, "function name must be 1 to 64 of [A-Za-z0-9_-]");
  if (closed_) return error(503, "shutting down");
  auto f = std::make_shared<Function>();
  try {
    f->spec = parse_function_spec(body);
  } catch (const Error& e) {
    return error(400, e.what());
  }
  if (f->spec.network && geteuid() != 0) {
    return error(400, "function: network needs ember-faas to run as root (it makes a network namespace per VM)");
  }
  // A new registration replaces the old one whole: its VMs and snapshot go.
  std::vector<VmId> idle = scheduler_.remove_function(name);
  {
    std::lock_guard lock(mu_);
    f->generation = next_generation_++;
    f->snapshot_dir = cat(options_.state_dir, "/functions/", name, "-", f->generation);
    auto old = functions_.find(name);
    if (old != functions_.end()) fs::remove_all(old->second->snapshot_dir);
    functions_[name] = f;
  }
  stop_all(idle);
  fs::create_directories(f->snapshot_dir);
  f->image = f->spec;
  if (!options_.jailer.empty()) {
    // Staged once per registration beside the snapshot, so that each VM's chroot gets them by
    // hard link (the same file system) rather than a copy each.
    uint32_t gid = options_.jail_gid_base + uint32_t(f->generation);
    try {
      for (auto [path, file] : {std::pair{&f->image.kernel, "vmlinux"}, std::pair{&f->image.initramfs, "initramfs"},
                                std::pair{&f->image.rootfs, "rootfs"}, std::pair{&f->image.code, "code"}}) {
        if (path->empty()) continue;
        place_file(*path, f->snapshot_dir + "/" + file, gid);
        *path = f->snapshot_dir + "/" + file;
      }
    } catch (const Error& e) {
      std::lock_guard lock(mu_);
      if (functions_[name] == f) functions_.erase(name);
      fs::remove_all(f->snapshot_dir);
      return error(400, e.what());
    }
  }
  f->code_file = f->image.code;
  scheduler_.add_function(name, {f->spec.max_vms, f->spec.max_queue, std::chrono::milliseconds(f->spec.keep_alive_ms)});
  return {204, ""};
}

ApiResponse Runtime::put_code(const std::string& name, const std::string& body) {
  std::shared_ptr<const Function> f = function(name);
  if (!f) return error(404, cat("no function '", name, "'"));
  if (f->spec.code.empty()) return error(400, cat("function '", name, "' was registered without a code drive (\"code\")"));
  std::string path;
  try {
    path = parse_code_update(body);
  } catch (const Error& e) {
    return error(400, e.what());
  }
  // Staged beside the snapshot under a name per version (readable by the function's gid when
  // jailed), so that the caller may delete the file or rename another over it (as with the
  // image files, a write into the same file would reach a hard-linked stage). The last two are
  // kept (a swap to the previous one may be under way) and version 0, which the snapshot's
  // drive opens at every restore; VMs on an older one hold it open or linked in their chroot.
  std::lock_guard lock(mu_);
  uint64_t version = f->code_version + 1;
  std::string staged = cat(f->snapshot_dir, "/code-", version);
  try {
    place_file(path, staged, options_.jailer.empty() ? 0 : options_.jail_gid_base + uint32_t(f->generation));
  } catch (const Error& e) {
    return error(400, e.what());
  }
  if (version > 2) ::unlink(cat(f->snapshot_dir, "/code-", version - 2).c_str());
  f->code_version = version;
  f->code_file = staged;
  metrics_.code_updates++;
  return {200, json{{"code_version", version}}.dump()};
}

std::optional<ApiResponse> Runtime::update_code(const std::string& name, const Function& f, VmId id, EmberVm& vm) {
  uint64_t want = 0;
  std::string file;
  {
    std::lock_guard lock(mu_);
    auto it = vms_.find(id);
    if (f.spec.code.empty() || it == vms_.end() || it->second.code_version == f.code_version) return std::nullopt;
    want = f.code_version;
    file = f.code_file;
  }
  try {
    vm.swap_code(file, cat("code-", want), Clock::now() + options_.boot_timeout);
  } catch (const Error& e) {
    stop(id);
    scheduler_.discard(name);
    return error(502, cat("function '", name, "': swapping its code drive to version ", want, " failed: ", e.what()));
  }
  {
    std::lock_guard lock(mu_);
    if (auto it = vms_.find(id); it != vms_.end()) it->second.code_version = want;
  }
  metrics_.code_swaps++;
  return std::nullopt;
}

ApiResponse Runtime::delete_function(const std::string& name) {
  std::shared_ptr<const Function> f;
  {
    std::lock_guard lock(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return error(404, cat("no function '", name, "'"));
    f = it->second;
    functions_.erase(it);
  }
  stop_all(scheduler_.remove_function(name));
  std::error_code ec;
  fs::remove_all(f->snapshot_dir, ec);
  return {204, ""};
}

Runtime::Started Runtime::start_vm(const Function& f, Grant::Kind kind, VmId id) {
  auto t0 = Clock::now();
  Deadline deadline = t0 + options_.boot_timeout;
  JailSpec jail;
  if (!options_.jailer.empty()) jail = jail_for(f, id);
  std::unique_ptr<VmNetwork> network;
  if (f.spec.network) {
    // The tap's owner: the VM's uid when jailed, else ember runs as the daemon (root).
    network = VmNetwork::create(cat(options_.state_dir, "/netns"), network_slots_,
                                options_.jailer.empty() ? geteuid() : jail.uid);
  }
  std::shared_ptr<EmberVm> vm = EmberVm::spawn(options_.ember_bin, cat(options_.state_dir, "/vms/", id),
                                               options_.jailer.empty() ? nullptr : &jail, std::move(network), deadline);
  {
    std::lock_guard lock(mu_);
    vms_[id] = {vm};
  }
  std::string snap = f.snapshot_dir + "/vm.snap", mem = f.snapshot_dir + "/vm.mem";
  if (kind == Grant::ColdBoot) vm->cold_boot(f.image, deadline);
  else vm->restore(snap, mem, f.image, deadline);
  if (Result<void> ready = agent_wait_ready(vm->vsock_path(), deadline, [&vm] { return vm->alive(); }); !ready) {
    if (!vm->alive()) fail("the VM ended before its agent answered; ember's output ends with: ", vm->log_tail());
    throw Timeout(cat("the agent did not answer within ", options_.boot_timeout.count(), " ms (", ready.error(),
                      "); ember's output ends with: ", vm->log_tail()));
  }
  if (const VmNetwork* net = vm->network()) {
    // After every start: a clone wakes up with its snapshot source's address.
    SlotAddresses a = net->addresses();
    agent_configure_network(vm->vsock_path(), faas_network{a.guest, a.prefix_len, a.host}, deadline);
  }
  double start_ms = ms_since(t0);
  if (kind == Grant::ColdBoot) {
    vm->snapshot(snap, mem, deadline);
    metrics_.snapshots++;
  }
  return {vm, kind == Grant::ColdBoot ? VmKind::Cold : VmKind::Restored, start_ms};
}

void Runtime::stop(VmId id) {
  std::shared_ptr<EmberVm> vm;
  {
    std::lock_guard lock(mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return;
    vm = std::move(it->second.vm);
    vms_.erase(it);
  }
  vm->kill();
  metrics_.vms_stopped++;
}

void Runtime::stop_all(const std::vector<VmId>& ids) {
  for (VmId id : ids) stop(id);
}

std::optional<ApiResponse> Runtime::acquire(const std::string& name, const Function& f, Clock::time_point t0,
                                            Grant& g, std::shared_ptr<EmberVm>& warm) {
  for (;;) {
    g = scheduler_.acquire(name, t0 + options_.queue_timeout);
    stop_all(g.evicted);
    switch (g.kind) {
      case Grant::QueueFull:
        metrics_.rejected_queue_full++;
        return error(429, cat("function '", name, "': every VM is busy and ", f.spec.max_queue, " invocations wait already"));
      case Grant::Gone: return error(404, cat("no function '", name, "' (deleted?)"));
      case Grant::TimedOut:
        return error(503, cat("no VM of '", name, "' became free within ", options_.queue_timeout.count(), " ms"));
      case Grant::Warm: break;
      default: return std::nullopt;
    }
    {
      std::lock_guard lock(mu_);
      auto it = vms_.find(g.vm);
      if (it != vms_.end()) warm = it->second.vm;
    }
    if (warm && warm->alive()) return std::nullopt;
    // Its guest ended while it was idle (or the daemon is stopping): drop it, ask again.
    warm.reset();
    stop(g.vm);
    scheduler_.discard(name);
  }
}

ApiResponse Runtime::invoke(const std::string& name, const std::string& body) {
  auto t0 = Clock::now();
  std::shared_ptr<const Function> f = function(name);
  if (!f) return error(404, cat("no function '", name, "'"));
  if (closed_) return error(503, "shutting down");
  Grant g{Grant::Gone};
  Started s{nullptr, VmKind::Warm, 0};
  if (std::optional<ApiResponse> refused = acquire(name, *f, t0, g, s.vm)) return *refused;
  double queued_ms = ms_since(t0);
  metrics_.queued_ms.observe(queued_ms);
  VmId id = g.vm;
  if (g.kind != Grant::Warm) {
    {
      std::lock_guard lock(mu_);
      id = next_id_++;
    }
    if (std::optional<ApiResponse> failed = start(name, *f, g.kind, id, s)) return *failed;
  }
  if (std::optional<ApiResponse> failed = update_code(name, *f, id, *s.vm)) return *failed;
  busy_++;
  auto run_start = Clock::now();
  AgentResult r;
  try {
    r = agent_invoke(s.vm->vsock_path(), f->spec.handler, body, f->spec.timeout_ms,
                     run_start + std::chrono::milliseconds(f->spec.timeout_ms) + options_.agent_grace);
  } catch (const Error& e) {
    busy_--;
    stop(id);
    scheduler_.discard(name);
    metrics_.agent_failures++;
    bool timeout = dynamic_cast<const Timeout*>(&e) != nullptr;
    return error(timeout ? 504 : 502, cat("function '", name, "': the agent did not answer: ", e.what()));
  }
  busy_--;
  json timings = {{"queued_ms", queued_ms},
                  {"start_ms", s.kind == VmKind::Cold ? s.start_ms : 0.0},
                  {"restore_ms", s.kind == VmKind::Restored ? s.start_ms : 0.0},
                  {"run_ms", ms_since(run_start)},
                  {"handler_ms", r.reply.run_us / 1000.0},
                  {"total_ms", ms_since(t0)}};
  metrics_.invoke_ms[int(s.kind)].observe(ms_since(t0));
  return finish(name, *f, id, s.kind, r, timings);
}

std::optional<ApiResponse> Runtime::start(const std::string& name, const Function& f, Grant::Kind kind, VmId id,
                                          Started& s) {
  starting_++;
  try {
    s = start_vm(f, kind, id);
    starting_--;
  } catch (const Error& e) {
    starting_--;
    stop(id);
    scheduler_.discard(name);
    if (kind == Grant::ColdBoot) scheduler_.snapshot_done(name, false);
    metrics_.start_failures++;
    bool timeout = dynamic_cast<const Timeout*>(&e) != nullptr;
    return error(timeout ? 504 : 502, cat(kind == Grant::ColdBoot ? "cold boot" : "restore", " of '", name, "' failed: ", e.what()));
  }
  if (kind == Grant::ColdBoot) {
    scheduler_.snapshot_done(name, true);
    metrics_.cold_boots++;
    metrics_.cold_boot_ms.observe(s.start_ms);
  } else {
    metrics_.restores++;
    metrics_.restore_ms.observe(s.start_ms);
  }
  return std::nullopt;
}

ApiResponse Runtime::finish(const std::string& name, const Function& f, VmId id, VmKind kind, const AgentResult& r,
                            const json& timings) {
  if (r.reply.outcome == FAAS_TIMED_OUT || r.reply.outcome == FAAS_BAD_REQUEST) {
    stop(id);  // a VM whose handler hung is not trusted again
    scheduler_.discard(name);
    if (r.reply.outcome == FAAS_BAD_REQUEST) return error(502, "the agent refused the request");
    metrics_.handler_timeouts++;
    return {504, json{{"error", cat("handler timed out after ", f.spec.timeout_ms, " ms and was killed")},
                      {"timed_out", true}, {"vm", vm_kind_name(kind)}, {"timings", timings}}.dump()};
  }
  metrics_.invocations++;
  std::shared_ptr<const Function> now_registered = function(name);
  bool reusable = now_registered && now_registered->generation == f.generation;
  if (!scheduler_.release(name, id, reusable, Clock::now())) stop(id);
  json out = {{"vm", vm_kind_name(kind)}, {"output", r.output}, {"output_truncated", (r.reply.flags & FAAS_FLAG_TRUNCATED) != 0},
              {"timings", timings}};
  if (r.reply.outcome == FAAS_EXITED) out["exit_status"] = r.reply.status;
  else if (r.reply.outcome == FAAS_SIGNALED) out["exit_status"] = nullptr, out["signal"] = r.reply.status;
  else out["exit_status"] = nullptr, out["spawn_error"] = std::strerror(r.reply.status);
  try {
    return {200, out.dump()};  // the strict dump throws on output that is not UTF-8
  } catch (const json::type_error&) {
    // Then "output" is text with the invalid bytes replaced, and the exact bytes come in base64.
    out["output_base64"] = base64(r.output);
    return {200, out.dump(-1, ' ', false, json::error_handler_t::replace)};
  }
}

void Runtime::expire_idle() {
  for (const Expired& e : scheduler_.expire(Clock::now())) stop(e.vm);
}

std::string Runtime::metrics_text() const {
  PoolCounts c = scheduler_.host_counts();
  Gauges g;
  g.starting = starting_;
  g.busy = busy_;
  g.idle = c.idle;
  g.waiting = c.waiting;
  {
    std::lock_guard lock(mu_);
    g.functions = functions_.size();
  }
  return metrics_.render(g);
}

void Runtime::shutdown() {
  if (closed_.exchange(true)) return;
  scheduler_.shutdown();
  std::map<VmId, Vm> vms;
  {
    std::lock_guard lock(mu_);
    vms.swap(vms_);
    functions_.clear();
  }
  for (auto& [id, v] : vms) v.vm->kill();
  vms.clear();  // reaps the processes whose last owner this is, removes their folders
  std::error_code ec;
  fs::remove_all(fs::path(options_.state_dir) / "vms", ec);
  fs::remove_all(fs::path(options_.state_dir) / "functions", ec);
  fs::remove_all(fs::path(options_.state_dir) / "jails", ec);
  fs::remove(fs::path(options_.state_dir) / "netns", ec);  // empty unless a VM is still held
}

JailSpec Runtime::jail_for(const Function& f, VmId id) const {
  JailSpec j;
  j.jailer = options_.jailer;
  j.base_dir = fs::absolute(fs::path(options_.state_dir) / "jails").string();
  j.parent_cgroup = kParentCgroup;
  j.cgroup_root = cgroup_root_;
  j.uid = options_.jail_uid_base + uint32_t(id);
  j.gid = options_.jail_gid_base + uint32_t(f.generation);
  j.cgroups = {cat("memory.max=", (uint64_t(f.spec.mem_mib) + 64) << 20), cat("cpu.max=", f.spec.vcpus * 100000, " 100000")};
  return j;
}

}  // namespace ember::faas
