// A fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction.
#pragma once

#include <ftw.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace ember::test {

struct TempDir {
  std::string path;
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    path = std::string(tmp ? tmp : "/tmp") + "/ember-test-XXXXXX";
    if (!::mkdtemp(path.data())) std::abort();
  }
  ~TempDir() {
    ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
           FTW_DEPTH | FTW_PHYS);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace ember::test
