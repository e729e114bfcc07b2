#include "vmm/loader/image_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/sigbus_guarded_copy.h"
#include "base/util/thread.h"

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

constexpr size_t kLargeRead = 64 * 1024;

// Guest RAM is not populated yet when the kernel is loaded (a background prefault
// comes later): populating the destination in one call is much cheaper than letting
// the copy take one page fault per page. Best effort: a failure only costs time.
void populate(std::span<uint8_t> dst) {
  if (dst.size() < kLargeRead) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t start = reinterpret_cast<uintptr_t>(dst.data()) & ~(page - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(dst.data()) + dst.size();
  ::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE);
}
}  // namespace

FileImage FileImage::open(const std::string& path, const char* what) {
  FileImage image;
  image.name_ = std::string(what) + " '" + path + "'";
  struct stat st{};
  image.fd_ = open_data_file(path, O_RDONLY, st);
  if (!image.fd_.valid()) fail("cannot open ", image.name_, ": ", errno_text());
  if (!S_ISREG(st.st_mode)) fail(image.name_, " is not a regular file (it is ", file_type_name(st.st_mode), ")");
  image.size_ = static_cast<uint64_t>(st.st_size);
  // Large reads copy from this mapping rather than pread(): the kernel copies to user memory
  // with a string instruction that the emulated host (TCG) runs a byte at a time, while
  // memcpy moves vectors (10 MiB: 25 ms with pread, 8 ms this way there; alike on hardware).
  // One mapping for the whole file: mmap() per piece serialized the two reading threads on
  // the mm lock. A file system without mmap leaves it empty and pread() does the reads.
  if (image.size_ > 0) {
    void* map = ::mmap(nullptr, image.size_, PROT_READ, MAP_PRIVATE, image.fd_.get(), 0);
    if (map != MAP_FAILED) image.map_ = Mapping(map, image.size_);
  }
  return image;
}

void FileImage::read(uint64_t offset, std::span<uint8_t> dst) const {
  check_range(*this, offset, dst.size());
  if (batch_ && dst.size() >= kLargeRead) {
    batch_->add(*this, offset, dst);
    return;
  }
  read_now(offset, dst);
}

void FileImage::read_now(uint64_t offset, std::span<uint8_t> dst) const {
  populate(dst);
  if (dst.size() >= kLargeRead && copy_mapped(offset, dst)) return;
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd_.get(), dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read ", name_, ": ", errno_text());
    if (n == 0) fail(name_, " shrank while being read (at byte ", offset + done, ")");
    done += static_cast<size_t>(n);
  }
}

bool FileImage::copy_mapped(uint64_t offset, std::span<uint8_t> dst) const {
  if (!map_.data()) return false;
  const uint8_t* src = map_.data() + offset;  // check_range() kept offset + size within size_
  GuardedCopyResult copied = sigbus_guarded_copy(dst.data(), src, dst.size());
  switch (copied.fault) {
    case GuardedCopyResult::Fault::None:
      return true;
    case GuardedCopyResult::Fault::Source:
      fail(name_, " shrank while being read (at byte ", offset + (copied.address - reinterpret_cast<uintptr_t>(src)),
           ")");
    case GuardedCopyResult::Fault::Destination:
      fail("cannot load ", name_, ": guest memory could not be populated (SIGBUS; out of huge pages?)");
  }
  return true;
}

void ReadBatch::add(const FileImage& image, uint64_t offset, std::span<uint8_t> dst) {
  constexpr uintptr_t kHugePage = 2 << 20;
  while (!dst.empty()) {
    uintptr_t at = reinterpret_cast<uintptr_t>(dst.data());
    size_t n = std::min<size_t>(dst.size(), ((at + kHugePage) & ~(kHugePage - 1)) - at);
    pieces_.push_back({&image, offset, dst.first(n)});
    offset += n;
    dst = dst.subspan(n);
  }
}

void ReadBatch::run() {
  std::atomic<size_t> next{0};
  std::exception_ptr first_error;
  std::mutex error_mu;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < pieces_.size();) {
      try {
        pieces_[i].image->read_now(pieces_[i].offset, pieces_[i].dst);
      } catch (...) {
        std::lock_guard lock(error_mu);
        if (!first_error) first_error = std::current_exception();
        next = pieces_.size();  // stop both threads
      }
    }
  };
  if (pieces_.size() > 1) {
    std::thread helper = start_thread(ThreadRole::Loader, "ember-loader", work);
    work();
    helper.join();
  } else {
    work();
  }
  pieces_.clear();
  if (first_error) std::rethrow_exception(first_error);
}

void BufferImage::read(uint64_t offset, std::span<uint8_t> dst) const {
  check_range(*this, offset, dst.size());
  if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + offset, dst.size());
}

}  // namespace ember
