#include "examples/faas/ember_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <exception>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/util/error.h"

namespace ember::faas {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxApiReply = 64 * 1024;
constexpr uint32_t kGuestCid = 3;
constexpr const char* kGuestMac = "06:00:ac:10:00:02";
// The guest console in ember.log: 64 KiB at once, then 64 KiB a minute (ember's serial rate
// limiter drops the rest), so a guest printing without end cannot fill the daemon's disk.
constexpr uint64_t kConsoleBytes = 64 * 1024;
constexpr uint64_t kConsoleRefillMs = 60'000;

size_t content_length(const std::string& head) {
  for (const char* name : {"\r\nContent-Length:", "\r\ncontent-length:"}) {
    size_t at = head.find(name);
    if (at != std::string::npos) return std::strtoul(head.c_str() + at + std::strlen(name), nullptr, 10);
  }
  return 0;
}

std::string boot_args(const FunctionSpec& spec) {
  std::string args = "console=ttyS0 reboot=k panic=1 quiet";
  if (!spec.rootfs.empty()) args += " rootfstype=ext4 init=/init";
  return args;
}

}  // namespace

ApiReply ember_api(const std::string& socket, const std::string& method, const std::string& path,
                   const std::string& body, Deadline deadline) {
  UniqueFd fd = connect_unix(socket);
  std::string req = cat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
                        "Content-Type: application/json\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
  std::string what = cat("ember API ", method, " ", path);
  write_all(fd.get(), req.data(), req.size(), deadline, what.c_str());
  std::string in;
  char buf[4096];
  size_t head_end = std::string::npos;
  for (;;) {
    size_t n = read_some(fd.get(), buf, sizeof buf, deadline, what.c_str());
    in.append(buf, n);
    if (in.size() > kMaxApiReply) fail(what, ": reply over ", kMaxApiReply, " bytes");
    if (head_end == std::string::npos) head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos && in.size() >= head_end + 4 + content_length(in.substr(0, head_end))) break;
    if (n == 0) fail(what, ": connection closed mid-reply");
  }
  ApiReply r;
  if (in.rfind("HTTP/1.1 ", 0) != 0) fail(what, ": not an HTTP reply");
  r.status = std::atoi(in.c_str() + 9);
  r.body = in.substr(head_end + 4);
  return r;
}

EmberVm::EmberVm(std::string dir, pid_t pid)
    : dir_(std::move(dir)), api_(dir_ + "/api.sock"), vsock_(dir_ + "/vsock.sock"), vsock_in_vm_(vsock_), pid_(pid) {}

std::unique_ptr<EmberVm> EmberVm::spawn(const std::string& ember_bin, const std::string& dir, const JailSpec* jail,
                                        std::unique_ptr<VmNetwork> network, Deadline deadline) {
  if (mkdir(dir.c_str(), 0700) != 0) fail("creating ", dir, ": ", std::strerror(errno));
  std::string api = dir + "/api.sock", log = dir + "/ember.log";
  std::vector<std::string> args;
  std::string id = cat("faas-", getpid(), "-", fs::path(dir).filename().string());
  if (jail) {
    args = {jail->jailer, "--id", id, "--exec-file", ember_bin, "--uid", std::to_string(jail->uid),
            "--gid", std::to_string(jail->gid), "--chroot-base-dir", jail->base_dir,
            "--parent-cgroup", jail->parent_cgroup};
    for (const std::string& c : jail->cgroups) args.insert(args.end(), {"--cgroup", c});
    if (network) args.insert(args.end(), {"--netns", network->netns_path()});
    args.insert(args.end(), {"--", "--api-sock", "/api.sock", "--prefault", "off"});
  } else {
    args = {ember_bin, "--api-sock", api, "--prefault", "off"};
  }
  std::ofstream(dir + "/jail-id") << (jail ? id : "") << "\n";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group: a Ctrl-C meant for the daemon does not reach the VMs directly;
  // the daemon stops them itself.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = 0;
  std::exception_ptr no_namespace;  // entering the network namespace failed
  auto start = [&] { rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ); };
  try {
    // Unjailed, ember is started from a thread inside the namespace (the jailer joins it itself).
    if (network && !jail) run_in_network_namespace(network->netns_path(), start);
    else start();
  } catch (const Error&) {
    no_namespace = std::current_exception();
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (no_namespace) {
    std::filesystem::remove_all(dir);
    std::rethrow_exception(no_namespace);
  }
  if (rc != 0) {
    std::filesystem::remove_all(dir);
    fail("starting ", argv[0], ": ", std::strerror(rc));
  }
  std::unique_ptr<EmberVm> vm(new EmberVm(dir, pid));
  vm->network_ = std::move(network);
  std::ofstream(dir + "/pid") << pid << "\n";
  if (jail) {
    vm->jail_dir_ = cat(jail->base_dir, "/", fs::path(ember_bin).filename().string(), "/", id);
    vm->jail_root_ = vm->jail_dir_ + "/root";
    vm->api_ = vm->jail_root_ + "/api.sock";
    vm->vsock_ = vm->jail_root_ + "/vsock.sock";
    vm->vsock_in_vm_ = "/vsock.sock";
    vm->cgroup_dir_ = cat(jail->cgroup_root, "/", jail->parent_cgroup, "/", id);
    vm->gid_ = jail->gid;
  }
  for (;;) {
    try {
      ember_api(vm->api_, "GET", "/", "", deadline);
      return vm;
    } catch (const Error& e) {
      if (!vm->alive()) fail("ember exited before its API answered: ", vm->log_tail());
      if (std::chrono::steady_clock::now() >= deadline) throw Timeout(cat("ember's API did not answer: ", e.what()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

EmberVm::~EmberVm() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (!jail_dir_.empty()) std::filesystem::remove_all(jail_dir_, ec);
  if (!cgroup_dir_.empty()) rmdir(cgroup_dir_.c_str());
}

void place_file(const std::string& host_path, const std::string& to, uint32_t gid) {
  struct stat st {};
  if (stat(host_path.c_str(), &st) != 0) fail(host_path, ": ", std::strerror(errno));
  bool readable = (st.st_mode & S_IROTH) || (st.st_gid == gid && (st.st_mode & S_IRGRP));
  if (readable && link(host_path.c_str(), to.c_str()) == 0) return;
  std::error_code ec;
  std::filesystem::copy_file(host_path, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) fail("copying ", host_path, " to ", to, ": ", ec.message());
  if (chown(to.c_str(), 0, gid) != 0 || chmod(to.c_str(), 0640) != 0) fail(to, ": ", std::strerror(errno));
}

std::string EmberVm::place(const std::string& host_path, const std::string& name, uint32_t gid) {
  if (jail_root_.empty()) return host_path;
  place_file(host_path, jail_root_ + "/" + name, gid);
  return "/" + name;
}

FunctionSpec EmberVm::placed_image(const FunctionSpec& spec) {
  FunctionSpec p = spec;
  p.kernel = place(spec.kernel, "vmlinux", gid_);
  if (!spec.initramfs.empty()) p.initramfs = place(spec.initramfs, "initramfs", gid_);
  if (!spec.rootfs.empty()) p.rootfs = place(spec.rootfs, "rootfs", gid_);
  if (!spec.code.empty()) p.code = place(spec.code, "code", gid_);
  return p;
}

bool EmberVm::alive() {
  if (pid_ <= 0) return false;
  if (waitpid(pid_, nullptr, WNOHANG) != pid_) return true;
  pid_ = -1;
  return false;
}

void EmberVm::kill() {
  if (pid_ > 0) ::kill(pid_, SIGKILL);
}

void EmberVm::call(const char* method, const char* path, const std::string& body, Deadline deadline) {
  ApiReply r = ember_api(api_, method, path, body, deadline);
  if (r.status / 100 != 2) fail("ember ", method, " ", path, ": ", r.status, " ", r.body);
}

void EmberVm::cold_boot(const FunctionSpec& function, Deadline deadline) {
  using nlohmann::json;
  FunctionSpec spec = placed_image(function);
  limit_console(deadline);
  json boot = {{"kernel_image_path", spec.kernel}, {"boot_args", boot_args(spec)}};
  if (!spec.initramfs.empty()) boot["initrd_path"] = spec.initramfs;
  call("PUT", "/boot-source", boot.dump(), deadline);
  // PUT keeps ember's --prefault off (it is not part of Firecracker's JSON).
  call("PUT", "/machine-config", json{{"vcpu_count", spec.vcpus}, {"mem_size_mib", spec.mem_mib}}.dump(), deadline);
  call("PUT", "/vsock", json{{"guest_cid", kGuestCid}, {"uds_path", vsock_in_vm_}}.dump(), deadline);
  if (network_) {
    // Every VM's the same: clones of its snapshot open the tap of the same name in their own
    // namespace, and each guest is alone on its link.
    json n = {{"iface_id", "eth0"}, {"host_dev_name", kVmTapName}, {"guest_mac", kGuestMac}};
    call("PUT", "/network-interfaces/eth0", n.dump(), deadline);
  }
  if (!spec.rootfs.empty()) {
    json d = {{"drive_id", "rootfs"}, {"path_on_host", spec.rootfs}, {"is_root_device", true}, {"is_read_only", true}};
    call("PUT", "/drives/rootfs", d.dump(), deadline);
  }
  if (!spec.code.empty()) {
    json d = {{"drive_id", "code"}, {"path_on_host", spec.code}, {"is_root_device", false}, {"is_read_only", true}};
    call("PUT", "/drives/code", d.dump(), deadline);
  }
  call("PUT", "/actions", json{{"action_type", "InstanceStart"}}.dump(), deadline);
}

void EmberVm::limit_console(Deadline deadline) {
  using nlohmann::json;
  json limit = {{"size", kConsoleBytes}, {"refill_time", kConsoleRefillMs}};
  call("PUT", "/serial", json{{"rate_limiter", limit}}.dump(), deadline);
}

void EmberVm::snapshot(const std::string& snapshot_path, const std::string& mem_path, Deadline deadline) {
  using nlohmann::json;
  call("PATCH", "/vm", json{{"state", "Paused"}}.dump(), deadline);
  // Jailed, ember writes in its chroot; the files then move to their place, readable by the
  // function's gid only (every clone of the function runs with it).
  std::string snap_in_vm = jail_root_.empty() ? snapshot_path : "/vm.snap";
  std::string mem_in_vm = jail_root_.empty() ? mem_path : "/vm.mem";
  json create = {{"snapshot_type", "Full"}, {"snapshot_path", snap_in_vm}, {"mem_file_path", mem_in_vm}};
  call("PUT", "/snapshot/create", create.dump(), deadline);
  if (!jail_root_.empty()) {
    for (auto [from, to] : {std::pair{jail_root_ + snap_in_vm, snapshot_path}, std::pair{jail_root_ + mem_in_vm, mem_path}}) {
      if (rename(from.c_str(), to.c_str()) != 0 || chown(to.c_str(), 0, gid_) != 0 || chmod(to.c_str(), 0640) != 0) {
        fail("moving the snapshot file ", from, " to ", to, ": ", std::strerror(errno));
      }
    }
  }
  call("PATCH", "/vm", json{{"state", "Resumed"}}.dump(), deadline);
}

void EmberVm::restore(const std::string& snapshot_path, const std::string& mem_path, const FunctionSpec& spec,
                      Deadline deadline) {
  using nlohmann::json;
  placed_image(spec);
  limit_console(deadline);  // allowed before a snapshot load: not part of what it brings
  json load = {{"snapshot_path", place(snapshot_path, "vm.snap", gid_)},
               {"mem_backend", {{"backend_type", "File"}, {"backend_path", place(mem_path, "vm.mem", gid_)}}},
               {"resume_vm", true},
               {"vsock_override", {{"uds_path", vsock_in_vm_}}}};
  call("PUT", "/snapshot/load", load.dump(), deadline);
}

void EmberVm::swap_code(const std::string& host_path, const std::string& name, Deadline deadline) {
  using nlohmann::json;
  json d = {{"drive_id", "code"}, {"path_on_host", place(host_path, name, gid_)}};
  call("PATCH", "/drives/code", d.dump(), deadline);
}

std::string EmberVm::log_tail() const {
  std::ifstream in(dir_ + "/ember.log");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

}  // namespace ember::faas
