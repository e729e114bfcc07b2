#include "api/api_server.h"

#include <unistd.h>

#include "base/util/thread.h"

namespace ember {

ApiServer::ApiServer(const std::string& socket_path, RequestRouter& router, HttpLimits limits) : path_(socket_path) {
  server_ = std::make_unique<HttpServer>(
      listen_unix_socket(path_), [&router](const ApiRequest& r) { return router.handle(r); }, limits,
      [&router](int status) { router.count("http", "malformed", status); });
  thread_ = JoiningThread(start_thread(ThreadRole::Api, "ember-api", [this] { server_->run(); }));
}

ApiServer::~ApiServer() {
  server_->stop();
  thread_.join();
  ::unlink(path_.c_str());
}

}  // namespace ember
