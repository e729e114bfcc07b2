// A file written in full or not at all: data goes to a temporary file beside `path`, and
// commit() fsyncs it, renames it over `path` and fsyncs the folder. Until then `path`
// keeps whatever it held (an older snapshot survives a failed or interrupted save), and a
// ReplacingFile destroyed without commit() removes its temporary file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/util/unique_fd.h"

namespace ember {

class ReplacingFile {
 public:
  // Creates the temporary file (mode 0600). `what` names the file in errors ("snapshot file").
  ReplacingFile(std::string path, const char* what);
  ReplacingFile(const ReplacingFile&) = delete;
  ReplacingFile& operator=(const ReplacingFile&) = delete;
  ~ReplacingFile();

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Whole-buffer writes at `offset`, retrying short ones; throw Error naming the file.
  void write_at(const void* data, size_t len, uint64_t offset);
  void set_size(uint64_t size);
  void commit();

 private:
  [[noreturn]] void failed(const char* doing) const;

  std::string path_, temp_path_;
  const char* what_;
  UniqueFd fd_;
};

}  // namespace ember
