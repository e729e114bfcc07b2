// The compiled seccomp programs, one per thread role, generated at build time from
// rules.cpp (by generate_filters.cpp) into the build tree, and the x86-64 system call
// names for reports.
#pragma once

#include <linux/filter.h>

#include <cstddef>

#include "base/util/thread.h"

namespace ember::seccomp {

struct CompiledFilter {
  ThreadRole role;
  const sock_filter* program;  // nullptr: the role runs unfiltered (see role_is_filtered)
  unsigned short length;
};

extern const CompiledFilter kCompiledFilters[];
extern const size_t kCompiledFilterCount;
extern const char* const kSyscallNames[];  // indexed by number; nullptr where unknown
extern const size_t kSyscallNameCount;
// Built with the sanitizer runtime's allowances (rules.h): the sanitized test build.
extern const bool kWithSanitizerRuntime;

}  // namespace ember::seccomp
