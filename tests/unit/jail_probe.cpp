// Run by ember-jailer in the root integration tests (jailer_root_test.cpp) in ember's place:
// reports what a jailed process sees from inside (ids, groups, root folder, limits,
// environment, descriptors, device nodes, session) as "key=value" lines, then either waits
// for stdin to close (so the test can inspect /proc/PID from outside) or, with
// --report-file PATH, writes the report there and exits (for --daemonize, where stdio is
// /dev/null). Statically linked: the jail holds nothing but this file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

extern char** environ;

namespace {

std::string ids(uid_t r, uid_t e, uid_t s) { return std::to_string(r) + "," + std::to_string(e) + "," + std::to_string(s); }

std::string limit(int resource) {
  rlimit l{};
  ::getrlimit(resource, &l);
  auto text = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v); };
  return text(l.rlim_cur) + "," + text(l.rlim_max);
}

std::string node(const struct stat& st) {
  return std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
}

std::string report(int argc, char** argv) {
  std::string out;
  auto line = [&](const std::string& key, const std::string& value) { out += key + "=" + value + "\n"; };
  std::string args;
  for (int i = 0; i < argc; ++i) args += (i ? " " : "") + std::string(argv[i]);
  line("args", args);
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  ::getresuid(&ru, &eu, &su);
  ::getresgid(&rg, &eg, &sg);
  line("uid", ids(ru, eu, su));
  line("gid", ids(rg, eg, sg));
  gid_t groups[64];
  int n = ::getgroups(64, groups);
  std::string g;
  for (int i = 0; i < n; ++i) g += (i ? "," : "") + std::to_string(groups[i]);
  line("groups", g);
  line("pid", std::to_string(::getpid()));
  line("session_leader", ::getsid(0) == ::getpid() ? "yes" : "no");
  char cwd[4096] = "";
  line("cwd", ::getcwd(cwd, sizeof(cwd)) ? cwd : "?");
  std::vector<std::string> entries;
  if (DIR* d = ::opendir("/")) {
    while (dirent* e = ::readdir(d)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") entries.push_back(e->d_name);
    }
    ::closedir(d);
  }
  std::sort(entries.begin(), entries.end());
  std::string listing;
  for (const std::string& e : entries) listing += (listing.empty() ? "" : ",") + e;
  line("root_entries", listing);
  line("nofile", limit(RLIMIT_NOFILE));
  line("fsize", limit(RLIMIT_FSIZE));
  int env_count = 0;
  for (char** e = environ; *e; ++e) ++env_count;
  line("env_count", std::to_string(env_count));
  std::string fds, stdio;
  for (int fd = 0; fd < 1024; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) fds += (fds.empty() ? "" : ",") + std::to_string(fd);
    struct stat st {};
    if (fd <= 2) stdio += (fd ? "," : "") + (::fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) ? node(st) : std::string("-"));
  }
  line("fds", fds);
  line("stdio", stdio);
  for (const char* dev : {"/dev/kvm", "/dev/net/tun", "/dev/urandom", "/dev/userfaultfd"}) {
    struct stat st {};
    if (::stat(dev, &st) < 0) {
      line(dev, "missing");
    } else {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%o", st.st_mode & 07777);
      line(dev, std::string(S_ISCHR(st.st_mode) ? "char " : "other ") + node(st) + " " + std::to_string(st.st_uid) + ":" +
                    std::to_string(st.st_gid) + " " + mode);
    }
  }
  return out;
}

bool write_all(int fd, const std::string& text) {
  return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string text = report(argc, argv);
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--report-file") {
      std::string tmp = std::string(argv[i + 1]) + ".tmp";
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      bool ok = fd >= 0 && write_all(fd, text) && ::close(fd) == 0 && ::rename(tmp.c_str(), argv[i + 1]) == 0;
      return ok ? 0 : 1;
    }
  }
  if (!write_all(STDOUT_FILENO, text + "READY\n")) return 1;
  char c;
  while (::read(STDIN_FILENO, &c, 1) > 0) {
  }
  return 0;
}
