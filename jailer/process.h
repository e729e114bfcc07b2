// The jailer process itself: what it inherits (descriptors, environment), its limits, the
// namespaces it joins or creates, and finally who it runs as and what it execs.
#pragma once

#include <functional>
#include <string>

#include "base/util/unique_fd.h"
#include "jailer/args.h"

namespace ember::jailer {

// Every descriptor above stderr, and the whole environment: ember starts with nothing the
// jailer's caller had open or set.
void close_inherited_fds();
void clear_environment();

// RLIMIT_NOFILE (default 2048) and, when given, RLIMIT_FSIZE; soft and hard alike.
void apply_resource_limits(const JailerArgs& args);

void join_netns(const std::string& path);

// /dev/null, opened while the host's /dev is still reachable, for --daemonize.
UniqueFd open_dev_null();

// New session (forking first when the jailer leads a process group, which setsid refuses;
// the parent then calls `leave_cgroups` and exits 0), stdin, stdout and stderr on `dev_null`.
void daemonize(UniqueFd dev_null, const std::function<void()>& leave_cgroups);

// Forks into a new PID namespace: returns in the child, which is its PID 1; the parent writes
// the child's pid (as the host sees it) to `pid_file`, calls `leave_cgroups` and exits 0. The
// child goes on only once the parent is gone.
void enter_new_pid_ns(const std::string& pid_file, const std::function<void()>& leave_cgroups);

// setgroups(0), setresgid, setresuid, then execs /<exec name> --id ID [args after --] with an
// empty environment. Returns only by throwing, as root again so that the caller can clean up.
[[noreturn]] void drop_privileges_and_exec(const JailerArgs& args);

}  // namespace ember::jailer
