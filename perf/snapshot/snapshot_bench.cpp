// Snapshot suite driver: how much sooner a restored guest answers than a booted one, and
// how little memory clones of one snapshot take. The guest runs `vsock-io listen 5000 echo`;
// "responsive" means a host process got its first echo through ember's vsock Unix socket.
// In one run, interleaved, N times each:
//  - cold boot: spawn ember with the kernel -> first echo;
//  - restore from a snapshot of that guest (taken once, after its first echo), File or Uffd
//    memory backend, by the launcher (spawn `ember --restore` -> first echo) or over the
//    API (PUT /snapshot/load sent to a waiting `ember --api-sock` -> first echo);
// with ember's own phase timeline (--boot-timings) for the CPU it spends from the start of
// the restore to the first KVM_RUN, and RSS/PSS/private memory after the echo. Then C clones
// restored at once from the same files (File backend, one vsock socket each) for density.
// Writes results.json, results.md and cdf-*.dat (for run.sh's chart) into --out.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"
#include "tests/e2e/base64.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using ember::perf::percentile;
namespace fs = std::filesystem;

namespace {

struct Options {
  int runs = 10;
  std::string ember, uffd_handler, guest, out = ".";
  std::vector<int> clones = {10};
  int mem_mib = 128, vcpus = 1;
  double timeout_s = 300;  // per VM, spawn to first echo
  int retry_ms = 10;       // between echo attempts the guest refused (it is not listening yet)
};

constexpr const char* kGuestScript = "vsock-io listen 5000 echo\n";
constexpr const char* kEchoMessage = "ping";

// `from` plus `seconds`.
Clock::time_point later(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A child process with stdout and stderr in a log file; SIGTERM (then SIGKILL) when dropped.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int null_fd = ::open("/dev/null", O_RDONLY);
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(); }

  pid_t pid() const { return pid_; }
  bool exited() {
    if (!done_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) done_ = true;
    return done_;
  }
  void terminate() {
    if (!exited()) ::kill(pid_, SIGTERM);
  }
  // Waits for the end, SIGKILL after `timeout_s`; the exit status (128+signal if killed).
  int wait(double timeout_s = 60) {
    auto deadline = later(Clock::now(), timeout_s);
    while (!exited()) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        done_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  int stop() {
    terminate();
    return wait();
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool done_ = false;
};

// Waits until `path` accepts a connection; false at the deadline or once `owner` exited.
bool wait_for_socket(const std::string& path, Child& owner, Clock::time_point deadline) {
  while (Clock::now() < deadline && !owner.exited()) {
    int fd = ember::perf::unix_connect(path);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return false;
}

// Whether a socket listens at `path`, from /proc/net/unix (flag __SO_ACCEPTCON), without
// connecting: the page-fault handler takes the first connection as ember's and removes its socket.
bool listening_without_connect(const std::string& path) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string num, refs, protocol, flags, type, state, inode, name;
    words >> num >> refs >> protocol >> flags >> type >> state >> inode >> name;
    if (name == path && flags == "00010000") return true;
  }
  return false;
}

bool wait_for_handler(const std::string& path, Child& handler, Clock::time_point deadline) {
  while (Clock::now() < deadline && !handler.exited()) {
    if (listening_without_connect(path)) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return false;
}

// Reads into `out` until it holds `want` bytes or the line ends ('\n' in `until_newline`
// mode); false on EOF, error or the deadline.
bool read_until(int fd, std::string& out, size_t want, bool until_newline, Clock::time_point deadline) {
  char c;
  for (;;) {
    if (until_newline ? (!out.empty() && out.back() == '\n') : out.size() >= want) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    if (::read(fd, &c, 1) != 1) return false;
    out += c;
  }
}

// One echo attempt through ember's vsock socket: "" when the guest echoed, else why not.
std::string try_echo(const std::string& uds, Clock::time_point deadline) {
  int fd = ember::perf::unix_connect(uds);
  if (fd < 0) return "no vsock socket";
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
  return error;
}

// Repeats echo attempts until one succeeds: its time since `start` in ms, or -1 with `error`.
double wait_for_echo(const std::string& uds, Child& vm, Clock::time_point start, Clock::time_point deadline,
                     int retry_ms, std::string& error) {
  for (;;) {
    std::string why = try_echo(uds, deadline);
    if (why.empty()) return ms_between(start, Clock::now());
    if (vm.exited()) {
      error = "ember exited before the guest echoed (" + why + ")";
      return -1;
    }
    if (Clock::now() >= deadline) {
      error = "no echo in time (" + why + ")";
      return -1;
    }
    auto pause = why == "no vsock socket" ? std::chrono::microseconds(500) : std::chrono::microseconds(retry_ms * 1000);
    std::this_thread::sleep_for(pause);
  }
}

// ---- ember's API: raw HTTP/1.1 over its Unix socket ----

// Sends one request on a new connection; the fd to read the answer from, or -1.
int http_send(const std::string& sock, const std::string& method, const std::string& path, const std::string& body) {
  int fd = ember::perf::unix_connect(sock);
  if (fd < 0) return -1;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                    "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string text;
};

// Reads the status line, headers and Content-Length body, and closes `fd`.
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

// ---- the measurements ----

struct Files {
  fs::path dir;       // scratch: sockets, logs, timings
  std::string snap, mem;
  std::string uds;    // the snapshot's vsock socket (cold boots and launcher restores use it too)
};

struct Sample {
  bool ok = false;
  double ready_ms = 0;     // spawn (launcher) or PUT /snapshot/load sent (API) -> first echo
  double load_ms = -1;     // API: PUT /snapshot/load sent -> its answer
  long rss_kib = -1, pss_kib = -1, private_kib = -1;  // after the echo
  json phases;             // ember's --boot-timings
  std::string error;
};

struct Variant {
  std::string name;
  std::string backend;  // "" (cold boot), "File", "Uffd"
  bool api = false;
};

std::string load_body(const Files& f, const std::string& backend, const std::string& backend_path,
                      const std::string& uds) {
  json body = {{"snapshot_path", f.snap},
               {"mem_backend", {{"backend_type", backend}, {"backend_path", backend_path}}},
               {"resume_vm", true},
               {"vsock_override", {{"uds_path", uds}}}};
  return body.dump();
}

std::vector<std::string> boot_argv(const Options& o, const std::string& uds, const std::string& timings) {
  std::string cmdline = "console=ttyS0 reboot=k panic=1 pci=off quiet ember_test=" + ember::e2e::util::base64(kGuestScript);
  return {o.ember, "--kernel", o.guest + "/bzImage", "--initrd", o.guest + "/initramfs.cpio.gz", "--cmdline", cmdline,
          "--vcpus", std::to_string(o.vcpus), "--mem-mib", std::to_string(o.mem_mib), "--vsock", "cid=3,uds=" + uds,
          "--boot-timings", timings};
}

void read_memory(Sample& s, pid_t pid) {
  s.rss_kib = ember::perf::smaps_rollup_kib(pid, "Rss");
  s.pss_kib = ember::perf::smaps_rollup_kib(pid, "Pss");
  s.private_kib = ember::perf::smaps_rollup_kib(pid, "Private_Clean") + ember::perf::smaps_rollup_kib(pid, "Private_Dirty");
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  json j = in ? json::parse(in, nullptr, false) : json();
  return j.is_discarded() ? json() : j;  // missing or cut short: null
}

Sample measure(const Variant& v, const Options& o, const Files& f) {
  Sample s;
  const fs::path d = f.dir;
  const std::string timings = (d / "timings.json").string(), handler_sock = (d / "uffd.sock").string();
  const std::string api_sock = (d / "api.sock").string(), log = (d / (v.name + ".log")).string();
  fs::remove(timings);
  std::unique_ptr<Child> handler;
  std::string backend_path = f.mem;
  if (v.backend == "Uffd") {
    handler = std::make_unique<Child>(std::vector<std::string>{o.uffd_handler, handler_sock, f.mem},
                                      (d / "uffd-handler.log").string());
    if (!wait_for_handler(handler_sock, *handler, Clock::now() + std::chrono::seconds(60))) {
      s.error = "the page-fault handler did not listen";
      return s;
    }
    backend_path = handler_sock;
  }
  std::vector<std::string> argv;
  if (v.backend.empty()) argv = boot_argv(o, f.uds, timings);
  else if (v.api) argv = {o.ember, "--api-sock", api_sock, "--boot-timings", timings};
  else argv = {o.ember, "--restore", f.snap, v.backend == "File" ? "--mem-file" : "--uffd-socket", backend_path,
               "--boot-timings", timings, "--api-sock", api_sock};
  auto start = Clock::now();
  Child vm(argv, log);
  if (!v.backend.empty() && !wait_for_socket(api_sock, vm, start + std::chrono::seconds(60))) {
    s.error = "no API socket";
    return s;
  }
  if (v.api) {
    start = Clock::now();
    HttpAnswer a = http(api_sock, "PUT", "/snapshot/load", load_body(f, v.backend, backend_path, f.uds), o.timeout_s);
    s.load_ms = ms_between(start, Clock::now());
    if (a.status != 204) s.error = "PUT /snapshot/load: " + (a.status ? a.text : "no answer");
  }
  if (s.error.empty()) {
    s.ready_ms = wait_for_echo(f.uds, vm, start, later(start, o.timeout_s), o.retry_ms, s.error);
  }
  if (s.error.empty()) read_memory(s, vm.pid());
  vm.stop();  // SIGTERM: ember stops the VM and writes its timings
  if (handler) handler->wait(30);  // it ends when ember closes its connection
  s.phases = read_json(timings);
  s.ok = s.error.empty();
  return s;
}

// Boots the guest once with the API, waits for its echo, pauses it and writes the snapshot.
std::string take_snapshot(const Options& o, const Files& f) {
  std::string sock = (f.dir / "source-api.sock").string();
  std::vector<std::string> argv = boot_argv(o, f.uds, (f.dir / "source-timings.json").string());
  argv.insert(argv.end(), {"--api-sock", sock});
  auto start = Clock::now();
  Child vm(argv, (f.dir / "source.log").string());
  std::string error;
  if (wait_for_echo(f.uds, vm, start, later(start, o.timeout_s), o.retry_ms, error) < 0) {
    return "the snapshot's source VM: " + error;
  }
  // Let the guest finish the echo connection (its child exits) before the pause.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  HttpAnswer pause = http(sock, "PATCH", "/vm", R"({"state": "Paused"})", 120);
  if (pause.status != 204) return "PATCH /vm Paused: " + pause.text;
  json create = {{"snapshot_path", f.snap}, {"mem_file_path", f.mem}};
  HttpAnswer made = http(sock, "PUT", "/snapshot/create", create.dump(), 600);
  if (made.status != 204) return "PUT /snapshot/create: " + made.text;
  vm.stop();
  return "";
}

struct Clone {
  std::unique_ptr<Child> vm;
  std::string api_sock, uds, timings;
  Sample s;
};

// `n` embers wait on their API sockets; all are sent PUT /snapshot/load (File backend, a vsock
// socket each) at once, then each is echoed and its memory read while all still run.
json measure_density(int n, const Options& o, const Files& f) {
  fs::path d = f.dir / ("clones-" + std::to_string(n));
  fs::create_directories(d);
  std::vector<Clone> clones(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Clone& c = clones[static_cast<size_t>(i)];
    std::string id = std::to_string(i);
    c.api_sock = (d / ("api-" + id + ".sock")).string();
    c.uds = (d / ("v-" + id + ".sock")).string();
    c.timings = (d / ("timings-" + id + ".json")).string();
    c.vm = std::make_unique<Child>(std::vector<std::string>{o.ember, "--api-sock", c.api_sock, "--boot-timings", c.timings},
                                   (d / ("clone-" + id + ".log")).string());
  }
  json result = {{"clones", n}};
  for (auto& c : clones) {
    if (!wait_for_socket(c.api_sock, *c.vm, Clock::now() + std::chrono::seconds(120))) c.s.error = "no API socket";
  }
  auto start = Clock::now(), deadline = later(start, o.timeout_s * 2);
  std::vector<int> fds;
  for (auto& c : clones) fds.push_back(http_send(c.api_sock, "PUT", "/snapshot/load", load_body(f, "File", f.mem, c.uds)));
  for (size_t i = 0; i < clones.size(); ++i) {
    HttpAnswer a = http_receive(fds[i], deadline);
    clones[i].s.load_ms = ms_between(start, Clock::now());
    if (a.status != 204 && clones[i].s.error.empty()) clones[i].s.error = "PUT /snapshot/load: " + a.text;
  }
  for (auto& c : clones) {
    if (c.s.error.empty()) c.s.ready_ms = wait_for_echo(c.uds, *c.vm, start, deadline, o.retry_ms, c.s.error);
  }
  result["all_ready_ms"] = ms_between(start, Clock::now());
  for (auto& c : clones) {
    if (c.s.error.empty()) read_memory(c.s, c.vm->pid());
  }
  for (auto& c : clones) c.vm->terminate();
  for (auto& c : clones) {
    c.vm->wait();
    c.s.phases = read_json(c.timings);
    c.s.ok = c.s.error.empty();
    result["samples"].push_back({{"ok", c.s.ok}, {"ready_ms", c.s.ready_ms}, {"load_ms", c.s.load_ms},
                                 {"rss_kib", c.s.rss_kib}, {"pss_kib", c.s.pss_kib},
                                 {"private_kib", c.s.private_kib}, {"phases", c.s.phases}, {"error", c.s.error}});
  }
  return result;
}

// ---- the report ----

// CPU (or wall) milliseconds ember spent from instance_start (the restore or boot begins)
// to the first KVM_RUN; -1 when the timeline lacks either.
double phase_delta_ms(const json& phases, const char* from, const char* to, const char* clock) {
  if (!phases.is_object() || !phases.contains(from) || !phases.contains(to)) return -1;
  return (phases[to][clock].get<double>() - phases[from][clock].get<double>()) / 1000;
}

template <typename T>
std::vector<double> field(const std::vector<Sample>& v, T Sample::* f) {
  std::vector<double> out;
  for (const Sample& s : v) {
    if (s.*f >= 0) out.push_back(static_cast<double>(s.*f));
  }
  return out;
}

std::vector<double> deltas(const std::vector<Sample>& v, const char* from, const char* clock) {
  std::vector<double> out;
  for (const Sample& s : v) {
    double d = phase_delta_ms(s.phases, from, "first_kvm_run", clock);
    if (d >= 0) out.push_back(d);
  }
  return out;
}

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), format, a, b, c);
  return buf;
}

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (flags.is("--runs")) o.runs = std::stoi(flags.value());
    else if (flags.is("--ember")) o.ember = flags.value();
    else if (flags.is("--uffd-handler")) o.uffd_handler = flags.value();
    else if (flags.is("--guest")) o.guest = flags.value();
    else if (flags.is("--out")) o.out = flags.value();
    else if (flags.is("--mem-mib")) o.mem_mib = std::stoi(flags.value());
    else if (flags.is("--vcpus")) o.vcpus = std::stoi(flags.value());
    else if (flags.is("--timeout")) o.timeout_s = std::stod(flags.value());
    else if (flags.is("--retry-ms")) o.retry_ms = std::stoi(flags.value());
    else if (flags.is("--clones")) {
      o.clones.clear();
      std::stringstream ss(flags.value());
      for (std::string n; std::getline(ss, n, ',');) {
        if (std::stoi(n) > 0) o.clones.push_back(std::stoi(n));
      }
    } else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.ember.empty() || o.guest.empty() || o.uffd_handler.empty()) {
    throw std::runtime_error("--ember, --uffd-handler and --guest are required");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "snapshot_bench: " << e.what() << "\n"
              << "usage: snapshot_bench --ember BIN --uffd-handler BIN --guest DIR [--runs N] [--out DIR]"
                 " [--clones N[,N...]|0] [--mem-mib N] [--vcpus N] [--timeout S] [--retry-ms MS]\n";
    return 2;
  }
  const char* tmp = std::getenv("TMPDIR");
  Files f;
  f.dir = fs::path(tmp ? tmp : "/tmp") / ("ember-snapshot-bench-" + std::to_string(::getpid()));
  fs::create_directories(f.dir);
  f.snap = (f.dir / "vm.snap").string();
  f.mem = (f.dir / "vm.mem").string();
  f.uds = (f.dir / "v.sock").string();

  json results = {{"runs", o.runs}, {"mem_mib", o.mem_mib}, {"vcpus", o.vcpus}, {"guest", o.guest},
                  {"guest_script", kGuestScript}, {"retry_ms", o.retry_ms}, {"samples", json::array()}};
  std::cerr << "snapshot_bench: booting the guest once to take the snapshot\n";
  if (std::string error = take_snapshot(o, f); !error.empty()) {
    std::cerr << "snapshot_bench: " << error << " (logs in " << f.dir << ")\n";
    return 1;
  }
  results["snapshot_bytes"] = fs::file_size(f.snap);
  results["mem_file_bytes"] = fs::file_size(f.mem);

  const std::vector<Variant> variants = {{"cold boot", "", false},
                                         {"restore File, launcher", "File", false},
                                         {"restore File, API", "File", true},
                                         {"restore Uffd, launcher", "Uffd", false},
                                         {"restore Uffd, API", "Uffd", true}};
  std::map<std::string, std::vector<Sample>> by_variant;
  int failures = 0;
  for (int run = 0; run < o.runs; ++run) {
    // Each run starts with the next variant, so none always follows the same one.
    for (size_t k = 0; k < variants.size(); ++k) {
      const Variant& v = variants[(k + static_cast<size_t>(run)) % variants.size()];
      Sample s = measure(v, o, f);
      std::cerr << "run " << run + 1 << "/" << o.runs << " " << v.name << ": "
                << (s.ok ? fmt("%.1f ms", s.ready_ms) : "FAILED: " + s.error) << "\n";
      results["samples"].push_back({{"run", run}, {"variant", v.name}, {"ok", s.ok}, {"ready_ms", s.ready_ms},
                                    {"load_ms", s.load_ms}, {"rss_kib", s.rss_kib}, {"pss_kib", s.pss_kib},
                                    {"private_kib", s.private_kib}, {"phases", s.phases}, {"error", s.error}});
      if (s.ok) by_variant[v.name].push_back(s);
      else ++failures;
    }
  }

  std::ostringstream md;
  json summary = json::object();
  double cold = percentile(field(by_variant["cold boot"], &Sample::ready_ms), 0.5);
  md << "| variant | runs | to first echo, median ms | p90 ms | / cold boot (medians) | PUT answered, median ms |"
        " ember CPU, instance_start -> first KVM_RUN, median (p90) ms | same, wall ms | RSS after echo, MiB |\n"
        "|---|---|---|---|---|---|---|---|---|\n";
  for (const Variant& v : variants) {
    const auto& samples = by_variant[v.name];
    auto ready = field(samples, &Sample::ready_ms), load = field(samples, &Sample::load_ms),
         rss = field(samples, &Sample::rss_kib);
    auto cpu = deltas(samples, "instance_start", "cpu_us"), wall = deltas(samples, "instance_start", "wall_us");
    double med = percentile(ready, 0.5);
    summary[v.name] = {{"runs", samples.size()}, {"median_ms", med}, {"p90_ms", percentile(ready, 0.9)},
                       {"ratio_to_cold", cold > 0 ? med / cold : 0}, {"median_load_ms", percentile(load, 0.5)},
                       {"median_cpu_to_first_kvm_run_ms", percentile(cpu, 0.5)},
                       {"p90_cpu_to_first_kvm_run_ms", percentile(cpu, 0.9)},
                       {"median_wall_to_first_kvm_run_ms", percentile(wall, 0.5)},
                       {"median_rss_kib", percentile(rss, 0.5)}, {"ready_ms", ready}};
    md << "| " << v.name << " | " << samples.size() << " | " << fmt("%.1f | %.1f | ", med, percentile(ready, 0.9))
       << (v.backend.empty() ? "1" : fmt("%.3f", cold > 0 ? med / cold : 0)) << " | "
       << (v.api ? fmt("%.1f", percentile(load, 0.5)) : "-") << " | "
       << fmt("%.2f (%.2f) | %.1f | ", percentile(cpu, 0.5), percentile(cpu, 0.9), percentile(wall, 0.5))
       << fmt("%.1f |\n", percentile(rss, 0.5) / 1024);
    // Sorted times with their cumulative fraction, for the CDF chart.
    std::sort(ready.begin(), ready.end());
    std::string name;  // "restore File, API" -> "restore_File_API"
    for (char c : v.name) {
      if (std::isalnum(static_cast<unsigned char>(c))) name += c;
      else if (!name.empty() && name.back() != '_') name += '_';
    }
    std::ofstream cdf(o.out + "/cdf-" + name + ".dat");
    if (!ready.empty()) cdf << ready.front() << " 0\n";
    for (size_t i = 0; i < ready.size(); ++i) cdf << ready[i] << " " << double(i + 1) / ready.size() << "\n";
  }
  // The launcher's whole process up to the first KVM_RUN: exec, reading the snapshot file, restore.
  md << "\nember CPU from process start to first KVM_RUN (launcher, median ms): ";
  for (const char* name : {"restore File, launcher", "restore Uffd, launcher", "cold boot"}) {
    std::vector<double> total;
    for (const Sample& s : by_variant[name]) {
      if (s.phases.contains("first_kvm_run")) total.push_back(s.phases["first_kvm_run"]["cpu_us"].get<double>() / 1000);
    }
    summary[name]["median_cpu_process_to_first_kvm_run_ms"] = percentile(total, 0.5);
    md << name << " " << fmt("%.2f", percentile(total, 0.5)) << "; ";
  }
  double cold_rss = summary["cold boot"]["median_rss_kib"].get<double>();
  md << "\n";

  for (int n : o.clones) {
    std::cerr << "snapshot_bench: " << n << " clones at once\n";
    json d = measure_density(n, o, f);
    std::vector<double> rss, pss, priv, ready, cpu;
    int ok = 0;
    for (const json& s : d["samples"]) {
      if (!s["ok"].get<bool>()) {
        std::cerr << "clone FAILED: " << s["error"].get<std::string>() << "\n";
        ++failures;
        continue;
      }
      ++ok;
      rss.push_back(s["rss_kib"].get<double>());
      pss.push_back(s["pss_kib"].get<double>());
      priv.push_back(s["private_kib"].get<double>());
      ready.push_back(s["ready_ms"].get<double>());
      double c = phase_delta_ms(s["phases"], "instance_start", "first_kvm_run", "cpu_us");
      if (c >= 0) cpu.push_back(c);
    }
    double total_priv = 0, total_pss = 0;
    for (double p : priv) total_priv += p;
    for (double p : pss) total_pss += p;
    d["summary"] = {{"ok", ok}, {"median_rss_kib", percentile(rss, 0.5)}, {"median_pss_kib", percentile(pss, 0.5)},
                    {"median_private_kib", percentile(priv, 0.5)}, {"max_private_kib", percentile(priv, 1)},
                    {"total_private_kib", total_priv}, {"total_pss_kib", total_pss},
                    {"median_ready_ms", percentile(ready, 0.5)}, {"max_ready_ms", percentile(ready, 1)},
                    {"median_cpu_to_first_kvm_run_ms", percentile(cpu, 0.5)}};
    results["density"].push_back(d);
    md << "\n" << n << " clones restored at once (File backend, PUT /snapshot/load to " << n
       << " waiting embers), " << ok << " answered: all echoed after " << fmt("%.0f ms", d["all_ready_ms"].get<double>())
       << " (median clone " << fmt("%.0f ms", percentile(ready, 0.5)) << ")\n\n"
       << "| per clone, after its echo (KiB) | median | max |\n|---|---|---|\n"
       << fmt("| RSS | %.0f | %.0f |\n", percentile(rss, 0.5), percentile(rss, 1))
       << fmt("| PSS | %.0f | %.0f |\n", percentile(pss, 0.5), percentile(pss, 1))
       << fmt("| private (Private_Clean + Private_Dirty) | %.0f | %.0f |\n", percentile(priv, 0.5), percentile(priv, 1))
       << "\nall " << ok << " clones: private " << fmt("%.1f MiB", total_priv / 1024) << ", PSS "
       << fmt("%.1f MiB", total_pss / 1024) << "; one cold-booted VM's RSS after its echo: "
       << fmt("%.1f MiB", cold_rss / 1024) << " (" << ok << " of them: " << fmt("%.1f MiB", ok * cold_rss / 1024)
       << ")\n";
  }

  results["summary"] = summary;
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  if (failures > 0) {
    // The scratch folder may be inside the emulated host: its logs go to --out.
    fs::create_directories(o.out + "/logs");
    for (const auto& e : fs::recursive_directory_iterator(f.dir)) {
      if (e.path().extension() == ".log") fs::copy_file(e.path(), o.out + "/logs/" + e.path().filename().string(),
                                                       fs::copy_options::overwrite_existing);
    }
    std::cerr << "snapshot_bench: " << failures << " failed; ember's logs are in " << o.out << "/logs\n";
  }
  fs::remove_all(f.dir);
  return failures == 0 ? 0 : 1;
}
