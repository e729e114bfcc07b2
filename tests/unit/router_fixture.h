// A request router over the fake VMM, for the API's unit tests: send a request, read the
// fault message of a 400.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "api/request_router.h"
#include "tests/unit/fake_vm.h"

namespace ember {

class RouterFixture : public ::testing::Test {
 protected:
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body = "") {
    return router.handle({method, path, body});
  }
  // The fault message of a 400, or a note that it was not one.
  std::string fault(const std::string& method, const std::string& path, const std::string& body = "") {
    ApiResponse r = call(method, path, body);
    if (r.status != 400) return "status " + std::to_string(r.status);
    return Json::parse(r.body).at("fault_message").get<std::string>();
  }

  FakeVm vm;
  RequestRouter router{vm, FullVmConfig{}, "vm-1", "0.1.0"};
};

}  // namespace ember
