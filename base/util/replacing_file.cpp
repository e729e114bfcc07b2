#include "base/util/replacing_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/util/error.h"
#include "base/util/file_io.h"

namespace ember {

namespace {
std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

ReplacingFile::ReplacingFile(std::string path, const char* what) : path_(std::move(path)), what_(what) {
  std::string pattern = path_ + ".tmp-XXXXXX";
  int fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) fail("cannot create ", what_, " '", path_, "': ", errno_text(), " (creating ", pattern, ")");
  fd_.reset(fd);
  temp_path_ = std::move(pattern);
}

ReplacingFile::~ReplacingFile() {
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void ReplacingFile::failed(const char* doing) const {
  fail("cannot write ", what_, " '", path_, "': ", doing, ": ", errno_text());
}

void ReplacingFile::write_at(const void* data, size_t len, uint64_t offset) {
  if (!pwrite_all(fd_.get(), data, len, offset)) failed("write");
}

void ReplacingFile::set_size(uint64_t size) {
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) failed("set size");
}

void ReplacingFile::commit() {
  if (::fsync(fd_.get()) != 0) failed("fsync");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) failed("rename into place");
  temp_path_.clear();
  // The rename itself is only durable once the folder's entry is on disk.
  UniqueFd dir(::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) ::fsync(dir.get());
}

}  // namespace ember
