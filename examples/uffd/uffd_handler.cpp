// ember-uffd-handler SOCKET MEMFILE: an example page-fault handler for ember's (and
// Firecracker's) Uffd snapshot backend. It listens on SOCKET, accepts one ember, receives
// the guest memory regions (JSON) and the userfaultfd, and serves every missing page from
// MEMFILE with UFFDIO_COPY; pages the guest gave back (UFFD_EVENT_REMOVE) come back as
// zeros. It ends when ember closes the socket. See README.md beside it.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ember-uffd-handler: %s\n", what.c_str());
  std::exit(1);
}
[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

struct Region {
  uint64_t base, size, offset, page_size;
  std::vector<bool> removed;  // per page: given back, so served as zeros from now on
};

struct MemFile {
  const uint8_t* data;
  uint64_t size;
};

MemFile map_memory_file(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_errno(std::string("cannot open memory file ") + path);
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) die(std::string(path) + " is not a regular file");
  void* p = ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) die_errno(std::string("cannot map ") + path);
  ::close(fd);
  return {static_cast<const uint8_t*>(p), static_cast<uint64_t>(st.st_size)};
}

int accept_one(const char* path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (std::strlen(path) >= sizeof(addr.sun_path)) die("socket path too long");
  std::strcpy(addr.sun_path, path);
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die_errno("socket");
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) die_errno(std::string("bind ") + path);
  if (::listen(listener, 1) != 0) die_errno("listen");
  int conn;
  do conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  while (conn < 0 && errno == EINTR);
  if (conn < 0) die_errno("accept");
  ::close(listener);
  ::unlink(path);  // one ember per handler
  return conn;
}

// The JSON array of regions, in as many reads as it takes; the fd comes with the first.
std::vector<Region> receive_regions(int conn, int& uffd) {
  std::string text;
  uffd = -1;
  while (!nlohmann::json::accept(text)) {
    if (text.size() > (1u << 20)) die("region message larger than 1 MiB");
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_errno("recvmsg");
    if (n == 0) die("ember closed the socket before sending its memory regions");
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&uffd, CMSG_DATA(c), sizeof(int));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  if (uffd < 0) die("no userfaultfd came with the memory regions");
  std::vector<Region> regions;
  for (const auto& r : nlohmann::json::parse(text)) {
    uint64_t page = r.contains("page_size") ? r["page_size"].get<uint64_t>() : r["page_size_kib"].get<uint64_t>() * 1024;
    Region region{r.at("base_host_virt_addr").get<uint64_t>(), r.at("size").get<uint64_t>(),
                  r.at("offset").get<uint64_t>(), page, {}};
    if (page == 0 || region.size % page != 0) die("region size is not a multiple of its page size");
    region.removed.assign(region.size / page, false);
    regions.push_back(std::move(region));
  }
  return regions;
}

class Server {
 public:
  Server(int uffd, std::vector<Region> regions, MemFile file) : uffd_(uffd), regions_(std::move(regions)), file_(file) {
    for (const Region& r : regions_) {
      if (r.offset > file_.size || r.size > file_.size - r.offset) die("a region lies past the end of the memory file");
      if (r.page_size > zeros_.size()) zeros_.assign(r.page_size, 0);
    }
  }

  // Reads every queued event; faults that met EAGAIN (the mapping was changing: an event
  // waits to be read) are retried once the queue is empty.
  void drain() {
    uffd_msg msg;
    for (;;) {
      ssize_t n = ::read(uffd_, &msg, sizeof(msg));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n != static_cast<ssize_t>(sizeof(msg))) die_errno("read userfaultfd");
      if (msg.event == UFFD_EVENT_PAGEFAULT) {
        pending_.push_back(msg.arg.pagefault.address);
      } else if (msg.event == UFFD_EVENT_REMOVE) {
        mark_removed(msg.arg.remove.start, msg.arg.remove.end);
      }
    }
    std::vector<uint64_t> faults;
    faults.swap(pending_);
    for (uint64_t addr : faults) {
      if (!serve(addr)) pending_.push_back(addr);
    }
  }
  bool has_pending() const { return !pending_.empty(); }

 private:
  Region& region_of(uint64_t addr) {
    for (Region& r : regions_) {
      if (addr >= r.base && addr - r.base < r.size) return r;
    }
    die("fault at an address outside every region");
  }

  void mark_removed(uint64_t start, uint64_t end) {
    for (Region& r : regions_) {
      uint64_t lo = std::max(start, r.base), hi = std::min(end, r.base + r.size);
      for (uint64_t a = lo; a < hi; a += r.page_size) r.removed[(a - r.base) / r.page_size] = true;
    }
  }

  // False when the kernel answered EAGAIN: try again after the next events.
  bool serve(uint64_t addr) {
    Region& r = region_of(addr);
    uint64_t page_index = (addr - r.base) / r.page_size;
    uint64_t dst = r.base + page_index * r.page_size;
    int rc;
    if (r.removed[page_index] && r.page_size == 4096) {
      uffdio_zeropage z{};
      z.range = {dst, r.page_size};
      rc = ::ioctl(uffd_, UFFDIO_ZEROPAGE, &z);
    } else {  // huge pages have no UFFDIO_ZEROPAGE: a removed one is copied from zeros
      const uint8_t* src = r.removed[page_index] ? zeros_.data() : file_.data + r.offset + page_index * r.page_size;
      uffdio_copy c{};
      c.dst = dst;
      c.src = reinterpret_cast<uintptr_t>(src);
      c.len = r.page_size;
      rc = ::ioctl(uffd_, UFFDIO_COPY, &c);
    }
    if (rc == 0 || errno == EEXIST) return true;  // EEXIST: another fault on it was served first
    if (errno == EAGAIN) return false;
    die_errno("serving a page fault");
  }

  int uffd_;
  std::vector<Region> regions_;
  MemFile file_;
  std::vector<uint8_t> zeros_ = std::vector<uint8_t>(4096, 0);
  std::vector<uint64_t> pending_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET MEMFILE\n", argv[0]);
    return 2;
  }
  MemFile file = map_memory_file(argv[2]);
  int conn = accept_one(argv[1]);
  int uffd = -1;
  std::vector<Region> regions = receive_regions(conn, uffd);
  Server server(uffd, std::move(regions), file);
  for (;;) {
    pollfd fds[2] = {{uffd, POLLIN, 0}, {conn, POLLIN, 0}};
    int n = ::poll(fds, 2, server.has_pending() ? 1 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_errno("poll");
    server.drain();
    if (fds[1].revents != 0) {
      char byte;
      ssize_t got = ::recv(conn, &byte, 1, MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return 0;  // ember is gone
    }
  }
}
