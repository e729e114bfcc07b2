// Build-time tool: compiles each role's allowlist (rules.cpp) to a BPF program with
// libseccomp and prints them as C++ arrays, with the system call name table.
//   usage: ember_seccomp_gen [--sanitizer] > filters.cpp
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/filter.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <iterator>
#include <vector>

#include "vmm/seccomp/rules.h"

namespace {

using namespace ember;
using namespace ember::seccomp;

constexpr ThreadRole kRoles[] = {ThreadRole::Main,   ThreadRole::Machine, ThreadRole::Loader, ThreadRole::Vcpu,
                                 ThreadRole::Event,  ThreadRole::Api,     ThreadRole::Metrics, ThreadRole::Stdin,
                                 ThreadRole::Console, ThreadRole::Prefault};
constexpr int kMaxSyscall = 512;

[[noreturn]] void die(const std::string& what, int rc) {
  std::fprintf(stderr, "ember_seccomp_gen: %s: %s\n", what.c_str(), std::strerror(-rc));
  std::exit(1);
}

std::vector<sock_filter> compile(ThreadRole role, const RuleOptions& options) {
  // A syscall outside the list traps: ember's SIGSYS handler names it and ends ember.
  // Another architecture's syscall ABI (x32, i386 int 0x80) kills the process outright.
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx) die("seccomp_init", -ENOMEM);
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) die("seccomp_attr_set", rc);
  // A binary tree of syscall numbers instead of a linear list: shorter paths for every
  // call, and less for the kernel to precompute when each thread installs its filter.
  rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) die("seccomp_attr_set(SCMP_FLTATR_CTL_OPTIMIZE)", rc);
  rc = add_role_rules(ctx, role, options);
  if (rc < 0) die(std::string("rules for role ") + thread_role_name(role), rc);
  int fd = memfd_create("bpf", 0);
  if (fd < 0) die("memfd_create", -errno);
  rc = seccomp_export_bpf(ctx, fd);
  if (rc < 0) die("seccomp_export_bpf", rc);
  seccomp_release(ctx);
  off_t size = lseek(fd, 0, SEEK_END);
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (pread(fd, program.data(), static_cast<size_t>(size), 0) != size) die("reading the program back", -EIO);
  close(fd);
  return program;
}

}  // namespace

int main(int argc, char** argv) {
  RuleOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--sanitizer") == 0) options.with_sanitizer_runtime = true;
    else die(std::string("unknown argument ") + argv[i], -EINVAL);
  }
  std::printf("// Generated at build time by ember_seccomp_gen from vmm/seccomp/rules.cpp%s. Do not edit.\n",
              options.with_sanitizer_runtime ? " (with the sanitizer runtime's needs)" : "");
  std::printf("#include \"vmm/seccomp/filters.h\"\n\nnamespace ember::seccomp {\n\nnamespace {\n");
  std::vector<size_t> lengths;
  for (ThreadRole role : kRoles) {
    if (!role_is_filtered(role)) {
      lengths.push_back(0);
      continue;
    }
    std::vector<sock_filter> program = compile(role, options);
    if (program.size() > BPF_MAXINSNS) die(std::string("filter too long for ") + thread_role_name(role), -E2BIG);
    lengths.push_back(program.size());
    std::printf("const sock_filter k_%s[] = {\n", thread_role_name(role));
    for (const sock_filter& f : program) {
      std::printf("    {0x%x, %u, %u, 0x%x},\n", f.code, f.jt, f.jf, f.k);
    }
    std::printf("};\n");
  }
  std::printf("}  // namespace\n\nconst CompiledFilter kCompiledFilters[] = {\n");
  for (size_t i = 0; i < std::size(kRoles); ++i) {
    const char* name = thread_role_name(kRoles[i]);
    std::string role = name;
    role[0] = static_cast<char>(std::toupper(role[0]));
    if (lengths[i] == 0) std::printf("    {ThreadRole::%s, nullptr, 0},\n", role.c_str());
    else std::printf("    {ThreadRole::%s, k_%s, %zu},\n", role.c_str(), name, lengths[i]);
  }
  std::printf("};\nconst size_t kCompiledFilterCount = %zu;\n\nconst char* const kSyscallNames[] = {\n",
              std::size(kRoles));
  for (int nr = 0; nr < kMaxSyscall; ++nr) {
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
    if (name) std::printf("    \"%s\",\n", name);
    else std::printf("    nullptr,\n");
    std::free(name);
  }
  std::printf("};\nconst size_t kSyscallNameCount = %d;\n", kMaxSyscall);
  std::printf("const bool kWithSanitizerRuntime = %s;\n\n}  // namespace ember::seccomp\n",
              options.with_sanitizer_runtime ? "true" : "false");
  return 0;
}
