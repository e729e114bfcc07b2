// What each thread role may ask of the kernel: the allowlists that become ember's seccomp
// filters. Used at build time only (by generate_filters.cpp, with libseccomp); ember itself
// loads the compiled programs (filters.h), so start-up spends nothing on compiling them.
#pragma once

#include <seccomp.h>

#include "base/util/thread.h"

namespace ember::seccomp {

// The sanitized build's runtime (ASan, LSan, UBSan) reads /proc, reports to files and
// stops the world with ptrace at exit: with_sanitizer_runtime adds what it needs.
struct RuleOptions {
  bool with_sanitizer_runtime = false;
};

// True for roles that run while the guest does and so get a filter. The machine and
// loader threads end before the first guest instruction.
bool role_is_filtered(ThreadRole role);

// Adds the role's allowlist to `ctx` (default action: trap). Returns 0 or -errno from libseccomp.
int add_role_rules(scmp_filter_ctx ctx, ThreadRole role, const RuleOptions& options);

}  // namespace ember::seccomp
