// One VM: an ember process started with --api-sock in its own folder (api.sock, vsock.sock,
// ember.log, pid), configured over ember's API. The destructor kills the process, reaps it
// and removes the folder, so a VM's resources live exactly as long as this object.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "examples/faas/function_spec.h"
#include "examples/faas/socket_io.h"
#include "examples/faas/vm_network.h"

namespace ember::faas {

struct ApiReply {
  int status = 0;
  std::string body;
};

// One request to ember's API socket; the reply body is bounded (64 KiB). Throws Error.
ApiReply ember_api(const std::string& socket, const std::string& method, const std::string& path,
                   const std::string& body, Deadline deadline);

// How a VM is jailed (ember-jailer): its own uid, a gid per function (the function's snapshot
// files are group-readable by it only), a chroot under base_dir, a cgroup <parent>/<id> with
// these FILE=VALUE limits.
struct JailSpec {
  std::string jailer;
  std::string base_dir;
  std::string parent_cgroup;
  std::string cgroup_root;  // where cgroup2 is mounted, to remove the VM's cgroup
  uint32_t uid = 0, gid = 0;
  std::vector<std::string> cgroups;
};

// Makes `to` a file with host_path's contents that gid can read: a hard link when host_path is
// world-readable or group-readable by gid (and on the same file system), else a copy owned by
// root:gid, mode 0640. Throws Error naming the files.
void place_file(const std::string& host_path, const std::string& to, uint32_t gid);

class EmberVm {
 public:
  // Starts `ember_bin --api-sock DIR/api.sock --prefault off` with DIR created here (through
  // ember-jailer when `jail` is given: the socket is then in the chroot), and waits for the
  // socket to answer. With a network, ember runs in its namespace (the jailer's --netns) and
  // the VM owns it. Throws Error (and leaves nothing behind) when it does not.
  static std::unique_ptr<EmberVm> spawn(const std::string& ember_bin, const std::string& dir, const JailSpec* jail,
                                        std::unique_ptr<VmNetwork> network, Deadline deadline);
  ~EmberVm();
  EmberVm(const EmberVm&) = delete;
  EmberVm& operator=(const EmberVm&) = delete;

  // Boots the function's image with a vsock device (CID 3) at vsock_path(), and a virtio-net
  // device on the network's tap when the VM has one.
  void cold_boot(const FunctionSpec& spec, Deadline deadline);
  // Pauses, writes a Full snapshot (snapshot_path, mem_path), resumes.
  void snapshot(const std::string& snapshot_path, const std::string& mem_path, Deadline deadline);
  // Loads a snapshot into this (unconfigured) ember, memory mapped privately from mem_path,
  // vsock socket moved to vsock_path(), and resumes it. Jailed, the function's image files are
  // placed in the chroot first (ember opens them again at restore).
  void restore(const std::string& snapshot_path, const std::string& mem_path, const FunctionSpec& spec,
               Deadline deadline);

  // Points the VM's "code" drive at `host_path` (PATCH /drives/code with path_on_host; jailed,
  // the file is placed in the chroot as `name` first); the guest sees a configuration change.
  void swap_code(const std::string& host_path, const std::string& name, Deadline deadline);

  // False once the ember process has exited (it is reaped then).
  bool alive();
  // Kills the process now (the destructor still reaps it and removes the folder).
  void kill();
  const std::string& vsock_path() const { return vsock_; }
  // The VM's network, or null.
  const VmNetwork* network() const { return network_.get(); }
  // The last lines of ember's output (its log and the guest console), for error messages.
  std::string log_tail() const;

 private:
  EmberVm(std::string dir, pid_t pid);
  void call(const char* method, const char* path, const std::string& body, Deadline deadline);
  // PUT /serial with a rate limiter: the console part of ember.log stays bounded.
  void limit_console(Deadline deadline);
  // The path ember is to open for `host_path`: itself, or (jailed) `/name` in the chroot
  // (place_file).
  std::string place(const std::string& host_path, const std::string& name, uint32_t gid);
  // The image's paths as ember names them (placed in the chroot when jailed).
  FunctionSpec placed_image(const FunctionSpec& spec);

  std::string dir_, api_, vsock_;
  std::string vsock_in_vm_;  // vsock_ as ember names it (inside the chroot when jailed)
  std::string jail_dir_;     // <base>/<exec name>/<id>, removed with the VM ("" unjailed)
  std::string jail_root_;
  std::string cgroup_dir_;   // removed after the process is reaped
  uint32_t gid_ = 0;
  pid_t pid_;
  std::unique_ptr<VmNetwork> network_;  // after pid_: removed once ember is reaped
};

}  // namespace ember::faas
