#include "api/http_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "base/util/error.h"
#include "base/util/eventfd.h"
#include "base/util/log.h"

namespace ember {

struct HttpServer::Connection {
  Connection(UniqueFd f, const HttpLimits& limits)
      : fd(std::move(f)), parser(limits.max_payload_bytes, limits.max_header_bytes) {}
  UniqueFd fd;
  HttpRequestParser parser;
  std::string out;       // responses not yet written
  bool closing = false;  // close once `out` is written
  uint32_t events = 0;   // the current epoll interest
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();  // a byte moved
};

namespace {

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    fail("API socket path '", path, "' must be 1 to ", sizeof(addr.sun_path) - 1, " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

void epoll_set(int epoll, int op, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL) fail("epoll_ctl on the API socket: ", errno_text());
}

}  // namespace

UniqueFd listen_unix_socket(const std::string& path) {
  sockaddr_un addr = unix_address(path);
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) fail("API socket path '", path, "' exists and is not a socket");
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      fail("API socket '", path, "' is in use by another process");
    }
    if (::unlink(path.c_str()) != 0) fail("cannot remove the stale API socket '", path, "': ", errno_text());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) fail("socket for the API: ", errno_text());
  // The socket file gets 0600 from the start: no window where others may connect.
  mode_t old_mask = ::umask(0177);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) fail("cannot bind the API socket '", path, "': ", errno_text(bind_errno));
  if (::listen(fd.get(), 64) != 0) fail("cannot listen on the API socket '", path, "': ", errno_text());
  return fd;
}

HttpServer::HttpServer(UniqueFd listener, Handler handler, HttpLimits limits, Counter counter)
    : listener_(std::move(listener)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      stop_(make_eventfd("stopping the API server")),
      handler_(std::move(handler)),
      limits_(limits),
      counter_(std::move(counter)) {
  if (!epoll_.valid()) fail("epoll for the API server: ", errno_text());
  epoll_set(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), EPOLLIN);
  epoll_set(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), EPOLLIN);
}

HttpServer::~HttpServer() = default;

void HttpServer::stop() { signal_eventfd(stop_.get()); }

void HttpServer::run() {
  epoll_event events[32];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 32, expire_idle());
    if (n < 0) {
      if (errno == EINTR) continue;
      log::error(cat("API server: epoll_wait: ", errno_text()));
      return;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == stop_.get()) return;
      if (fd == listener_.get()) {
        accept_all();
        continue;
      }
      auto it = connections_.find(fd);
      if (it == connections_.end()) continue;
      Connection& c = *it->second;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (connections_.count(fd) && (events[i].events & EPOLLOUT)) on_writable(c);
    }
  }
}

void HttpServer::accept_all() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) return;  // EAGAIN, or an error to retry on the next wake-up
    if (connections_.size() >= limits_.max_connections && !evict_idle()) {
      std::string busy = http_response(503, R"({"fault_message": "too many API connections"})", false);
      ssize_t ignored = ::send(fd.get(), busy.data(), busy.size(), MSG_NOSIGNAL);
      (void)ignored;
      continue;
    }
    int raw = fd.get();
    auto c = std::make_unique<Connection>(std::move(fd), limits_);
    c->events = EPOLLIN;
    epoll_set(epoll_.get(), EPOLL_CTL_ADD, raw, c->events);
    connections_[raw] = std::move(c);
  }
}

namespace {
int64_t idle_ms(const std::chrono::steady_clock::time_point& since, const std::chrono::steady_clock::time_point& now) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count();
}
}  // namespace

bool HttpServer::evict_idle() {
  auto now = std::chrono::steady_clock::now();
  auto oldest = connections_.end();
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (oldest == connections_.end() || it->second->last_active < oldest->second->last_active) oldest = it;
  }
  if (oldest == connections_.end() || idle_ms(oldest->second->last_active, now) < limits_.evict_idle_ms) return false;
  close(oldest->first);
  return true;
}

int HttpServer::expire_idle() {
  auto now = std::chrono::steady_clock::now();
  int64_t next = -1;
  std::vector<int> expired;
  for (const auto& [fd, c] : connections_) {
    int64_t left = limits_.idle_timeout_ms - idle_ms(c->last_active, now);
    if (left <= 0) expired.push_back(fd);
    else if (next < 0 || left < next) next = left;
  }
  for (int fd : expired) close(fd);
  return static_cast<int>(next);
}

void HttpServer::on_readable(Connection& c) {
  char buf[16 * 1024];
  ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
  if (n > 0) c.last_active = std::chrono::steady_clock::now();
  if (n < 0 && errno != EAGAIN && errno != EINTR) {
    close(c.fd.get());
    return;
  }
  if (n == 0) {  // the client is done sending, possibly mid-request: drop the partial request
    c.closing = true;
    on_writable(c);
    return;
  }
  if (n < 0) return;
  std::vector<HttpRequest> requests;
  HttpRequestParser::Status status = c.parser.feed(buf, static_cast<size_t>(n), requests);
  for (const HttpRequest& r : requests) {
    if (c.closing) break;
    ApiResponse response = handler_({r.method, r.path, r.body});
    c.out += http_response(response.status, response.body, r.keep_alive, response.deprecated);
    if (!r.keep_alive) c.closing = true;
  }
  if (!c.closing && c.parser.take_continue()) c.out += "HTTP/1.1 100 Continue\r\n\r\n";
  if (status != HttpRequestParser::Status::Ok && !c.closing) {
    int code = status == HttpRequestParser::Status::TooLarge ? 413 : 400;
    if (counter_) counter_(code);
    std::string body = Json{{"fault_message", c.parser.error()}}.dump();
    // Firecracker's HTTP layer answers an oversized payload under "error", not "fault_message".
    if (status == HttpRequestParser::Status::PayloadTooLarge) {
      body = Json{{"error", c.parser.error() + "\nAll previous unanswered requests will be dropped."}}.dump();
    }
    c.out += http_response(code, body, false);
    c.closing = true;
  }
  on_writable(c);
}

void HttpServer::on_writable(Connection& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      close(c.fd.get());
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
    c.last_active = std::chrono::steady_clock::now();
  }
  if (c.out.empty() && c.closing) {
    close(c.fd.get());
    return;
  }
  update_interest(c);
}

// Reads only while there is room for more responses, and only until the connection
// is closing; waits for writability while responses are pending.
void HttpServer::update_interest(Connection& c) {
  uint32_t events = 0;
  if (!c.closing && c.out.size() < limits_.max_pending_output) events |= EPOLLIN;
  if (!c.out.empty()) events |= EPOLLOUT;
  if (events == c.events) return;
  c.events = events;
  epoll_set(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), events);
}

void HttpServer::close(int fd) {
  epoll_set(epoll_.get(), EPOLL_CTL_DEL, fd, 0);
  connections_.erase(fd);
}

}  // namespace ember
