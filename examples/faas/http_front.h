// ember-faas's HTTP front end: HTTP/1.1 on a TCP address, one thread per connection (an
// invocation can take as long as a cold boot, and others must not wait behind it), requests
// parsed by ember's HttpRequestParser. Bounds: max_connections (more get 503 and close),
// the body (413), the headers (413, the parser's 16 KiB).
#pragma once

#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include "api/http_request_parser.h"
#include "api/request_router.h"
#include "base/util/unique_fd.h"

namespace ember::faas {

struct FrontLimits {
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 * 1024;
  size_t max_connections = 256;
};

// "HOST:PORT" (IPv4) bound and listening; throws Error naming the address.
UniqueFd listen_tcp(const std::string& address);

class HttpFront {
 public:
  using Handler = std::function<ApiResponse(const HttpRequest&)>;
  HttpFront(UniqueFd listener, Handler handler, FrontLimits limits);
  ~HttpFront();
  // Accepts until stop(); then shuts every connection down and joins its thread.
  void run();
  void stop();

 private:
  struct Connection {
    UniqueFd fd;
    std::thread thread;
    bool done = false;
  };
  void serve(Connection& c);
  void reap(bool all);

  UniqueFd listener_;
  UniqueFd stop_;
  Handler handler_;
  FrontLimits limits_;
  std::mutex mu_;
  std::list<Connection> connections_;
};

}  // namespace ember::faas
