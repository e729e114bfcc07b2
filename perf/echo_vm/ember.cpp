// ember booting or restoring the echo guest, its vsock echo, and HTTP to its API socket.
#include "perf/echo_vm/ember.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "perf/bench_util.h"
#include "base/util/base64.h"

namespace ember::perf::echo_vm {

namespace {

// One echo attempt through ember's vsock socket; until the socket exists the next comes soon.
EchoTry try_echo(const std::string& uds, int retry_ms, Clock::time_point deadline) {
  int fd = ember::perf::unix_connect(uds);
  if (fd < 0) return {"no vsock socket", std::chrono::microseconds(500)};
  std::string request = std::string("CONNECT 5000\n") + kEchoMessage, line, echo;
  std::string error;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) error = "short write";
  if (error.empty() && (!read_until(fd, line, 0, true, deadline) || line.rfind("OK ", 0) != 0)) {
    error = "refused";  // ember closes the connection when the guest has no listener (RST)
  }
  if (error.empty() && (!read_until(fd, echo, std::strlen(kEchoMessage), false, deadline) || echo != kEchoMessage)) {
    error = "echo was '" + echo + "'";
  }
  ::close(fd);
  return {error, std::chrono::milliseconds(retry_ms)};
}

}  // namespace

std::string guest_cmdline() {
  return "console=ttyS0 reboot=k panic=1 pci=off quiet ember_test=" + ember::base64(kGuestScript);
}

std::vector<std::string> ember_boot_argv(const std::string& ember, const std::string& guest_dir, int vcpus, int mem_mib,
                                         const std::string& uds, const std::string& timings) {
  return {ember, "--kernel", guest_dir + "/bzImage", "--initrd", guest_dir + "/initramfs.cpio.gz",
          "--cmdline", guest_cmdline(), "--vcpus", std::to_string(vcpus), "--mem-mib", std::to_string(mem_mib),
          "--vsock", "cid=3,uds=" + uds, "--boot-timings", timings};
}

nlohmann::json read_boot_timings(const std::string& path) {
  std::ifstream in(path);
  nlohmann::json j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  return j.is_discarded() ? nlohmann::json() : j;
}

EchoAttempt ember_echo(const std::string& uds, int retry_ms) {
  return [uds, retry_ms](Clock::time_point deadline) { return try_echo(uds, retry_ms, deadline); };
}

std::string load_body(const std::string& snapshot, const std::string& backend, const std::string& backend_path,
                      const std::string& uds) {
  nlohmann::json body = {{"snapshot_path", snapshot},
                         {"mem_backend", {{"backend_type", backend}, {"backend_path", backend_path}}},
                         {"resume_vm", true},
                         {"vsock_override", {{"uds_path", uds}}}};
  return body.dump();
}

bool http_write(int fd, const std::string& method, const std::string& path, const std::string& body) {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                    "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
}

int http_send(const std::string& sock, const std::string& method, const std::string& path, const std::string& body) {
  int fd = ember::perf::unix_connect(sock);
  if (fd >= 0 && !http_write(fd, method, path, body)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

HttpAnswer http_receive(int fd, Clock::time_point deadline) {
  HttpAnswer a;
  if (fd < 0) return a;
  std::string text;
  size_t end = std::string::npos;
  while (end == std::string::npos && read_until(fd, text, text.size() + 1, false, deadline)) end = text.find("\r\n\r\n");
  if (end != std::string::npos) {
    size_t length = 0;
    auto cl = text.find("Content-Length: ");
    if (cl != std::string::npos && cl < end) length = std::stoul(text.substr(cl + 16));
    read_until(fd, text, end + 4 + length, false, deadline);
    if (text.rfind("HTTP/1.1 ", 0) == 0) a.status = std::stoi(text.substr(9, 3));
  }
  a.text = text;
  ::close(fd);
  return a;
}

HttpAnswer http(const std::string& sock, const std::string& method, const std::string& path, const std::string& body,
                double timeout_s) {
  return http_receive(http_send(sock, method, path, body), later(Clock::now(), timeout_s));
}

std::string take_snapshot(const std::vector<std::string>& boot_argv, const std::string& api_sock, const std::string& log,
                          const std::string& uds, const std::string& snapshot, const std::string& mem_file,
                          double timeout_s, int retry_ms) {
  std::vector<std::string> argv = boot_argv;
  argv.insert(argv.end(), {"--api-sock", api_sock});
  auto start = Clock::now();
  Child vm(argv, log);
  std::string error;
  if (wait_for_echo(ember_echo(uds, retry_ms), vm, start, later(start, timeout_s), error) < 0) {
    return "the snapshot's source VM: " + error;
  }
  // Let the guest finish the echo connection (its child exits) before the pause.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  error = pause_and_save(api_sock, snapshot, mem_file, 120, 600);
  if (error.empty()) vm.stop();
  return error;
}

std::string pause_and_save(const std::string& api_sock, const std::string& snapshot, const std::string& mem_file,
                           double pause_timeout_s, double save_timeout_s) {
  HttpAnswer pause = http(api_sock, "PATCH", "/vm", R"({"state": "Paused"})", pause_timeout_s);
  if (pause.status != 204) return "PATCH /vm Paused: " + pause.text;
  nlohmann::json create = {{"snapshot_path", snapshot}, {"mem_file_path", mem_file}};
  HttpAnswer made = http(api_sock, "PUT", "/snapshot/create", create.dump(), save_timeout_s);
  if (made.status != 204) return "PUT /snapshot/create: " + made.text;
  return "";
}

double phase_delta_ms(const nlohmann::json& phases, const char* from, const char* to, const char* clock) {
  if (!phases.is_object() || !phases.contains(from) || !phases.contains(to)) return -1;
  return (phases[to][clock].get<double>() - phases[from][clock].get<double>()) / 1000;
}

}  // namespace ember::perf::echo_vm
