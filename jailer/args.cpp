#include "jailer/args.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "base/util/error.h"
#include "base/util/file_io.h"

namespace ember::jailer {

namespace {

constexpr size_t kMaxIdLength = 64;
constexpr uint64_t kMaxId = 4294967294;  // (uid_t)-1 means "unchanged" to setresuid

bool parse_u64(const std::string& text, uint64_t& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

uint32_t parse_id_number(const std::string& flag, const std::string& text) {
  uint64_t value = 0;
  if (!parse_u64(text, value) || value > kMaxId) fail(flag, " must be a number from 0 to ", kMaxId, " (got '", text, "')");
  return static_cast<uint32_t>(value);
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

void check_id(const std::string& id) {
  if (id.empty()) fail("--id must not be empty");
  if (id.size() > kMaxIdLength) fail("--id is ", id.size(), " characters long, at most ", kMaxIdLength, " are allowed");
  for (char c : id) {
    if (!is_alnum(c) && c != '-') fail("--id '", id, "' may contain only letters, digits and '-'");
  }
}

// A regular file itself: a symlink could be swapped for another target after the check.
void check_exec_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) fail("cannot use --exec-file '", path, "': ", errno_text());
  if (S_ISLNK(st.st_mode)) fail("--exec-file '", path, "' is a symbolic link; give the file it points to");
  if (!S_ISREG(st.st_mode)) fail("--exec-file '", path, "' is ", file_type_name(st.st_mode), ", not a regular file");
}

// A relative path of plain names: it is joined under the cgroup mount.
void check_parent_cgroup(const std::string& name) {
  bool bad = name.empty() || name.front() == '/' || name.back() == '/';
  for (size_t start = 0; !bad && start <= name.size();) {
    size_t slash = std::min(name.find('/', start), name.size());
    std::string part = name.substr(start, slash - start);
    bad = part.empty() || part == "." || part == "..";
    start = slash + 1;
  }
  if (bad) fail("--parent-cgroup '", name, "' must be a relative path of names, without '.' or '..'");
}

CgroupSetting parse_cgroup(const std::string& text) {
  size_t eq = text.find('=');
  std::string file = text.substr(0, eq);
  bool ok = eq != std::string::npos && file.find('.') != std::string::npos && file.front() != '.';
  for (char c : file) ok = ok && (is_alnum(c) || c == '.' || c == '_' || c == '-');
  if (!ok) fail("--cgroup '", text, "' must be FILE=VALUE, FILE a cgroup file such as cpu.shares");
  if (file == "cgroup.procs" || file == "cgroup.threads") fail("--cgroup ", file, ": only the jailer moves itself into its cgroup");
  return {file, text.substr(eq + 1)};
}

void parse_resource_limit(const std::string& text, JailerArgs& out) {
  size_t eq = text.find('=');
  std::string name = text.substr(0, eq);
  uint64_t value = 0;
  bool number = eq != std::string::npos && parse_u64(text.substr(eq + 1), value);
  if (number && name == "fsize") out.fsize = value;
  else if (number && name == "no-file") out.no_file = value;
  else fail("--resource-limit '", text, "' must be fsize=N or no-file=N, N a whole number");
}

}  // namespace

JailerArgs parse_jailer_args(const std::vector<std::string>& args) {
  JailerArgs out;
  std::set<std::string> seen;  // flags given so far
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--") {
      out.exec_args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (flag == "--help" || flag == "-h") {
      out.help = true;
      return out;
    }
    if (flag != "--cgroup" && flag != "--resource-limit" && !seen.insert(flag).second) {
      fail(flag, " is given more than once");
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) fail(flag, " needs a value");
      return args[++i];
    };
    if (flag == "--daemonize") {
      out.daemonize = true;
    } else if (flag == "--new-pid-ns") {
      out.new_pid_ns = true;
    } else if (flag == "--id") {
      out.id = value();
      check_id(out.id);
    } else if (flag == "--exec-file") {
      out.exec_file = value();
    } else if (flag == "--uid") {
      out.uid = parse_id_number(flag, value());
    } else if (flag == "--gid") {
      out.gid = parse_id_number(flag, value());
    } else if (flag == "--chroot-base-dir") {
      out.chroot_base_dir = value();
    } else if (flag == "--netns") {
      out.netns = value();
    } else if (flag == "--parent-cgroup") {
      out.parent_cgroup = value();
      check_parent_cgroup(out.parent_cgroup);
    } else if (flag == "--cgroup") {
      out.cgroups.push_back(parse_cgroup(value()));
    } else if (flag == "--resource-limit") {
      parse_resource_limit(value(), out);
    } else if (flag == "--cgroup-version") {
      std::string v = value();
      if (v == "1") out.cgroup_version = CgroupVersion::V1;
      else if (v == "2") out.cgroup_version = CgroupVersion::V2;
      else fail("--cgroup-version must be 1 or 2 (got '", v, "')");
    } else {
      fail("unknown option '", flag, "' (ember's own options go after --)");
    }
  }
  for (const char* required : {"--id", "--exec-file", "--uid", "--gid"}) {
    if (!seen.count(required)) fail(required, " is required");
  }
  if (out.exec_file.empty()) fail("--exec-file must not be empty");
  if (out.chroot_base_dir.empty() || out.chroot_base_dir.front() != '/') {
    fail("--chroot-base-dir must be an absolute path (got '", out.chroot_base_dir, "')");
  }
  check_exec_file(out.exec_file);
  out.exec_name = out.exec_file.substr(out.exec_file.rfind('/') + 1);
  if (out.netns) {
    struct stat st {};
    if (::stat(out.netns->c_str(), &st) < 0) fail("cannot use --netns '", *out.netns, "': ", errno_text());
  }
  return out;
}

const char* jailer_usage() {
  return "usage: ember-jailer --id ID --exec-file PATH --uid N --gid N [--chroot-base-dir DIR]\n"
         "                    [--netns PATH] [--daemonize] [--new-pid-ns] [--cgroup-version 1|2]\n"
         "                    [--cgroup FILE=VALUE]... [--parent-cgroup NAME]\n"
         "                    [--resource-limit fsize=N|no-file=N]... [-- EXEC ARGS...]\n"
         "Runs EXEC (ember) as uid:gid in <DIR>/<exec name>/<ID>/root (DIR defaults to /srv/jailer),\n"
         "in its own mount namespace and cgroup <NAME>/<ID> (NAME defaults to ember), with --id ID\n"
         "and the arguments after --. Paths given to EXEC are inside that root.\n";
}

}  // namespace ember::jailer
