// The API socket and its thread: binds at construction (so errors reach main), serves
// the router from a thread named "ember-api", and removes the socket file when destroyed.
#pragma once

#include <memory>
#include <string>

#include "api/http_server.h"
#include "api/request_router.h"
#include "base/util/joining_thread.h"

namespace ember {

class ApiServer {
 public:
  ApiServer(const std::string& socket_path, RequestRouter& router, HttpLimits limits = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

 private:
  std::string path_;
  std::unique_ptr<HttpServer> server_;
  JoiningThread thread_;
};

}  // namespace ember
