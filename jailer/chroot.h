// The jail's file system: <base>/<exec name>/<id>/root holding a copy of the executable, entered
// through a new mount namespace and pivot_root, with the device nodes ember opens.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/util/unique_fd.h"
#include "jailer/args.h"
#include "jailer/undo.h"

namespace ember::jailer {

// The jail's folder and the lock that says its id is in use.
struct Chroot {
  std::string root;  // <base>/<exec name>/<id>/root
  // flock'ed <base>/<exec name>/<id>/jailer.lock; not close-on-exec, so that ember holds it for
  // as long as it runs.
  UniqueFd lock;
};

// Creates the chroot folder, or takes the one that exists (Kata Containers makes it, with
// files in it, before running the jailer; a jail of the same id that died left it), owned by
// uid:gid so that ember can create its sockets there, and copies the executable into it. An id
// whose lock a live jail holds is refused. `undo` removes what this call created, never what
// was there before.
Chroot create_chroot(const JailerArgs& args, Undo& undo);

// Recursively removes `name` under the folder open as `dirfd`, without following symlinks.
void remove_tree_at(int dirfd, const std::string& name);

// A character device of the host to recreate inside the jail.
struct HostDevice {
  std::string path;
  dev_t rdev;
};

// /dev/kvm, /dev/net/tun, /dev/urandom and /dev/userfaultfd, those the host has: read before
// pivot_root, after which the host's /dev is out of reach.
std::vector<HostDevice> host_devices();

// New mount namespace, every mount a slave of the host's (nothing propagates back; the host's
// later mounts under a shared mount above the chroot appear inside), the chroot bind-mounted onto itself and made the
// root with pivot_root; the old root is detached, so nothing of the host stays reachable.
void pivot_into(const std::string& chroot);

// Inside the (new) root: /run (for the default API socket) and the device nodes (mknod with
// the host's numbers, mode 0600), owned by uid:gid; nodes an earlier jail left are made again.
void make_jail_folders(const std::vector<HostDevice>& devices, uid_t uid, gid_t gid, Undo& undo);

}  // namespace ember::jailer
