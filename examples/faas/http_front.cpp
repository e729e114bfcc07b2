#include "examples/faas/http_front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "base/util/error.h"

namespace ember::faas {

UniqueFd listen_tcp(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) fail("--listen ", address, ": expected HOST:PORT");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(std::atoi(address.c_str() + colon + 1)));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1) fail("--listen ", address, ": not an IPv4 address");
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd.get(), 128) != 0) {
    fail("--listen ", address, ": ", std::strerror(errno));
  }
  return fd;
}

HttpFront::HttpFront(UniqueFd listener, Handler handler, FrontLimits limits)
    : listener_(std::move(listener)), stop_(eventfd(0, EFD_CLOEXEC)), handler_(std::move(handler)), limits_(limits) {}

HttpFront::~HttpFront() {
  stop();
  reap(true);
}

void HttpFront::stop() {
  uint64_t one = 1;
  (void)!write(stop_.get(), &one, sizeof one);
}

void HttpFront::reap(bool all) {
  std::list<Connection> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if (all) shutdown(it->fd.get(), SHUT_RDWR);
      if (all || it->done) finished.splice(finished.end(), connections_, it);
      it = next;
    }
  }
  for (Connection& c : finished) c.thread.join();
}

void HttpFront::run() {
  pthread_setname_np(pthread_self(), "faas-front");  // names show in /proc/PID/task/*/comm and top -H
  for (;;) {
    pollfd p[2] = {{listener_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (poll(p, 2, 1000) < 0 && errno != EINTR) fail("front end poll: ", std::strerror(errno));
    if (p[1].revents) return;
    reap(false);
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd fd(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    std::lock_guard lock(mu_);
    if (connections_.size() >= limits_.max_connections) {
      std::string r = http_response(503, nlohmann::json{{"error", "too many connections"}}.dump(), false);
      (void)!send(fd.get(), r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    Connection& c = connections_.emplace_back();
    c.fd = std::move(fd);
    c.thread = std::thread([this, &c] { serve(c); });
  }
}

void HttpFront::serve(Connection& c) {
  pthread_setname_np(pthread_self(), "faas-conn");
  HttpRequestParser parser(limits_.max_body_bytes, limits_.max_header_bytes);
  std::vector<HttpRequest> requests;
  char buf[16384];
  bool open = true;
  while (open) {
    ssize_t n = recv(c.fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    HttpRequestParser::Status st = parser.feed(buf, size_t(n), requests);
    std::string out;
    if (parser.take_continue()) out += "HTTP/1.1 100 Continue\r\n\r\n";
    for (const HttpRequest& r : requests) {
      ApiResponse a = handler_(r);
      bool text = a.status == 200 && r.path == "/metrics";
      out += http_response(a.status, a.body, r.keep_alive, false, text ? "text/plain; version=0.0.4" : "application/json");
      if (!r.keep_alive) open = false;
    }
    requests.clear();
    if (st != HttpRequestParser::Status::Ok) {
      int status = st == HttpRequestParser::Status::Malformed ? 400 : 413;
      std::string what = st == HttpRequestParser::Status::PayloadTooLarge
                             ? cat("request body over ", limits_.max_body_bytes, " bytes")
                             : parser.error();
      out += http_response(status, nlohmann::json{{"error", what}}.dump(), false);
      open = false;
    }
    if (!out.empty() && send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL) < 0) break;
  }
  shutdown(c.fd.get(), SHUT_RDWR);  // the client sees the end now; the fd closes when reaped
  std::lock_guard lock(mu_);
  c.done = true;
}

}  // namespace ember::faas
