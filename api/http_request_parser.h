// Incremental HTTP/1.1 request parsing on top of nodejs http-parser: bytes in as they
// arrive (partial, pipelined, chunked), whole requests out, with a size limit.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <utility>
#include <string>
#include <vector>

namespace ember {

struct HttpRequest {
  std::string method;
  std::string path;
  std::string body;
  bool keep_alive = true;
};

class HttpRequestParser {
 public:
  enum class Status { Ok, Malformed, TooLarge };

  explicit HttpRequestParser(size_t max_request_bytes);
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  // Appends the requests completed by these bytes to `out`. After Malformed or
  // TooLarge the connection is beyond repair: answer and close.
  Status feed(const char* data, size_t len, std::vector<HttpRequest>& out);
  const std::string& error() const { return error_; }
  // True once per request that sent "Expect: 100-continue" (curl does for bodies over
  // 1 KiB): the server answers "100 Continue" so the client sends the body now.
  bool take_continue() { return std::exchange(want_continue_, false); }

 private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, size_t len);
  static int on_header_field(http_parser* p, const char* at, size_t len);
  static int on_header_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t len);
  static int on_message_complete(http_parser* p);
  bool grow(size_t len);  // counts bytes of the current request against the limit

  http_parser parser_;
  http_parser_settings settings_;
  size_t max_bytes_;
  size_t bytes_ = 0;
  bool too_large_ = false;
  bool want_continue_ = false;
  std::string header_field_;
  std::string header_value_;
  bool expect_continue_ = false;
  HttpRequest current_;
  std::vector<HttpRequest>* out_ = nullptr;
  std::string error_;
};

// "HTTP/1.1 <status> <reason>" with Content-Length (and the JSON body if any).
std::string http_response(int status, const std::string& body, bool keep_alive);

}  // namespace ember
