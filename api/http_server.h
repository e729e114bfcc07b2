// The API's transport: HTTP/1.1 on a Unix socket, served by one thread with epoll and
// non-blocking sockets, bounded per-connection buffers and a connection limit, so no
// client (slow, stuck, malicious or gone) can block it or the VMM.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "api/http_request_parser.h"
#include "api/request_router.h"
#include "base/util/unique_fd.h"

namespace ember {

struct HttpLimits {
  // A body over this gets 400 at once (before it is sent, when Content-Length declares it) and
  // the connection closes: Firecracker's default, set by --http-api-max-payload-size.
  size_t max_payload_bytes = 51200;
  size_t max_header_bytes = 16 * 1024;      // request line and headers; over it, 413 and close
  size_t max_connections = 16;              // more get 503 and are closed, unless one can be evicted:
  int evict_idle_ms = 1000;                 // at the limit, the connection idle longest, if this idle, makes room
  int idle_timeout_ms = 60000;              // a connection that moved no byte this long is closed
  size_t max_pending_output = 256 * 1024;   // a client not reading its responses stops being read
};

// Binds `path` (mode 0600). A stale socket file is replaced; a path where something
// listens, or that is not a socket, is refused. Throws Error naming the path.
UniqueFd listen_unix_socket(const std::string& path);

class HttpServer {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest&)>;
  // Called for responses the HTTP layer makes itself (malformed, too large).
  using Counter = std::function<void(int status)>;

  HttpServer(UniqueFd listener, Handler handler, HttpLimits limits = {}, Counter counter = nullptr);
  ~HttpServer();
  // Serves until stop(); call from the API thread.
  void run();
  // Thread-safe; run() returns soon after.
  void stop();
  size_t connection_count() const { return connections_.size(); }

 private:
  struct Connection;
  void accept_all();
  // Makes room at the connection limit by closing the connection idle longest, if it has
  // been idle for evict_idle_ms; false when every connection is busy.
  bool evict_idle();
  // Closes connections idle for idle_timeout_ms; returns the epoll_wait timeout until the
  // next one could expire (-1: none open).
  int expire_idle();
  void on_readable(Connection& c);
  void on_writable(Connection& c);
  void update_interest(Connection& c);
  void close(int fd);

  UniqueFd listener_;
  UniqueFd epoll_;
  UniqueFd stop_;
  Handler handler_;
  HttpLimits limits_;
  Counter counter_;
  std::map<int, std::unique_ptr<Connection>> connections_;
};

}  // namespace ember
