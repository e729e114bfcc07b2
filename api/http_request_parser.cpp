#include "api/http_request_parser.h"

#include <strings.h>

#include <climits>

#include <utility>

#include "base/util/error.h"

namespace ember {

namespace {
HttpRequestParser& self(http_parser* p) { return *static_cast<HttpRequestParser*>(p->data); }
}  // namespace

HttpRequestParser::HttpRequestParser(size_t max_payload_bytes, size_t max_header_bytes)
    : max_payload_(max_payload_bytes), max_header_(max_header_bytes) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
}

bool HttpRequestParser::grow_header(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= max_header_) return true;
  too_large_ = true;
  return false;
}

bool HttpRequestParser::grow_body(size_t len) {
  body_bytes_ += len;
  if (body_bytes_ <= max_payload_) return true;
  payload_over_ = body_bytes_;
  return false;
}

int HttpRequestParser::on_message_begin(http_parser* p) {
  HttpRequestParser& s = self(p);
  s.current_ = HttpRequest{};
  s.header_bytes_ = 0;
  s.body_bytes_ = 0;
  s.expect_continue_ = false;
  s.header_field_.clear();
  s.header_value_.clear();
  return 0;
}

int HttpRequestParser::on_url(http_parser* p, const char* at, size_t len) {
  HttpRequestParser& s = self(p);
  if (!s.grow_header(len)) return 1;
  s.current_.path.append(at, len);
  return 0;
}

// Header names and values may arrive in pieces; a name after a value starts a new header.
int HttpRequestParser::on_header_field(http_parser* p, const char* at, size_t len) {
  HttpRequestParser& s = self(p);
  if (!s.grow_header(len)) return 1;
  if (!s.header_value_.empty()) {
    s.header_field_.clear();
    s.header_value_.clear();
  }
  s.header_field_.append(at, len);
  return 0;
}

int HttpRequestParser::on_header_value(http_parser* p, const char* at, size_t len) {
  HttpRequestParser& s = self(p);
  if (!s.grow_header(len)) return 1;
  s.header_value_.append(at, len);
  if (strcasecmp(s.header_field_.c_str(), "Expect") == 0 && strcasecmp(s.header_value_.c_str(), "100-continue") == 0) {
    s.expect_continue_ = true;
  }
  return 0;
}

int HttpRequestParser::on_headers_complete(http_parser* p) {
  HttpRequestParser& s = self(p);
  // A declared body over the limit is refused before it is sent, as Firecracker does.
  if (p->content_length != ULLONG_MAX && p->content_length > s.max_payload_) {
    s.payload_over_ = p->content_length;
    return -1;
  }
  if (p->http_major != 1 || p->http_minor > 1) {
    s.error_ = "unsupported HTTP version " + std::to_string(p->http_major) + "." + std::to_string(p->http_minor) +
               " (HTTP/1.0 and HTTP/1.1 are served)";
    return -1;
  }
  s.current_.method = http_method_str(static_cast<http_method>(p->method));
  if (s.expect_continue_ && p->content_length != ULLONG_MAX && p->content_length > 0) s.want_continue_ = true;
  return 0;
}

int HttpRequestParser::on_body(http_parser* p, const char* at, size_t len) {
  HttpRequestParser& s = self(p);
  if (!s.grow_body(len)) return 1;
  s.current_.body.append(at, len);
  return 0;
}

int HttpRequestParser::on_message_complete(http_parser* p) {
  HttpRequestParser& s = self(p);
  s.current_.keep_alive = http_should_keep_alive(p) != 0;
  s.out_->push_back(std::move(s.current_));
  s.current_ = HttpRequest{};
  return 0;
}

HttpRequestParser::Status HttpRequestParser::feed(const char* data, size_t len, std::vector<HttpRequest>& out) {
  if (!error_.empty()) {
    if (payload_over_) return Status::PayloadTooLarge;
    return too_large_ ? Status::TooLarge : Status::Malformed;
  }
  out_ = &out;
  size_t used = http_parser_execute(&parser_, &settings_, data, len);
  out_ = nullptr;
  if (payload_over_) {  // Firecracker's (micro_http's) words
    error_ = "Request payload with size " + std::to_string(payload_over_) + " is larger than the limit of " +
             std::to_string(max_payload_) + " allowed by server.";
    return Status::PayloadTooLarge;
  }
  if (too_large_) {
    error_ = "request line and headers larger than " + std::to_string(max_header_) + " bytes";
    return Status::TooLarge;
  }
  if (!error_.empty()) return Status::Malformed;
  http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_HEADER_OVERFLOW) {
    too_large_ = true;
    error_ = "request headers too large";
    return Status::TooLarge;
  }
  if (err != HPE_OK || (used != len && !parser_.upgrade)) {
    error_ = std::string("malformed HTTP request: ") + http_errno_description(err);
    return Status::Malformed;
  }
  if (parser_.upgrade) {
    error_ = "protocol upgrades are not supported";
    return Status::Malformed;
  }
  return Status::Ok;
}

std::string http_response(int status, const std::string& body, bool keep_alive, bool deprecated,
                          const char* content_type) {
  const char* reason = status == 200 ? "OK" : status == 204 ? "No Content" : status == 400 ? "Bad Request"
                     : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                     : status == 413 ? "Payload Too Large" : status == 429 ? "Too Many Requests"
                     : status == 502 ? "Bad Gateway" : status == 503 ? "Service Unavailable"
                     : status == 504 ? "Gateway Timeout" : "Internal Server Error";
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nServer: ember\r\n";
  if (!body.empty()) r += cat("Content-Type: ", content_type, "\r\n");
  if (status != 204) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) r += "Connection: close\r\n";
  if (deprecated) r += "Deprecation: true\r\n";
  r += "\r\n";
  r += body;
  return r;
}

}  // namespace ember
