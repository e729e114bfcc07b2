// ember-rebase-snap: applies a Diff snapshot's memory file onto the memory file of the
// snapshot it was taken after, so that the Diff's snapshot file loads with the base file.
//   ember-rebase-snap --base-file MEM --diff-file DIFF_MEM
#include <cstdio>
#include <string>
#include <string_view>

#include "base/util/error.h"
#include "vmm/snapshot/memory_file.h"

namespace {

constexpr const char* kUsage =
    "usage: ember-rebase-snap --base-file MEM --diff-file DIFF_MEM\n"
    "Copies every page a Diff snapshot's memory file holds into the base memory file, in place.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string base, diff;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if ((flag == "--base-file" || flag == "--diff-file") && i + 1 < argc) {
      (flag == "--base-file" ? base : diff) = argv[++i];
      continue;
    }
    std::fprintf(stderr, "ember-rebase-snap: unknown or incomplete argument '%s'\n%s", argv[i], kUsage);
    return 2;
  }
  if (base.empty() || diff.empty()) {
    std::fprintf(stderr, "ember-rebase-snap: --base-file and --diff-file are both required\n%s", kUsage);
    return 2;
  }
  try {
    ember::snapshot::MemorySaveStats stats = ember::snapshot::rebase_memory_file(base, diff);
    std::printf("applied %llu pages of %s onto %s\n", static_cast<unsigned long long>(stats.pages_written),
                diff.c_str(), base.c_str());
  } catch (const ember::Error& e) {
    std::fprintf(stderr, "ember-rebase-snap: %s\n", e.what());
    return 1;
  }
  return 0;
}
