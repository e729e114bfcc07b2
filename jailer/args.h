// The jailer's command line (Firecracker's jailer flags) and its validation, done before the
// jailer creates anything so that bad input leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ember::jailer {

enum class CgroupVersion { Auto, V1, V2 };  // Auto: v2 where the host mounts it, else v1

struct CgroupSetting {
  std::string file;   // e.g. "cpu.shares"; its controller is the part before the first '.'
  std::string value;
};

struct JailerArgs {
  std::string id;
  std::string exec_file;       // as given
  std::string exec_name;       // its last path component: names the chroot folder and the copy
  uid_t uid = 0;
  gid_t gid = 0;
  std::string chroot_base_dir = "/srv/jailer";
  std::optional<std::string> netns;
  bool daemonize = false;
  bool new_pid_ns = false;
  CgroupVersion cgroup_version = CgroupVersion::Auto;
  std::vector<CgroupSetting> cgroups;
  std::string parent_cgroup = "ember";
  uint64_t no_file = 2048;            // RLIMIT_NOFILE, soft and hard
  std::optional<uint64_t> fsize;      // RLIMIT_FSIZE in bytes, unlimited when absent
  std::vector<std::string> exec_args; // after "--", passed to the executable
  bool help = false;
};

// Parses and validates `args` (argv without the program name), including the exec file's type
// and the network namespace's existence. Throws Error naming the flag and the problem.
JailerArgs parse_jailer_args(const std::vector<std::string>& args);

const char* jailer_usage();

}  // namespace ember::jailer
