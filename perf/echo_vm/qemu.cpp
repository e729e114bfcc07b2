// QEMU microvm for the echo VM: its command line, the AF_VSOCK echo, and the migration file
// written once over QMP.
#include "perf/echo_vm/qemu.h"

#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>

namespace ember::perf::echo_vm {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// `name` as execvp would find it: itself when it holds a '/', else the first executable on PATH.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? fs::absolute(name).string() : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return fs::absolute(candidate).string();
  }
  return "";
}

// A QMP connection in command mode (the greeting read, capabilities negotiated).
class Qmp {
 public:
  Qmp(const std::string& sock, Clock::time_point deadline) : deadline_(deadline) {
    fd_ = ember::perf::unix_connect(sock);
    if (fd_ < 0) {
      error_ = "cannot connect to QMP at " + sock;
      return;
    }
    if (!next().contains("QMP")) error_ = "no QMP greeting";
    else error_ = failure(execute("qmp_capabilities"));
  }
  Qmp(const Qmp&) = delete;
  Qmp& operator=(const Qmp&) = delete;
  ~Qmp() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Why the connection cannot be used, or "".
  const std::string& error() const { return error_; }

  // Runs one command: its answer ({"return": ...} or {"error": ...}), events skipped; null
  // when QEMU did not answer.
  json execute(const std::string& command, const json& arguments = nullptr) {
    if (fd_ < 0) return nullptr;
    json request = {{"execute", command}};
    if (!arguments.is_null()) request["arguments"] = arguments;
    std::string text = request.dump() + "\n";
    if (::send(fd_, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) return nullptr;
    for (;;) {
      json message = next();
      if (!message.is_object() || !message.contains("event")) return message;
    }
  }

  // Why an answer is not a success, or "".
  static std::string failure(const json& answer) {
    if (answer.is_object() && answer.contains("return")) return "";
    if (answer.is_object() && answer.contains("error")) return answer["error"].value("desc", answer.dump());
    return "no answer from QEMU";
  }

 private:
  // The next message (QMP sends one JSON object a line); null on EOF, error or the deadline.
  json next() {
    std::string line;
    if (!read_until(fd_, line, 0, true, deadline_)) return nullptr;
    json message = json::parse(line, nullptr, false);
    return message.is_discarded() ? json() : message;
  }

  int fd_ = -1;
  Clock::time_point deadline_;
  std::string error_;
};

// Waits for a connecting non-blocking socket: 0 once connected, else the error (ETIMEDOUT at
// the deadline).
int wait_connected(int fd, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  pollfd p{fd, POLLOUT, 0};
  if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return ETIMEDOUT;
  int error = 0;
  socklen_t len = sizeof(error);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  return error;
}

}  // namespace

std::string qemu_unavailable(std::string& qemu) {
  std::string path = find_program(qemu);
  if (path.empty()) return qemu + (qemu.find('/') == std::string::npos ? " is not on PATH" : " is not executable");
  qemu = path;
  if (::access("/dev/vhost-vsock", R_OK | W_OK) != 0) {
    return "/dev/vhost-vsock: " + errno_text(errno) + "; QEMU's vhost-vsock-device needs it (modprobe vhost_vsock)";
  }
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "no AF_VSOCK socket: " + errno_text(errno);
  ::close(fd);
  return "";
}

bool qemu_usable(std::string& qemu, const char* tool) {
  std::string why = qemu_unavailable(qemu);
  if (!why.empty()) {
    std::cerr << tool << ": QEMU cannot be measured here: " << why
              << ". --qemu BIN names another QEMU; --no-qemu measures ember alone.\n";
  }
  return why.empty();
}

std::vector<std::string> qemu_argv(const QemuGuest& g, const std::string& qmp_sock, const std::string& incoming) {
  std::vector<std::string> a = ember::perf::qemu_microvm_argv(g.qemu, false, g.vcpus, g.mem_mib, g.kernel, g.initrd,
                                                             g.cmdline);
  // A stream carries the source's run state ("globalstate"): from the stopped source it
  // would leave the destination paused until `cont`. Without it the destination starts the
  // guest once loaded.
  a.insert(a.end(), {"-device", "vhost-vsock-device,guest-cid=" + std::to_string(g.cid), "-qmp",
                     "unix:" + qmp_sock + ",server=on,wait=off", "-global", "migration.store-global-state=off"});
  if (!incoming.empty()) a.insert(a.end(), {"-incoming", "exec:cat '" + incoming + "'"});
  return a;
}

EchoTry vsock_echo(unsigned cid, unsigned port, const std::string& message, int retry_ms,
                   Clock::time_point deadline) {
  EchoTry t{"", std::chrono::milliseconds(retry_ms)};
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return {"no AF_VSOCK socket: " + errno_text(errno), t.retry_after};
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  int error = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
  if (error == EINPROGRESS) error = wait_connected(fd, deadline);
  if (error != 0) t.error = "connect: " + errno_text(error);
  // ENODEV: no VM holds the CID yet (QEMU has not opened its vhost-vsock device): soon again.
  // ETIMEDOUT: the guest's driver did not take the request within AF_VSOCK's connect timeout
  // (2 s): at once. ECONNRESET: the guest has no listener yet: after `retry_ms`.
  if (error == ENODEV) t.retry_after = std::chrono::microseconds(500);
  if (error == ETIMEDOUT) t.retry_after = {};
  std::string echo;
  if (t.error.empty() && ::send(fd, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size())) {
    t.error = "short write";
  }
  if (t.error.empty() && (!read_until(fd, echo, message.size(), false, deadline) || echo != message)) {
    t.error = "echo was '" + echo + "'";
  }
  ::close(fd);
  return t;
}

MigrationFile qemu_save(const QemuGuest& g, const EchoAttempt& echo, const fs::path& dir, const std::string& file,
                        double timeout_s) {
  const std::string qmp_sock = (dir / "qemu-source-qmp.sock").string(), partial = file + ".part";
  auto start = Clock::now(), deadline = later(start, timeout_s);
  Child vm(qemu_argv(g, qmp_sock, ""), (dir / "qemu-source.log").string());
  std::string error;
  if (wait_for_echo(echo, vm, start, deadline, error) < 0) return {"QEMU's source VM: " + error, nullptr};
  // Let the guest finish the echo connection (its child exits) before the stop.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  Qmp qmp(qmp_sock, deadline);
  if (!qmp.error().empty()) return {"QMP: " + qmp.error(), nullptr};
  if (std::string why = Qmp::failure(qmp.execute("stop")); !why.empty()) return {"QMP stop: " + why, nullptr};
  // QEMU reports the migration completed before it closes the pipe and waits for cat: cat
  // writes a partial file, renamed once it has all of it.
  json uri = {{"uri", "exec:cat > '" + partial + "' && mv '" + partial + "' '" + file + "'"}};
  if (std::string why = Qmp::failure(qmp.execute("migrate", uri)); !why.empty()) return {"QMP migrate: " + why, nullptr};
  MigrationFile m;
  for (;;) {
    json answer = qmp.execute("query-migrate");
    json state = answer.is_object() ? answer.value("return", json::object()) : json::object();
    std::string status = state.value("status", "");
    if (status == "completed") {
      m.stats = state;
      break;
    }
    if (status == "failed" || status == "cancelled" || answer.is_null() || Clock::now() > deadline) {
      return {"migration " + (status.empty() ? "status unknown" : status) + ": " + state.value("error-desc", answer.dump()),
              state};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  qmp.execute("quit");
  vm.wait(60);
  while (!fs::exists(file)) {
    if (Clock::now() > deadline) return {"cat did not finish writing " + partial, m.stats};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return m;
}

}  // namespace ember::perf::echo_vm
