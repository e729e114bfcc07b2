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
  // PayloadTooLarge: a body over the payload limit (Firecracker's 400); TooLarge: the
  // request line and headers over theirs (413).
  enum class Status { Ok, Malformed, PayloadTooLarge, TooLarge };

  HttpRequestParser(size_t max_payload_bytes, size_t max_header_bytes);
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  // Appends the requests completed by these bytes to `out`. After anything but Ok the
  // connection is beyond repair: answer and close.
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
  bool grow_header(size_t len);  // counts the request line and headers against their limit
  bool grow_body(size_t len);    // counts the body against the payload limit

  http_parser parser_;
  http_parser_settings settings_;
  size_t max_payload_;
  size_t max_header_;
  size_t header_bytes_ = 0;
  size_t body_bytes_ = 0;
  bool too_large_ = false;       // headers over their limit
  uint64_t payload_over_ = 0;    // the size of a body over the limit, once seen
  bool want_continue_ = false;
  std::string header_field_;
  std::string header_value_;
  bool expect_continue_ = false;
  HttpRequest current_;
  std::vector<HttpRequest>* out_ = nullptr;
  std::string error_;
};

// "HTTP/1.1 <status> <reason>" with Content-Length (and the JSON body if any);
// "Deprecation: true" when the request used a deprecated field, as Firecracker.
std::string http_response(int status, const std::string& body, bool keep_alive, bool deprecated = false,
                          const char* content_type = "application/json");

}  // namespace ember
