// FaaS suite driver: invocation latency through the example runtime (examples/faas), as its
// clients see it. Starts `ember-faas` (jailed with --jailer), registers functions whose handler
// is `cat` on the runtime's function image, and measures end to end (request sent -> whole
// answer read) with the daemon's own `timings.total_ms` beside it:
//  - cold: a new registration's first invocation (cold boot, agent, snapshot) -- --cold times;
//  - restored, at each concurrency C: C invocations at once when the function has no VM left
//    (keep-alive 0), so each restores the snapshot -- until --samples were measured;
//  - warm, at each concurrency C: C clients invoking one after another on C warm VMs.
// Writes results.json, results.md and latency.dat (for run.sh's chart) into --out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_util.h"
#include "perf/echo_vm/ember.h"
#include "perf/echo_vm/process.h"

using json = nlohmann::json;
using ember::perf::percentile;
using ember::perf::strprintf;
using namespace ember::perf::echo_vm;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string faas, ember, image, jailer, out = ".";
  std::vector<int> concurrency = {1, 2, 5, 10};
  int samples = 40;  // invocations measured per (kind, concurrency)
  int cold = 5;      // cold invocations (a registration each)
  int port = 18080;
  double timeout_s = 600;  // one invocation
};

struct Answer {
  int status = 0;
  double client_ms = -1;  // request sent -> whole answer read
  json body;
  std::string error;
};

class Faas {
 public:
  Faas(const Options& o, const fs::path& dir) : o_(o) {
    std::vector<std::string> argv = {o.faas, "--listen", "127.0.0.1:" + std::to_string(o.port), "--state-dir",
                                     (dir / "state").string(), "--ember", o.ember, "--max-vms", "64",
                                     "--boot-timeout-ms", "600000", "--agent-grace-ms", "60000",
                                     "--queue-timeout-ms", "600000"};
    if (!o.jailer.empty()) argv.insert(argv.end(), {"--jailer", o.jailer});
    daemon_ = std::make_unique<Child>(argv, (dir / "ember-faas.log").string());
  }
  bool wait_up(double timeout_s) {
    auto deadline = later(Clock::now(), timeout_s);
    while (Clock::now() < deadline && !daemon_->exited()) {
      if (call("GET", "/metrics", "", 5).status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  Answer call(const std::string& method, const std::string& path, const std::string& body, double timeout_s) const {
    Answer a;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(o_.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto start = Clock::now();
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        !http_write(fd, method, path, body)) {
      if (fd >= 0) ::close(fd);
      a.error = "cannot reach ember-faas";
      return a;
    }
    HttpAnswer h = http_receive(fd, later(start, timeout_s));
    a.client_ms = ms_between(start, Clock::now());
    a.status = h.status;
    size_t at = h.text.find("\r\n\r\n");
    std::string text = at == std::string::npos ? "" : h.text.substr(at + 4);
    a.body = text.empty() ? json::object() : json::parse(text, nullptr, false);
    if (a.body.is_discarded()) a.body = json{{"text", text}};
    if (a.status != 200 && a.status != 204) a.error = std::to_string(a.status) + " " + text.substr(0, 300);
    return a;
  }
  // GET /metrics as Prometheus text ("" if it did not answer).
  std::string metrics() const { return call("GET", "/metrics", "", 30).body.value("text", ""); }
  // One gauge of a /metrics text, e.g. faas_vms{state="idle"}; -1 if absent.
  static long gauge(const std::string& metrics, const std::string& series) {
    size_t at = metrics.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stol(metrics.substr(at + series.size() + 2));
  }
  // Waits until no VM of any function is alive (starting, busy or idle), in one /metrics
  // answer.
  bool wait_no_vms(double timeout_s) const {
    auto deadline = later(Clock::now(), timeout_s);
    while (Clock::now() < deadline) {
      std::string m = metrics();
      if (gauge(m, "faas_vms{state=\"idle\"}") == 0 && gauge(m, "faas_vms{state=\"busy\"}") == 0 &&
          gauge(m, "faas_vms{state=\"starting\"}") == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  Child& process() { return *daemon_; }

 private:
  const Options& o_;
  std::unique_ptr<Child> daemon_;
};

std::string registration(const Options& o, int keep_alive_ms, int max_vms) {
  return json{{"kernel", o.image + "/vmlinux"}, {"initramfs", o.image + "/initramfs.cpio.gz"}, {"handler", "cat"},
              {"mem_mib", 128}, {"timeout_ms", 600000}, {"keep_alive_ms", keep_alive_ms}, {"max_vms", max_vms},
              {"max_queue", 64}}
      .dump();
}

struct Samples {
  std::vector<double> client, daemon;
  std::map<std::string, int> vms;  // "cold", "restored", "warm": how many answers said so
  int failures = 0;
  void add(const Answer& a, const std::string& label) {
    if (!a.error.empty()) {
      ++failures;
      std::cerr << "  " << label << ": FAILED: " << a.error << "\n";
      return;
    }
    client.push_back(a.client_ms);
    daemon.push_back(a.body["timings"].value("total_ms", -1.0));
    vms[a.body.value("vm", "?")]++;
  }
};

// `c` invocations of `name` at once; each thread's answer in order.
std::vector<Answer> invoke_at_once(const Faas& f, const std::string& name, int c, double timeout_s) {
  std::vector<Answer> answers(static_cast<size_t>(c));
  std::vector<std::thread> threads;
  for (int i = 0; i < c; ++i) {
    threads.emplace_back([&, i] {
      answers[static_cast<size_t>(i)] = f.call("POST", "/functions/" + name + "/invoke", "ping " + std::to_string(i), timeout_s);
    });
  }
  for (auto& t : threads) t.join();
  return answers;
}

Options parse(int argc, char** argv) {
  Options o;
  for (ember::perf::FlagReader flags(argc, argv); flags.next();) {
    if (flags.is("--faas")) o.faas = flags.value();
    else if (flags.is("--ember")) o.ember = flags.value();
    else if (flags.is("--image")) o.image = flags.value();
    else if (flags.is("--jailer")) o.jailer = flags.value();
    else if (flags.is("--out")) o.out = flags.value();
    else if (flags.is("--concurrency")) o.concurrency = ember::perf::int_list(flags.value(), "--concurrency", 1, 64);
    else if (flags.is("--samples")) o.samples = std::stoi(flags.value());
    else if (flags.is("--cold")) o.cold = std::stoi(flags.value());
    else if (flags.is("--port")) o.port = std::stoi(flags.value());
    else if (flags.is("--timeout")) o.timeout_s = std::stod(flags.value());
    else throw std::runtime_error(std::string("unknown option ") + flags.flag());
  }
  if (o.faas.empty() || o.ember.empty() || o.image.empty()) throw std::runtime_error("--faas, --ember and --image are required");
  if (o.samples < 1 || o.cold < 0) throw std::runtime_error("--samples must be at least 1, --cold at least 0");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ember::perf::parse_command_line(
      argc, argv, "faas_bench",
      "faas_bench --faas BIN --ember BIN --image DIR [--jailer BIN] [--concurrency 1,2,5,10] [--samples N] [--cold N]"
      " [--port N] [--timeout S] [--out DIR]",
      parse);
  if (!parsed) return 2;
  const Options o = *parsed;
  const fs::path dir = ember::perf::scratch_dir("ember-faas-bench");
  if (!o.jailer.empty() &&
      std::system("grep -q ' - cgroup2 ' /proc/self/mountinfo || mount -t cgroup2 cgroup2 /sys/fs/cgroup") != 0) {
    std::cerr << "faas_bench: --jailer needs cgroup v2, and it could not be mounted at /sys/fs/cgroup\n";
    return 1;
  }
  Faas f(o, dir);
  if (!f.wait_up(60)) {
    std::cerr << "faas_bench: ember-faas did not answer on port " << o.port << " (log: " << dir / "ember-faas.log" << ")\n";
    return 1;
  }
  std::map<std::string, Samples> by;  // "cold", "restored C=2", "warm C=10"
  auto note = [](const std::string& what, const Samples& s) {
    std::cerr << what << ": " << s.client.size() << " measured, p50 " << strprintf("%.0f", percentile(s.client, 0.5))
              << " ms\n";
  };

  // Cold: each a new registration's first invocation.
  for (int i = 0; i < o.cold; ++i) {
    std::string name = "cold" + std::to_string(i);
    Answer put = f.call("PUT", "/functions/" + name, registration(o, 0, 1), 30);
    if (!put.error.empty()) {
      std::cerr << "faas_bench: PUT /functions/" << name << ": " << put.error << "\n";
      return 1;
    }
    by["cold"].add(f.call("POST", "/functions/" + name + "/invoke", "cold", o.timeout_s), name);
    f.call("DELETE", "/functions/" + name, "", 60);
  }
  note("cold", by["cold"]);

  const int most = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  // Restored: keep-alive 0, so that a function with no VM left restores for each invocation.
  f.call("PUT", "/functions/restored", registration(o, 0, most), 30);
  by["first"].add(f.call("POST", "/functions/restored/invoke", "snapshot", o.timeout_s), "restored's snapshot");
  for (int c : o.concurrency) {
    Samples& s = by["restored C=" + std::to_string(c)];
    for (int round = 0; static_cast<int>(s.client.size()) < o.samples && round < 4 * o.samples; ++round) {
      if (!f.wait_no_vms(120)) std::cerr << "  restored: VMs still alive after 120 s\n";
      for (const Answer& a : invoke_at_once(f, "restored", c, o.timeout_s)) s.add(a, "restored");
    }
    note("restored C=" + std::to_string(c), s);
  }
  f.call("DELETE", "/functions/restored", "", 60);

  // Warm: C VMs kept, then C clients one invocation after another.
  f.call("PUT", "/functions/warm", registration(o, 3600000, most), 30);
  for (int c : o.concurrency) {
    invoke_at_once(f, "warm", c, o.timeout_s);  // makes sure C VMs exist (restores the missing)
    Samples& s = by["warm C=" + std::to_string(c)];
    const int each = std::max(1, (o.samples + c - 1) / c);
    std::vector<std::thread> clients;
    std::vector<std::vector<Answer>> answers(static_cast<size_t>(c));
    for (int i = 0; i < c; ++i) {
      clients.emplace_back([&, i] {
        for (int k = 0; k < each; ++k) {
          answers[static_cast<size_t>(i)].push_back(f.call("POST", "/functions/warm/invoke", "warm", o.timeout_s));
        }
      });
    }
    for (auto& t : clients) t.join();
    for (const auto& list : answers) {
      for (const Answer& a : list) s.add(a, "warm");
    }
    note("warm C=" + std::to_string(c), s);
  }
  f.call("DELETE", "/functions/warm", "", 60);
  f.process().stop();

  std::ostringstream md;
  json results = {{"concurrency", o.concurrency}, {"samples", o.samples}, {"jailed", !o.jailer.empty()},
                  {"image", o.image}, {"handler", "cat"}, {"summary", json::object()}};
  md << "| invocation | concurrency | measured | end to end, p50 ms | p99 ms | max ms | daemon's total_ms, p50 |"
        " VMs the answers name |\n|---|---|---|---|---|---|---|---|\n";
  std::ofstream dat(o.out + "/latency.dat");
  dat << "C \"warm p50\" \"warm p99\" \"restored p50\" \"restored p99\"\n";
  int failures = by["first"].failures;
  auto row = [&](const std::string& key, const std::string& kind, const std::string& c) {
    const Samples& s = by[key];
    failures += s.failures;
    std::string vms;
    for (const auto& [vm, n] : s.vms) vms += (vms.empty() ? "" : ", ") + vm + " " + std::to_string(n);
    md << "| " << kind << " | " << c << " | " << s.client.size() << " | "
       << strprintf("%.0f | %.0f | %.0f | %.0f | ", percentile(s.client, 0.5), percentile(s.client, 0.99),
                    percentile(s.client, 1), percentile(s.daemon, 0.5))
       << vms << " |\n";
    results["summary"][key] = {{"measured", s.client.size()}, {"failures", s.failures},
                               {"p50_ms", percentile(s.client, 0.5)}, {"p99_ms", percentile(s.client, 0.99)},
                               {"max_ms", percentile(s.client, 1)}, {"daemon_p50_ms", percentile(s.daemon, 0.5)},
                               {"client_ms", s.client}, {"vms", s.vms}};
  };
  row("cold", "cold (new registration)", "1");
  for (int c : o.concurrency) row("restored C=" + std::to_string(c), "restored", std::to_string(c));
  for (int c : o.concurrency) row("warm C=" + std::to_string(c), "warm", std::to_string(c));
  for (int c : o.concurrency) {
    const Samples& w = by["warm C=" + std::to_string(c)];
    const Samples& r = by["restored C=" + std::to_string(c)];
    dat << c << strprintf(" %.1f %.1f %.1f %.1f\n", percentile(w.client, 0.5), percentile(w.client, 0.99),
                          percentile(r.client, 0.5), percentile(r.client, 0.99));
  }
  md << "\nEnd to end: the client's request sent to its whole answer read, over TCP on the same host; the"
        " handler is `cat` on the runtime's function image (128 MiB, 1 vCPU)"
     << (o.jailer.empty() ? "" : ", every VM jailed") << ".\n";
  std::ofstream(o.out + "/results.json") << results.dump(2) << "\n";
  std::ofstream(o.out + "/results.md") << md.str();
  std::cout << md.str();
  if (failures > 0) {
    fs::copy_file(dir / "ember-faas.log", o.out + "/ember-faas.log", fs::copy_options::overwrite_existing);
    std::cerr << "faas_bench: " << failures << " invocations failed (daemon log: " << o.out << "/ember-faas.log)\n";
  }
  fs::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
