// The jail's file system: <base>/<exec name>/<id>/root holding a copy of the executable, entered
// through a new mount namespace and pivot_root, with the device nodes ember opens.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "jailer/args.h"
#include "jailer/undo.h"

namespace ember::jailer {

// Creates the chroot folder (refusing an id already in use: its folder exists), owned by
// uid:gid so that ember can create its sockets there, and copies the executable into it.
// Returns the chroot's path. `undo` removes what this call created.
std::string create_chroot(const JailerArgs& args, Undo& undo);

// Recursively removes `name` under the folder open as `dirfd`, without following symlinks.
void remove_tree_at(int dirfd, const std::string& name);

// A character device of the host to recreate inside the jail.
struct HostDevice {
  std::string path;
  dev_t rdev;
};

// /dev/kvm, /dev/net/tun and /dev/urandom (required) and /dev/userfaultfd (when the host has
// it): read before pivot_root, after which the host's /dev is out of reach.
std::vector<HostDevice> host_devices();

// New mount namespace, every mount a slave of the host's (nothing propagates back; the host's
// later mounts under a shared mount above the chroot appear inside), the chroot bind-mounted onto itself and made the
// root with pivot_root; the old root is detached, so nothing of the host stays reachable.
void pivot_into(const std::string& chroot);

// mknod inside the (new) root with the host's numbers, mode 0600, owned by uid:gid.
void make_device_nodes(const std::vector<HostDevice>& devices, uid_t uid, gid_t gid);

}  // namespace ember::jailer
