// ember-jailer: starts ember (or any static executable) jailed, Firecracker's jailer's way.
// main reads in the order the steps happen; it is the one place errors are reported.
#include <unistd.h>

#include <string>
#include <vector>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "jailer/args.h"
#include "jailer/cgroup.h"
#include "jailer/chroot.h"
#include "jailer/process.h"
#include "jailer/undo.h"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer reads /proc/PID/task at exit, which a jailer failing inside the jail no longer
// sees; it would then end with an error of its own (sanitized builds only).
extern "C" int __lsan_is_turned_off() { return 1; }
#endif

namespace {
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

void report(const std::string& message) { ember::write_all(STDERR_FILENO, "ember-jailer: error: " + message + "\n"); }
}  // namespace

int main(int argc, char** argv) {
  using namespace ember;
  using namespace ember::jailer;
  JailerArgs args;
  std::vector<CgroupDir> cgroups;
  try {
    args = parse_jailer_args(std::vector<std::string>(argv + 1, argv + argc));
    if (args.help) return write_all(STDOUT_FILENO, jailer_usage()) ? 0 : kExitFailure;
    cgroups = plan_cgroups(args, parse_mountinfo(read_file("/proc/self/mountinfo", "the mount table")));
    check_controllers(cgroups);
  } catch (const Error& e) {
    report(cat(e.what(), "\n(ember-jailer --help lists the options)"));
    return kExitUsage;
  }

  Undo undo;  // run if a step fails: bad input leaves nothing behind
  Chroot chroot;  // its lock is held through exec, as long as ember runs, and while undo runs
  try {
    close_inherited_fds();
    clear_environment();
    chroot = create_chroot(args, undo);
    apply_resource_limits(args);
    std::function<void()> leave_cgroups = enter_cgroups(cgroups, undo);
    if (args.netns) join_netns(*args.netns);
    std::vector<HostDevice> devices = host_devices();  // the host's /dev goes out of reach next
    UniqueFd dev_null = args.daemonize ? open_dev_null() : UniqueFd();
    pivot_into(chroot.root);
    make_jail_folders(devices, args.uid, args.gid, undo);
    if (args.new_pid_ns) enter_new_pid_ns("/" + args.exec_name + ".pid", leave_cgroups);
    if (args.daemonize) daemonize(std::move(dev_null), leave_cgroups);  // in the child: ember leads the session
    drop_privileges_and_exec(args);
  } catch (const Error& e) {
    undo.run();
    report(e.what());
    return kExitFailure;
  }
}
