#include "vmm/snapshot/memory_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <nlohmann/json.hpp>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/replacing_file.h"

namespace ember::snapshot {

namespace {

constexpr uint64_t kPage = kDirtyPageSize;
// Consecutive non-zero pages go to the file in one write of at most this much.
constexpr uint64_t kMaxRun = 1ull << 20;

// Word compares, eight words at a time (the compiler vectorises the OR).
bool is_zero_page(const uint8_t* p) {
  for (uint64_t off = 0; off < kPage; off += 64) {
    uint64_t w[8];
    std::memcpy(w, p + off, sizeof(w));
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  return true;
}

// Writes pages [first, first + count) of `host` (file offset == host offset) in runs of at
// most kMaxRun. Zero pages are skipped where a fresh file's holes already read as zeros
// (a full save), or written as data where a zero must overwrite what a base file holds
// (a diff, applied by rebase_memory_file, which copies only the diff's data).
enum class ZeroPages { Skip, Write };

class PageWriter {
 public:
  PageWriter(int fd, const uint8_t* host, const std::string& path) : fd_(fd), host_(host), path_(path) {}

  void pages(uint64_t first, uint64_t count, ZeroPages zeros) {
    uint64_t run_start = 0, run_len = 0;
    for (uint64_t off = first * kPage, end = (first + count) * kPage; off < end; off += kPage) {
      bool skip = zeros == ZeroPages::Skip && is_zero_page(host_ + off);
      if (skip || run_len == kMaxRun) {
        flush(run_start, run_len);
        run_len = 0;
      }
      if (skip) continue;
      if (run_len == 0) run_start = off;
      run_len += kPage;
    }
    flush(run_start, run_len);
  }
  const MemorySaveStats& stats() const { return stats_; }

 private:
  void flush(uint64_t off, uint64_t len) {
    if (len == 0) return;
    if (!pwrite_all(fd_, host_ + off, len, off)) fail("cannot write memory file '", path_, "': ", errno_text());
    stats_.bytes_written += len;
    stats_.pages_written += len / kPage;
  }

  int fd_;
  const uint8_t* host_;
  const std::string& path_;
  MemorySaveStats stats_;
};

// The memory file as a restore or a diff save needs it: a regular file of `size` bytes.
UniqueFd open_memory_file(const std::string& path, int flags, uint64_t size) {
  struct stat st{};
  UniqueFd fd = open_data_file(path, flags, st);
  if (!fd.valid()) fail("cannot open memory file '", path, "': ", errno_text());
  if (!S_ISREG(st.st_mode)) fail("memory file '", path, "' is ", file_type_name(st.st_mode), ", not a regular file");
  if (static_cast<uint64_t>(st.st_size) != size) {
    fail("memory file '", path, "' is ", st.st_size, " bytes, but the snapshot's guest memory is ", size,
         " bytes (", size >> 20, " MiB)");
  }
  return fd;
}

}  // namespace

MemorySaveStats save_memory_full(const GuestMemory& memory, const std::string& path) {
  ReplacingFile file(path, "memory file");
  file.set_size(memory.size());  // pages never written stay holes that read as zeros
  PageWriter writer(file.fd(), memory.host_base(), path);
  for (const MemoryRegion& r : memory.regions()) writer.pages(r.host_offset / kPage, r.size / kPage, ZeroPages::Skip);
  file.commit();
  return writer.stats();
}

MemorySaveStats save_memory_diff(const GuestMemory& memory, std::span<const DirtyBitmap> dirty,
                                 const std::string& path) {
  const auto& regions = memory.regions();
  if (dirty.size() != regions.size()) {
    fail("diff snapshot of memory: ", dirty.size(), " dirty bitmaps for ", regions.size(), " memory regions");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    uint64_t words = (regions[i].size / kPage + 63) / 64;
    if (dirty[i].size() < words) {
      fail("diff snapshot of memory: the dirty bitmap of region ", i, " has ", dirty[i].size(), " words, ",
           words, " needed for ", regions[i].size, " bytes");
    }
  }
  ReplacingFile file(path, "memory file");
  file.set_size(memory.size());  // pages not in the diff stay holes
  PageWriter writer(file.fd(), memory.host_base(), path);
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegion& r = regions[i];
    uint64_t pages = r.size / kPage, first = r.host_offset / kPage;
    for (uint64_t p = 0; p < pages;) {
      if (!(dirty[i][p / 64] >> (p % 64) & 1)) {
        ++p;
        continue;
      }
      uint64_t q = p;
      while (q < pages && (dirty[i][q / 64] >> (q % 64) & 1)) ++q;
      writer.pages(first + p, q - p, ZeroPages::Write);
      p = q;
    }
  }
  file.commit();
  return writer.stats();
}

MemorySaveStats rebase_memory_file(const std::string& base_path, const std::string& diff_path) {
  struct stat diff_st{};
  UniqueFd diff = open_data_file(diff_path, O_RDONLY, diff_st);
  if (!diff.valid()) fail("cannot open diff memory file '", diff_path, "': ", errno_text());
  if (!S_ISREG(diff_st.st_mode)) {
    fail("diff memory file '", diff_path, "' is ", file_type_name(diff_st.st_mode), ", not a regular file");
  }
  uint64_t size = static_cast<uint64_t>(diff_st.st_size);
  UniqueFd base = open_memory_file(base_path, O_RDWR, size);
  MemorySaveStats stats;
  std::vector<uint8_t> buffer(kMaxRun);
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(diff.get(), pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only holes from here on
    if (data < 0) fail("cannot read diff memory file '", diff_path, "': SEEK_DATA: ", errno_text());
    off_t hole = ::lseek(diff.get(), data, SEEK_HOLE);
    if (hole < 0) fail("cannot read diff memory file '", diff_path, "': SEEK_HOLE: ", errno_text());
    for (off_t off = data; off < hole;) {
      size_t len = static_cast<size_t>(std::min<off_t>(hole - off, static_cast<off_t>(buffer.size())));
      ssize_t got = ::pread(diff.get(), buffer.data(), len, off);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) fail("cannot read diff memory file '", diff_path, "' at ", off, ": ", got < 0 ? errno_text() : "end of file");
      if (!pwrite_all(base.get(), buffer.data(), static_cast<size_t>(got), static_cast<uint64_t>(off))) {
        fail("cannot write base memory file '", base_path, "' at ", off, ": ", errno_text());
      }
      stats.bytes_written += static_cast<uint64_t>(got);
      off += got;
    }
    pos = hole;
  }
  if (::fsync(base.get()) != 0) fail("cannot write base memory file '", base_path, "': fsync: ", errno_text());
  stats.pages_written = stats.bytes_written / kPage;
  return stats;
}

GuestMemory restore_memory_from_file(const std::string& path, GuestMemoryOptions options) {
  UniqueFd fd = open_memory_file(path, O_RDONLY, options.size_bytes);
  options.backing_fd = fd.get();
  try {
    return GuestMemory::create(options);
  } catch (const Error& e) {
    fail("memory file '", path, "': ", e.what());
  }
}

std::string uffd_regions_json(const GuestMemory& memory) {
  auto regions = nlohmann::json::array();
  for (const MemoryRegion& r : memory.regions()) {
    regions.push_back({
        {"base_host_virt_addr", reinterpret_cast<uintptr_t>(memory.host_base() + r.host_offset)},
        {"size", r.size},
        {"offset", r.host_offset},
        {"page_size", memory.page_size()},
        {"page_size_kib", memory.page_size() / 1024},  // what handlers before Firecracker 1.7 read
    });
  }
  return regions.dump();
}

namespace {

// The syscall first; where it is refused (vm.unprivileged_userfaultfd = 0 without
// CAP_SYS_PTRACE, or a seccomp filter) the /dev/userfaultfd device (Linux 6.1+).
UniqueFd create_userfaultfd(const std::string& where) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, flags)));
  if (uffd.valid()) return uffd;
  int syscall_errno = errno;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev.valid()) uffd.reset(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, flags));
  if (!uffd.valid()) {
    fail(where, ": cannot create a userfaultfd: ", errno_text(syscall_errno), " (the userfaultfd syscall), ",
         errno_text(), " (/dev/userfaultfd)");
  }
  return uffd;
}

void register_regions(int uffd, const GuestMemory& memory, const std::string& where) {
  uffdio_api api{};
  api.api = UFFD_API;
  // Firecracker's handlers expect remove events (a page dropped with MADV_DONTNEED).
  api.features = UFFD_FEATURE_EVENT_REMOVE;
  if (memory.page_size() != kPage) api.features |= UFFD_FEATURE_MISSING_HUGETLBFS;
  if (::ioctl(uffd, UFFDIO_API, &api) != 0) fail(where, ": UFFDIO_API: ", errno_text());
  for (const MemoryRegion& r : memory.regions()) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uintptr_t>(memory.host_base() + r.host_offset);
    reg.range.len = r.size;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
      fail(where, ": UFFDIO_REGISTER of guest memory at ", hex(r.gpa), " (", r.size, " bytes): ", errno_text());
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) fail(where, ": the kernel offers no UFFDIO_COPY for guest memory");
  }
}

UniqueFd connect_unix(const std::string& path, const std::string& where) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    fail(where, ": the socket path must be 1 to ", sizeof(addr.sun_path) - 1, " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) fail(where, ": socket: ", errno_text());
  int rc;
  do {
    rc = ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) fail(where, ": cannot connect: ", errno_text());
  return sock;
}

// The message and, with its first byte, the uffd as SCM_RIGHTS.
void send_with_fd(int sock, std::string_view message, int fd, const std::string& where) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  bool fd_sent = false;
  while (!message.empty()) {
    iovec iov{const_cast<char*>(message.data()), message.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fd_sent) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(where, ": cannot send the memory regions and userfaultfd: ", errno_text());
    fd_sent = true;
    message.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

UffdMemory restore_memory_with_uffd(const std::string& socket_path, GuestMemoryOptions options) {
  const std::string where = cat("page-fault handler socket '", socket_path, "'");
  options.prefault = Prefault::Off;
  options.backing_fd = -1;
  UffdMemory out{GuestMemory::create(options), {}, {}};
  out.uffd = create_userfaultfd(where);
  register_regions(out.uffd.get(), out.memory, where);
  out.socket = connect_unix(socket_path, where);
  send_with_fd(out.socket.get(), uffd_regions_json(out.memory), out.uffd.get(), where);
  return out;
}

}  // namespace ember::snapshot
