// The jail's cgroup `<parent>/<id>`: where the hierarchies are mounted (from
// /proc/self/mountinfo), which folders the settings go to (v2: one folder; v1: one per
// controller, the prefix of each FILE), creating them, writing the values and moving the
// jailer in. The parsing and planning are pure functions, tested on sample text.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "jailer/args.h"
#include "jailer/undo.h"

namespace ember::jailer {

struct CgroupMount {
  std::string path;                      // mount point
  std::vector<std::string> controllers;  // v1 only: its super options, e.g. {"cpu", "cpuacct"}
};

struct CgroupMounts {
  std::vector<CgroupMount> v2;  // the first one is used
  std::vector<CgroupMount> v1;
};

CgroupMounts parse_mountinfo(std::string_view mountinfo);

// One cgroup folder to create under `mount`: `relative` is "<parent>/<id>".
struct CgroupDir {
  std::string mount;
  std::string relative;
  bool v2 = false;
  std::vector<std::string> v1_controllers;  // of the hierarchy (cpuset needs its cpus and mems set)
  std::vector<CgroupSetting> settings;
  std::vector<std::string> enable;          // v2: controllers enabled along the way
};

// The folders for `args` on a host with `mounts`; throws Error when a hierarchy is missing.
// v1 without --cgroup settings names no controller, so no folder.
std::vector<CgroupDir> plan_cgroups(const JailerArgs& args, const CgroupMounts& mounts);

// Read-only checks before anything is created: each hierarchy can be opened and, for v2, offers
// the controllers the settings need at its root.
void check_controllers(const std::vector<CgroupDir>& dirs);

// The jailer's current cgroup in the hierarchy of `dir`, relative to its mount ("" for the
// root), from /proc/self/cgroup text.
std::string current_cgroup(std::string_view proc_self_cgroup, const CgroupDir& dir);

// Creates each folder, writes its settings and moves this process in (cgroup.procs or tasks).
// `undo` moves it back out and removes the folders this run created. Returns that move back
// out alone (best effort, for whichever process calls it): a parent that forks and exits calls
// it first, so that a failing child's undo finds the folders empty and can remove them.
std::function<void()> enter_cgroups(const std::vector<CgroupDir>& dirs, Undo& undo);

}  // namespace ember::jailer
