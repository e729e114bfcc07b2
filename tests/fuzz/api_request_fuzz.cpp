// libFuzzer target: a hostile API client. The bytes are fed to the HTTP request parser
// in pieces (the first byte picks the piece size, as reads would split them), and every
// request it completes goes through the router and the JSON mapping against a fake VMM.
// Nothing may crash, hang or leak; every answer must be 200, 204 or 400.
#include <cstdint>
#include <cstdlib>

#include "api/http_request_parser.h"
#include "api/request_router.h"
#include "base/util/log.h"

namespace {

using namespace ember;

class FakeVm : public VmController {
 public:
  InstanceState state() const override { return state_; }
  void start(const VmConfig&) override { state_ = InstanceState::Running; }
  void check_boot_source(const BootSource&) override {}  // no files from the fuzzer
  void check_drive(const DriveConfig&) override {}
  void check_serial_output(const SerialConfig&) override {}  // no files from the fuzzer
  void update_drive_rate_limiter(const std::string&, const RateLimiterConfig&) override {}
  void replace_drive_file(const std::string&, const std::string&) override {}  // no files from the fuzzer
  void update_net_rate_limiters(const std::string&, const RateLimiterConfig&, const RateLimiterConfig&) override {}
  void pause() override { state_ = InstanceState::Paused; }
  void resume() override { state_ = InstanceState::Running; }
  void send_ctrl_alt_del() override {}
  void create_snapshot(const SnapshotCreateParams&) override {}  // no files from the fuzzer
  VmConfig load_snapshot(const SnapshotLoadParams&, const SerialConfig&) override {
    state_ = InstanceState::Paused;
    return {};
  }
  void configure_logger(const log::LoggerConfig&) override {}  // no files from the fuzzer
  void configure_metrics(const MetricsConfig&) override {}
  void flush_metrics() override {}
  InstanceState state_ = InstanceState::NotStarted;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    log::set_level(log::Level::Off);
    return true;
  }();
  (void)quiet;
  if (size < 1) return 0;
  size_t piece = 1 + data[0] % 64;
  FakeVm vm;
  RequestRouter router(vm, FullVmConfig{}, "fuzz", "0");
  HttpRequestParser parser(4096, 4096);
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size -= 1;
  for (size_t at = 0; at < size; at += piece) {
    std::vector<HttpRequest> requests;
    HttpRequestParser::Status status = parser.feed(bytes + at, std::min(piece, size - at), requests);
    for (const HttpRequest& r : requests) {
      ApiResponse response = router.handle({r.method, r.path, r.body});
      if (response.status != 200 && response.status != 204 && response.status != 400) std::abort();
      (void)http_response(response.status, response.body, r.keep_alive);
    }
    if (status != HttpRequestParser::Status::Ok) break;
  }
  return 0;
}
