// The API's HTTP layer over a real Unix socket: partial, pipelined, keep-alive,
// oversized and malformed requests, and clients that vanish mid-request.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/http_server.h"
#include "base/util/error.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember-http-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    path = (dir / "api.sock").string();
    HttpLimits limits;
    limits.max_payload_bytes = 1024;
    limits.max_header_bytes = 1024;
    limits.max_connections = 4;
    limits.evict_idle_ms = 500;
    limits.idle_timeout_ms = 1500;
    server = std::make_unique<HttpServer>(
        listen_unix_socket(path),
        [this](const ApiRequest& r) {
          ++handled;
          if (r.path == "/echo") return ApiResponse{200, Json{{"method", r.method}, {"body", r.body}}.dump()};
          return ApiResponse{204, ""};
        },
        limits);
    thread = std::thread([this] { server->run(); });
  }
  void TearDown() override {
    server->stop();
    thread.join();
    fs::remove_all(dir);
  }
  UniqueFd connect_client() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << errno_text();
    return fd;
  }
  static void send_all(int fd, const std::string& data) {
    ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
  }
  // Reads until `count` responses (counted by status line) arrived, EOF, or 5 s.
  static std::string read_responses(int fd, size_t count, bool* eof = nullptr) {
    std::string got;
    for (;;) {
      size_t seen = 0;
      for (size_t at = got.find("HTTP/1.1 "); at != std::string::npos; at = got.find("HTTP/1.1 ", at + 1)) ++seen;
      if (seen >= count && count > 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        if (eof) *eof = true;
        break;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  fs::path dir;
  std::string path;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  std::atomic<int> handled{0};
};

const std::string kPut = "PUT /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}";

TEST_F(HttpServerTest, SocketIsPrivateAndInUseIsRefused) {
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  try {
    listen_unix_socket(path);
    FAIL() << "a socket in use was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos) << e.what();
  }
}

TEST(HttpSocket, StaleSocketIsReplacedAndOtherFilesRefused) {
  fs::path dir = fs::temp_directory_path() / ("ember-http-stale-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "api.sock").string();
  { UniqueFd first = listen_unix_socket(path); }  // closed: the file stays, stale
  EXPECT_NO_THROW(listen_unix_socket(path));
  std::string plain = (dir / "plain").string();
  { std::ofstream(plain) << "x"; }
  EXPECT_THROW(listen_unix_socket(plain), Error);
  EXPECT_THROW(listen_unix_socket(std::string(200, 'a')), Error);
  fs::remove_all(dir);
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  UniqueFd c = connect_client();
  for (int i = 0; i < 3; ++i) {
    send_all(c.get(), kPut);
    std::string r = read_responses(c.get(), 1);
    EXPECT_NE(r.find("HTTP/1.1 200 OK"), std::string::npos) << r;
    EXPECT_NE(r.find(R"("method":"PUT")"), std::string::npos) << r;
  }
  EXPECT_EQ(handled, 3);
}

TEST_F(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  UniqueFd c = connect_client();
  send_all(c.get(), kPut + "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + kPut);
  std::string r = read_responses(c.get(), 3);
  size_t first = r.find("200 OK"), second = r.find("204 No Content"), third = r.rfind("200 OK");
  ASSERT_NE(first, std::string::npos) << r;
  ASSERT_NE(second, std::string::npos) << r;
  EXPECT_LT(first, second);
  EXPECT_GT(third, second);
}

TEST_F(HttpServerTest, PartialRequestAndBodySplitAcrossReads) {
  UniqueFd c = connect_client();
  for (size_t i = 0; i < kPut.size(); i += 7) {
    send_all(c.get(), kPut.substr(i, 7));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::string r = read_responses(c.get(), 1);
  EXPECT_NE(r.find(R"("body":"{\"a\": true}")"), std::string::npos) << r;
}

TEST_F(HttpServerTest, ChunkedBody) {
  UniqueFd c = connect_client();
  send_all(c.get(), "PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n");
  std::string r = read_responses(c.get(), 1);
  EXPECT_NE(r.find(R"("body":"{\"a\":1}")"), std::string::npos) << r;
}

TEST_F(HttpServerTest, ExpectContinueGets100) {
  UniqueFd c = connect_client();
  send_all(c.get(), "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  std::string r = read_responses(c.get(), 1);
  EXPECT_NE(r.find("HTTP/1.1 100 Continue"), std::string::npos) << r;
  send_all(c.get(), "{}");
  r = read_responses(c.get(), 1);
  EXPECT_NE(r.find("200 OK"), std::string::npos) << r;
}

// As Firecracker: a payload over the limit is 400 with micro_http's message, answered
// when the headers declare it (no wait for the body); headers over theirs are 413.
TEST_F(HttpServerTest, OversizedRequestsAreRefusedAtOnceAndClose) {
  UniqueFd c = connect_client();
  send_all(c.get(), "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n");
  bool eof = false;
  std::string r = read_responses(c.get(), 0, &eof);
  EXPECT_NE(r.find("HTTP/1.1 400 Bad Request"), std::string::npos) << r;
  EXPECT_NE(r.find(R"({"error":"Request payload with size 1025 is larger than the limit of 1024 allowed by server.)"
                   R"(\nAll previous unanswered requests will be dropped."})"),
            std::string::npos) << r;
  EXPECT_TRUE(eof);

  UniqueFd at_limit = connect_client();
  send_all(at_limit.get(), "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'b'));
  EXPECT_NE(read_responses(at_limit.get(), 1).find("HTTP/1.1 200"), std::string::npos);

  UniqueFd chunked = connect_client();
  std::string big = "PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; ++i) big += "40\r\n" + std::string(64, 'x') + "\r\n";
  ::send(chunked.get(), big.data(), big.size(), MSG_NOSIGNAL);
  r = read_responses(chunked.get(), 0, &eof);
  EXPECT_NE(r.find("400 Bad Request"), std::string::npos) << r;
  EXPECT_NE(r.find("is larger than the limit of 1024 allowed by server."), std::string::npos) << r;

  UniqueFd headers = connect_client();
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) many += "X-Filler: " + std::string(20, 'y') + "\r\n";
  ::send(headers.get(), many.data(), many.size(), MSG_NOSIGNAL);
  r = read_responses(headers.get(), 0, &eof);
  EXPECT_NE(r.find("413 Payload Too Large"), std::string::npos) << r;
  EXPECT_EQ(handled, 1);  // only the request at the limit
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndClose) {
  for (const char* bad : {"NONSENSE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                          "GET / HTTP/1.1\r\nBad Header\r\n\r\n", "\x01\x02\x03\r\n\r\n"}) {
    UniqueFd c = connect_client();
    send_all(c.get(), bad);
    bool eof = false;
    std::string r = read_responses(c.get(), 0, &eof);
    EXPECT_NE(r.find("400 Bad Request"), std::string::npos) << bad << " -> " << r;
    EXPECT_NE(r.find("fault_message"), std::string::npos) << r;
    EXPECT_TRUE(eof) << bad;
  }
  EXPECT_EQ(handled, 0);
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  UniqueFd c = connect_client();
  send_all(c.get(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  bool eof = false;
  std::string r = read_responses(c.get(), 0, &eof);
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_TRUE(eof);
}

TEST_F(HttpServerTest, ClientVanishingMidRequestLeavesServerServing) {
  {
    UniqueFd c = connect_client();
    send_all(c.get(), kPut.substr(0, kPut.size() - 4));
  }
  {
    UniqueFd c = connect_client();
    send_all(c.get(), "GET / HT");
  }
  UniqueFd next = connect_client();
  send_all(next.get(), kPut);
  EXPECT_NE(read_responses(next.get(), 1).find("200 OK"), std::string::npos);
  EXPECT_EQ(handled, 1);
}

TEST_F(HttpServerTest, ConnectionLimit) {
  std::vector<UniqueFd> open;
  for (int i = 0; i < 4; ++i) {
    open.push_back(connect_client());
    send_all(open.back().get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    read_responses(open.back().get(), 1);
  }
  UniqueFd extra = connect_client();
  bool eof = false;
  std::string r = read_responses(extra.get(), 0, &eof);
  EXPECT_NE(r.find("503"), std::string::npos) << r;
  EXPECT_TRUE(eof);
  open.pop_back();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  UniqueFd again = connect_client();
  send_all(again.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(read_responses(again.get(), 1).find("204"), std::string::npos);
}

// A client that connects and says nothing is closed after the idle timeout.
TEST_F(HttpServerTest, IdleConnectionIsClosedAfterTheTimeout) {
  UniqueFd idle = connect_client();
  auto start = std::chrono::steady_clock::now();
  bool eof = false;
  read_responses(idle.get(), 0, &eof);
  EXPECT_TRUE(eof);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1400));
}

// Idle clients at the limit do not lock the API out: the one idle longest makes room.
TEST_F(HttpServerTest, AtTheLimitTheLongestIdleConnectionMakesRoom) {
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(connect_client());
    send_all(idle.back().get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    read_responses(idle.back().get(), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  UniqueFd fresh = connect_client();
  send_all(fresh.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(read_responses(fresh.get(), 1).find("204"), std::string::npos);
  bool eof = false;
  read_responses(idle.front().get(), 0, &eof);  // the first one was idle longest
  EXPECT_TRUE(eof);
}

TEST(HttpRequestParser, IncrementalBytes) {
  HttpRequestParser p(1024, 1024);
  std::vector<HttpRequest> out;
  for (char ch : kPut) ASSERT_EQ(p.feed(&ch, 1, out), HttpRequestParser::Status::Ok);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].method, "PUT");
  EXPECT_EQ(out[0].path, "/echo");
  EXPECT_EQ(out[0].body, "{\"a\": true}");
  EXPECT_TRUE(out[0].keep_alive);
}

}  // namespace
}  // namespace ember
