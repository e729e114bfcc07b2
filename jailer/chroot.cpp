#include "jailer/chroot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <memory>

#include "base/util/error.h"
#include "base/util/unique_fd.h"

namespace ember::jailer {

namespace {

UniqueFd open_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) fail("cannot open ", path, ": ", errno_text());
  return fd;
}

// mkdir -p of an absolute path; with `undo`, each folder this call creates is removed by it
// (when empty: another jail may have filled it since).
void make_dirs(const std::string& path, Undo* undo) {
  size_t slash = 0;
  do {
    slash = path.find('/', slash + 1);
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) == 0) {
      if (!undo) continue;
      size_t last = dir.rfind('/');
      auto parent_fd = std::make_shared<UniqueFd>(open_dir(last == 0 ? "/" : dir.substr(0, last)));
      undo->add([parent_fd, name = dir.substr(last + 1)] { ::unlinkat(parent_fd->get(), name.c_str(), AT_REMOVEDIR); });
    } else if (errno != EEXIST) {
      fail("cannot create ", dir, ": ", errno_text());
    }
  } while (slash != std::string::npos);
}

// Puts root's --exec-file at `to`, which the jail's uid may run but not change, without set-id
// bits. A file that already is that (owned by root, runnable by others, writable by root only,
// no set-id bits) is hard-linked when on the same file system: a many-MiB binary is not copied
// (and later deleted) for every jail. Anything else is copied with those properties.
void place_exec_file(const std::string& from, const std::string& to) {
  // O_NOFOLLOW and O_NONBLOCK: the file checked earlier may have been swapped for a symlink or
  // a FIFO (whose open would wait for a writer) since. The link and the copy are both made from
  // this descriptor, so what is checked below is what lands in the jail.
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!in.valid() || ::fstat(in.get(), &st) < 0) fail("cannot read --exec-file '", from, "': ", errno_text());
  if (!S_ISREG(st.st_mode)) fail("--exec-file '", from, "' is no longer a regular file");
  const bool linkable = st.st_uid == 0 && (st.st_mode & S_IXOTH) &&
                        !(st.st_mode & (S_IWGRP | S_IWOTH | S_ISUID | S_ISGID | S_ISVTX));
  if (linkable && ::linkat(in.get(), "", AT_FDCWD, to.c_str(), AT_EMPTY_PATH) == 0) return;
  // Not linkable, or another file system (EXDEV): a copy.
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (st.st_mode & S_IXUSR) ? 0755 : 0644));
  if (!out.valid()) fail("cannot create ", to, ": ", errno_text());
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = ::sendfile(out.get(), in.get(), &done, static_cast<size_t>(st.st_size - done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot copy '", from, "' to ", to, ": ", n < 0 ? errno_text() : "the file shrank");
  }
}

}  // namespace

void remove_tree_at(int dirfd, const std::string& name) {
  UniqueFd dir(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir.valid()) {
    std::unique_ptr<DIR, int (*)(DIR*)> entries(::fdopendir(::dup(dir.get())), ::closedir);
    while (dirent* e = entries ? ::readdir(entries.get()) : nullptr) {
      std::string entry = e->d_name;
      if (entry == "." || entry == "..") continue;
      if (::unlinkat(dir.get(), entry.c_str(), 0) < 0 && errno == EISDIR) remove_tree_at(dir.get(), entry);
    }
  }
  ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
}

namespace {

// flock on <id>/jailer.lock, beside the chroot and out of the jail's reach. The descriptor has
// no O_CLOEXEC: ember inherits it, so the lock lasts exactly as long as the jail's process, and
// the kernel drops it when that process ends, however it ends; a folder left by a dead jail is
// then free again. An existing folder is no sign of use: Kata Containers makes <id>/root before
// it runs the jailer.
UniqueFd lock_id(const std::string& id_dir, const std::string& id, Undo& undo) {
  std::string path = id_dir + "/jailer.lock";
  bool created = true;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
  if (!fd.valid() && errno == EEXIST) {
    created = false;
    fd.reset(::open(path.c_str(), O_RDONLY | O_NOFOLLOW));
  }
  if (!fd.valid()) fail("cannot open the jail's lock ", path, ": ", errno_text());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) fail("--id '", id, "' is already in use: a running jail holds ", path);
    fail("cannot lock ", path, ": ", errno_text());
  }
  // A jailer that failed removes the lock file it made: the lock taken must be on the file
  // still there, or a third jailer could take another one.
  struct stat held {}, now {};
  if (::fstat(fd.get(), &held) < 0 || ::stat(path.c_str(), &now) < 0 || held.st_dev != now.st_dev ||
      held.st_ino != now.st_ino) {
    fail("--id '", id, "' is already in use: ", path, " was replaced while being locked");
  }
  if (created) {
    auto dir_fd = std::make_shared<UniqueFd>(open_dir(id_dir));
    undo.add([dir_fd] { ::unlinkat(dir_fd->get(), "jailer.lock", 0); });
  }
  return fd;
}

// mkdir, accepting an existing folder; whether this call made it.
bool make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return true;
  if (errno != EEXIST) fail("cannot create ", path, ": ", errno_text());
  return false;
}

// On failure, removes `name` in `parent` with what was put in it since.
void undo_tree(const std::string& parent, const std::string& name, Undo& undo) {
  auto parent_fd = std::make_shared<UniqueFd>(open_dir(parent.empty() ? "/" : parent));
  undo.add([parent_fd, name] { remove_tree_at(parent_fd->get(), name); });
}

// chown of a folder that must not be a symlink (a jail of the same id may have left one).
void own_dir(const std::string& path, uid_t uid, gid_t gid) {
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid() || ::fchown(dir.get(), uid, gid) < 0) fail("cannot give ", path, " to the jail's uid: ", errno_text());
}

}  // namespace

Chroot create_chroot(const JailerArgs& args, Undo& undo) {
  std::string base = args.chroot_base_dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string exec_dir = (base == "/" ? "" : base) + "/" + args.exec_name;
  make_dirs(exec_dir, &undo);
  std::string id_dir = exec_dir + "/" + args.id;
  bool made_id_dir = make_dir(id_dir, 0755);
  Chroot jail;
  jail.lock = lock_id(id_dir, args.id, undo);
  // Only once the id is ours: a jailer refused as the second of two could otherwise remove
  // the folder the first one is using.
  if (made_id_dir) undo_tree(exec_dir, args.id, undo);
  jail.root = id_dir + "/root";
  if (make_dir(jail.root, 0755)) undo_tree(id_dir, "root", undo);
  own_dir(jail.root, args.uid, args.gid);
  // A binary left by an earlier jail of this id is replaced (unlink first: it may be a symlink
  // that jail put there).
  std::string copy = jail.root + "/" + args.exec_name;
  if (::unlink(copy.c_str()) < 0 && errno != ENOENT) fail("cannot replace ", copy, ": ", errno_text());
  place_exec_file(args.exec_file, copy);
  auto root_fd = std::make_shared<UniqueFd>(open_dir(jail.root));
  undo.add([root_fd, name = args.exec_name] { ::unlinkat(root_fd->get(), name.c_str(), 0); });
  return jail;
}

std::vector<HostDevice> host_devices() {
  std::vector<HostDevice> devices;
  for (const char* path : {"/dev/kvm", "/dev/net/tun", "/dev/urandom", "/dev/userfaultfd"}) {
    struct stat st {};
    // One the host lacks (no KVM module loaded; Linux before 6.1 has no /dev/userfaultfd) is
    // left out: ember, jailed, then names the missing file when it needs it, as unjailed.
    if (::stat(path, &st) == 0 && S_ISCHR(st.st_mode)) devices.push_back({path, st.st_rdev});
  }
  return devices;
}

void pivot_into(const std::string& chroot) {
  if (::unshare(CLONE_NEWNS) < 0) fail("cannot create a mount namespace: ", errno_text());
  // Slaves, as Firecracker's jailer makes them: nothing done here propagates back to the
  // host's mounts, while what the host mounts later under a shared mount above the jail
  // (Kata Containers bind-mounts the guest's kernel and disks into the jail after starting
  // the jailer) appears inside.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0) {
    fail("cannot make the mounts slaves of the host's: ", errno_text(),
         errno == EINVAL ? " (the jailer's own root is not a mount point: it cannot run inside a plain chroot)" : "");
  }
  // pivot_root needs the new root to be a mount point.
  if (::mount(chroot.c_str(), chroot.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    fail("cannot bind-mount ", chroot, " onto itself: ", errno_text());
  }
  if (::chdir(chroot.c_str()) < 0) fail("cannot enter ", chroot, ": ", errno_text());
  // pivot_root(".", ".") stacks the old root on top of the new one, where unmounting "."
  // detaches it (pivot_root(2)): no temporary folder for it is left in the jail.
  if (::syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root into ", chroot, " failed: ", errno_text());
  if (::umount2(".", MNT_DETACH) < 0) fail("cannot detach the old root: ", errno_text());
  if (::chdir("/") < 0) fail("cannot enter the new root: ", errno_text());
}

void make_jail_folders(const std::vector<HostDevice>& devices, uid_t uid, gid_t gid, Undo& undo) {
  // /run for ember's default API socket (/run/firecracker.socket), as Firecracker's jailer makes it.
  if (make_dir("/run", 0700)) undo_tree("", "run", undo);
  own_dir("/run", uid, gid);
  for (const HostDevice& d : devices) {
    make_dirs(d.path.substr(0, d.path.rfind('/')), &undo);
    // A node left by an earlier jail of this id is made again: its numbers, mode or owner may
    // not be this host's or this jail's.
    if (::unlink(d.path.c_str()) < 0 && errno != ENOENT) fail("cannot replace ", d.path, " in the jail: ", errno_text());
    if (::mknod(d.path.c_str(), S_IFCHR | 0600, d.rdev) < 0 || ::chown(d.path.c_str(), uid, gid) < 0) {
      fail("cannot create ", d.path, " (", major(d.rdev), ":", minor(d.rdev), ") in the jail: ", errno_text());
    }
    undo.add([path = d.path] { ::unlink(path.c_str()); });
  }
}

}  // namespace ember::jailer
