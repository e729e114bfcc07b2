#include "vmm/loader/image_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include "vmm/util/error.h"

namespace ember {

namespace {
void check_range(const ImageSource& image, uint64_t offset, uint64_t len) {
  if (offset > image.size() || len > image.size() - offset) {
    fail(image.name(), " is truncated: needs bytes ", offset, "..", offset + len, " but has ", image.size());
  }
}
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

// Guest RAM is not populated yet when the kernel is loaded (a background prefault
// comes later): populating the destination in one call is much cheaper than letting
// the copy take one page fault per page. Best effort: a failure only costs time.
void populate(std::span<uint8_t> dst) {
  constexpr size_t kWorthIt = 64 * 1024;
  if (dst.size() < kWorthIt) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t start = reinterpret_cast<uintptr_t>(dst.data()) & ~(page - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(dst.data()) + dst.size();
  ::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE);
}
}  // namespace

FileImage FileImage::open(const std::string& path, const char* what) {
  FileImage image;
  image.name_ = std::string(what) + " '" + path + "'";
  image.fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!image.fd_.valid()) fail("cannot open ", image.name_, ": ", errno_text());
  struct stat st{};
  if (::fstat(image.fd_.get(), &st) < 0) fail("cannot stat ", image.name_, ": ", errno_text());
  if (!S_ISREG(st.st_mode)) fail(image.name_, " is not a regular file");
  image.size_ = static_cast<uint64_t>(st.st_size);
  return image;
}

void FileImage::read(uint64_t offset, std::span<uint8_t> dst) const {
  check_range(*this, offset, dst.size());
  // Populating and copying is CPU work that the boot waits for: an ELF kernel's 9 MB
  // text took 40 ms in the emulated host. Large reads are split at a 2 MiB boundary
  // of the destination (a huge page is populated by one thread) and the second half
  // read on another thread.
  constexpr size_t kSplitFrom = 4 << 20, kHugePage = 2 << 20;
  if (dst.size() >= kSplitFrom) {
    uintptr_t middle = reinterpret_cast<uintptr_t>(dst.data() + dst.size() / 2);
    size_t half = ((middle + kHugePage - 1) & ~(kHugePage - 1)) - reinterpret_cast<uintptr_t>(dst.data());
    auto second = std::async(std::launch::async, [&] { read_range(offset + half, dst.subspan(half)); });
    read_range(offset, dst.first(half));
    second.get();  // (its destructor waits too, if the first half threw)
    return;
  }
  read_range(offset, dst);
}

void FileImage::read_range(uint64_t offset, std::span<uint8_t> dst) const {
  populate(dst);
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd_.get(), dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read ", name_, ": ", errno_text());
    if (n == 0) fail(name_, " shrank while being read (at byte ", offset + done, ")");
    done += static_cast<size_t>(n);
  }
}

void BufferImage::read(uint64_t offset, std::span<uint8_t> dst) const {
  check_range(*this, offset, dst.size());
  if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + offset, dst.size());
}

}  // namespace ember
