#include "jailer/chroot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <memory>

#include "vmm/util/error.h"
#include "vmm/util/unique_fd.h"

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

void copy_file(const std::string& from, const std::string& to) {
  // O_NOFOLLOW and O_NONBLOCK: the file checked earlier may have been swapped for a symlink or
  // a FIFO (whose open would wait for a writer) since.
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!in.valid() || ::fstat(in.get(), &st) < 0) fail("cannot read --exec-file '", from, "': ", errno_text());
  if (!S_ISREG(st.st_mode)) fail("--exec-file '", from, "' is no longer a regular file");
  // Root's copy, which the jail's uid may run but not change; no set-id bits.
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

std::string create_chroot(const JailerArgs& args, Undo& undo) {
  std::string base = args.chroot_base_dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string exec_dir = (base == "/" ? "" : base) + "/" + args.exec_name;
  make_dirs(exec_dir, &undo);
  std::string id_dir = exec_dir + "/" + args.id;
  if (::mkdir(id_dir.c_str(), 0755) < 0) {
    if (errno == EEXIST) fail("--id '", args.id, "' is already in use: ", id_dir, " exists");
    fail("cannot create ", id_dir, ": ", errno_text());
  }
  auto exec_dir_fd = std::make_shared<UniqueFd>(open_dir(exec_dir));
  undo.add([exec_dir_fd, id = args.id] { remove_tree_at(exec_dir_fd->get(), id); });
  std::string root = id_dir + "/root";
  if (::mkdir(root.c_str(), 0755) < 0 || ::chown(root.c_str(), args.uid, args.gid) < 0) {
    fail("cannot create ", root, ": ", errno_text());
  }
  copy_file(args.exec_file, root + "/" + args.exec_name);
  return root;
}

std::vector<HostDevice> host_devices() {
  std::vector<HostDevice> devices;
  for (const char* path : {"/dev/kvm", "/dev/net/tun", "/dev/urandom", "/dev/userfaultfd"}) {
    struct stat st {};
    bool found = ::stat(path, &st) == 0 && S_ISCHR(st.st_mode);
    if (!found && std::string(path) == "/dev/userfaultfd") continue;  // Linux before 6.1 has none
    if (!found) fail("the host has no character device ", path, " to give the jail");
    devices.push_back({path, st.st_rdev});
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

void make_device_nodes(const std::vector<HostDevice>& devices, uid_t uid, gid_t gid) {
  for (const HostDevice& d : devices) {
    make_dirs(d.path.substr(0, d.path.rfind('/')), nullptr);
    if (::mknod(d.path.c_str(), S_IFCHR | 0600, d.rdev) < 0 || ::chown(d.path.c_str(), uid, gid) < 0) {
      fail("cannot create ", d.path, " (", major(d.rdev), ":", minor(d.rdev), ") in the jail: ", errno_text());
    }
  }
}

}  // namespace ember::jailer
