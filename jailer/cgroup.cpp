#include "jailer/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/unique_fd.h"

namespace ember::jailer {

namespace {

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> parts;
  for (size_t start = 0; start <= text.size();) {
    size_t end = std::min(text.find(sep, start), text.size());
    parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo (octal).
std::string unescape(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    bool octal = field[i] == '\\' && i + 3 < field.size();
    if (octal && std::all_of(field.begin() + i + 1, field.begin() + i + 4, [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::string controller_of(const std::string& file) { return file.substr(0, file.find('.')); }

std::string join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

// The cgroup file `rel` under the mount open as `root`; `shown` names it in messages.
void write_at(int root, const std::string& rel, const std::string& value, const std::string& shown) {
  UniqueFd fd(::openat(root, rel.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || !write_all(fd.get(), value)) fail("cannot write '", value, "' to ", shown, "/", rel, ": ", errno_text());
}

std::string read_at(int root, const std::string& rel) {
  UniqueFd fd(::openat(root, rel.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[4096];
  ssize_t n = fd.valid() ? ::read(fd.get(), buf, sizeof(buf)) : -1;
  std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

void check_offered(int root, const std::string& rel, const CgroupDir& dir) {
  std::vector<std::string> offered = split(read_at(root, join(rel, "cgroup.controllers")), ' ');
  for (const std::string& controller : dir.enable) {
    if (!contains(offered, controller)) {
      fail("the cgroup v2 hierarchy at ", rel.empty() ? dir.mount : dir.mount + "/" + rel, " has no '", controller,
           "' controller (a v1 hierarchy may hold it: try --cgroup-version 1)");
    }
  }
}

// v2 offers a controller to a child only when the parent lists it in cgroup.subtree_control.
void enable_controllers(int root, const std::string& rel, const CgroupDir& dir) {
  check_offered(root, rel, dir);
  for (const std::string& controller : dir.enable) {
    write_at(root, join(rel, "cgroup.subtree_control"), "+" + controller, dir.mount);
  }
}

// A new v1 cpuset cgroup has empty cpus and mems and refuses tasks until they are set.
void inherit_cpuset(int root, const std::string& parent, const std::string& child, const CgroupDir& dir) {
  if (dir.v2 || !contains(dir.v1_controllers, "cpuset")) return;
  for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
    write_at(root, join(child, file), read_at(root, join(parent, file)), dir.mount);
  }
}

}  // namespace

CgroupMounts parse_mountinfo(std::string_view mountinfo) {
  CgroupMounts mounts;
  for (const std::string& line : split(mountinfo, '\n')) {
    std::vector<std::string> f = split(line, ' ');
    auto dash = std::find(f.begin() + std::min<size_t>(f.size(), 6), f.end(), "-");
    if (f.end() - dash < 4) continue;  // not a mount line
    const std::string& type = dash[1];
    if (type == "cgroup2") mounts.v2.push_back({unescape(f[4]), {}});
    if (type == "cgroup") mounts.v1.push_back({unescape(f[4]), split(dash[3], ',')});
  }
  return mounts;
}

std::vector<CgroupDir> plan_cgroups(const JailerArgs& args, const CgroupMounts& mounts) {
  std::string relative = args.parent_cgroup + "/" + args.id;
  bool v2 = args.cgroup_version == CgroupVersion::V2 || (args.cgroup_version == CgroupVersion::Auto && !mounts.v2.empty());
  if (v2) {
    if (mounts.v2.empty()) fail("--cgroup-version 2: this host has no cgroup2 mount in /proc/self/mountinfo");
    CgroupDir dir{mounts.v2.front().path, relative, true, {}, args.cgroups, {}};
    for (const CgroupSetting& s : args.cgroups) {
      std::string controller = controller_of(s.file);
      if (controller != "cgroup" && !contains(dir.enable, controller)) dir.enable.push_back(controller);
    }
    return {dir};
  }
  std::vector<CgroupDir> dirs;
  for (const CgroupSetting& s : args.cgroups) {
    std::string controller = controller_of(s.file);
    auto mount = std::find_if(mounts.v1.begin(), mounts.v1.end(),
                              [&](const CgroupMount& m) { return contains(m.controllers, controller); });
    if (mount == mounts.v1.end()) fail("--cgroup ", s.file, ": no cgroup v1 hierarchy has the '", controller, "' controller");
    auto dir = std::find_if(dirs.begin(), dirs.end(), [&](const CgroupDir& d) { return d.mount == mount->path; });
    if (dir == dirs.end()) dir = dirs.insert(dirs.end(), CgroupDir{mount->path, relative, false, mount->controllers, {}, {}});
    dir->settings.push_back(s);
  }
  return dirs;
}

void check_controllers(const std::vector<CgroupDir>& dirs) {
  for (const CgroupDir& dir : dirs) {
    UniqueFd root(::open(dir.mount.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) fail("cannot open the cgroup hierarchy ", dir.mount, ": ", errno_text());
    if (dir.v2) check_offered(root.get(), "", dir);
  }
}

std::string current_cgroup(std::string_view proc_self_cgroup, const CgroupDir& dir) {
  for (const std::string& line : split(proc_self_cgroup, '\n')) {
    std::vector<std::string> f = split(line, ':');
    if (f.size() < 3) continue;
    std::vector<std::string> controllers = split(f[1], ',');
    bool match = dir.v2 ? f[0] == "0" && f[1].empty()
                        : std::any_of(controllers.begin(), controllers.end(),
                                      [&](const std::string& c) { return contains(dir.v1_controllers, c); });
    std::string path = line.substr(f[0].size() + f[1].size() + 2);
    size_t start = path.find_first_not_of('/');
    if (match) return start == std::string::npos ? "" : path.substr(start);
  }
  fail("no line for the cgroup hierarchy at ", dir.mount, " in /proc/self/cgroup");
}

std::function<void()> enter_cgroups(const std::vector<CgroupDir>& dirs, Undo& undo) {
  std::vector<std::function<void()>> leave;
  std::string self = read_file("/proc/self/cgroup", "the jailer's cgroups");
  for (const CgroupDir& dir : dirs) {
    std::string original = current_cgroup(self, dir);
    auto root = std::make_shared<UniqueFd>(::open(dir.mount.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root->valid()) fail("cannot open the cgroup hierarchy ", dir.mount, ": ", errno_text());
    std::string rel;
    for (const std::string& name : split(dir.relative, '/')) {
      if (dir.v2) enable_controllers(root->get(), rel, dir);
      std::string child = join(rel, name);
      if (::mkdirat(root->get(), child.c_str(), 0755) == 0) {
        undo.add([root, child] { ::unlinkat(root->get(), child.c_str(), AT_REMOVEDIR); });
        inherit_cpuset(root->get(), rel, child, dir);
      } else if (errno != EEXIST) {
        fail("cannot create the cgroup ", dir.mount, "/", child, ": ", errno_text());
      }
      rel = child;
    }
    for (const CgroupSetting& s : dir.settings) write_at(root->get(), join(rel, s.file), s.value, dir.mount);
    const char* procs = dir.v2 ? "cgroup.procs" : "tasks";
    write_at(root->get(), join(rel, procs), std::to_string(::getpid()), dir.mount);
    // The pid is read when undoing: by then the jailer may have forked (--daemonize,
    // --new-pid-ns) and the failing process be the child.
    auto move_back = [root, original, procs, mount = dir.mount] {
      write_at(root->get(), join(original, procs), std::to_string(::getpid()), mount);
    };
    undo.add(move_back);
    leave.push_back(move_back);
  }
  return [leave] {
    for (const auto& move_back : leave) {
      try {
        move_back();
      } catch (const Error&) {
      }
    }
  };
}

}  // namespace ember::jailer
