#include "jailer/process.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "base/util/error.h"
#include "base/util/file_io.h"

namespace ember::jailer {

void close_inherited_fds() {
  if (::close_range(STDERR_FILENO + 1, ~0U, 0) < 0) fail("cannot close inherited descriptors: ", errno_text());
}

void clear_environment() {
  if (::clearenv() != 0) fail("cannot clear the environment");
}

void apply_resource_limits(const JailerArgs& args) {
  auto set = [](int resource, const char* name, uint64_t value) {
    rlimit limit{value, value};
    if (::setrlimit(resource, &limit) < 0) fail("cannot set the ", name, " limit to ", value, ": ", errno_text());
  };
  set(RLIMIT_NOFILE, "no-file", args.no_file);
  if (args.fsize) set(RLIMIT_FSIZE, "fsize", *args.fsize);
}

void join_netns(const std::string& path) {
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) fail("cannot open --netns '", path, "': ", errno_text());
  if (::setns(ns.get(), CLONE_NEWNET) < 0) fail("cannot join the network namespace '", path, "': ", errno_text());
}

UniqueFd open_dev_null() {
  UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) fail("cannot open /dev/null: ", errno_text());
  return fd;
}

namespace {

// Forks; the child returns only once the parent has exited (its end of the pipe closes then).
// The parent leaves the jail's cgroups before it exits, so a child that fails later finds them
// holding only itself and its undo can remove them.
pid_t fork_then_wait_for_parent(const char* why) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) < 0) fail("cannot create a pipe to ", why, ": ", errno_text());
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  pid_t child = ::fork();
  if (child < 0) fail("cannot fork to ", why, ": ", errno_text());
  if (child > 0) {
    write_end.release();  // open until the parent exits
    return child;
  }
  write_end.reset();
  char byte;
  while (::read(read_end.get(), &byte, 1) < 0 && errno == EINTR) {
  }
  return 0;
}

}  // namespace

void daemonize(UniqueFd dev_null, const std::function<void()>& leave_cgroups) {
  if (::setsid() < 0) {
    if (fork_then_wait_for_parent("leave the process group") > 0) {
      leave_cgroups();
      ::_exit(0);
    }
    if (::setsid() < 0) fail("cannot start a new session: ", errno_text());
  }
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (::dup2(dev_null.get(), fd) < 0) fail("cannot redirect descriptor ", fd, " to /dev/null: ", errno_text());
  }
}

void enter_new_pid_ns(const std::string& pid_file, const std::function<void()>& leave_cgroups) {
  if (::unshare(CLONE_NEWPID) < 0) fail("cannot create a PID namespace: ", errno_text());
  pid_t child = fork_then_wait_for_parent("enter the new PID namespace");  // its first child is its PID 1
  if (child == 0) return;
  ::unlink(pid_file.c_str());  // left by an earlier jail of this id, which is dead: the id's lock is ours
  UniqueFd out(::open(pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (out.valid() && write_all(out.get(), std::to_string(child))) {
    leave_cgroups();
    ::_exit(0);
  }
  std::string why = errno_text();
  ::kill(child, SIGKILL);  // nobody could find it
  ::waitpid(child, nullptr, 0);  // gone from the cgroups before the undo removes them
  fail("cannot write the pid file ", pid_file, ": ", why);
}

void drop_privileges_and_exec(const JailerArgs& args) {
  if (::setgroups(0, nullptr) < 0) fail("cannot clear the supplementary groups: ", errno_text());
  // The saved ids stay 0 until execve, which replaces them with the effective ones (execve(2)),
  // so ember runs with none of root's ids or capabilities; if execve fails, the jailer can still
  // become root again and take back what it created.
  if (::setresgid(args.gid, args.gid, -1) < 0) fail("cannot switch to gid ", args.gid, ": ", errno_text());
  if (::setresuid(args.uid, args.uid, -1) < 0) fail("cannot switch to uid ", args.uid, ": ", errno_text());
  std::string path = "/" + args.exec_name;
  std::vector<std::string> strings = {path, "--id", args.id};
  strings.insert(strings.end(), args.exec_args.begin(), args.exec_args.end());
  std::vector<char*> argv;
  for (std::string& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  char* empty_env[] = {nullptr};
  ::execve(path.c_str(), argv.data(), empty_env);
  std::string why = errno_text();
  if (errno == ENOENT) why += " (a dynamically linked executable needs a loader the jail does not have: give a static one)";
  bool root_again = ::setresuid(0, 0, 0) == 0 && ::setresgid(0, 0, 0) == 0;
  fail("cannot run ", path, " in the jail: ", why, root_again ? "" : " (and cannot become root again to clean up)");
}

}  // namespace ember::jailer
