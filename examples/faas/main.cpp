// ember-faas: a function-as-a-service daemon on ember (README "FaaS runtime"). Parses the
// options, starts the front end and the keep-alive reaper, and stops everything on SIGINT or
// SIGTERM. The one place errors end the program.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <thread>

#include "base/util/error.h"
#include "examples/faas/agent/protocol.h"
#include "examples/faas/http_front.h"
#include "examples/faas/routes.h"
#include "examples/faas/runtime.h"

namespace {

using namespace ember;
using namespace ember::faas;

struct Options {
  std::string listen = "127.0.0.1:8080";
  RuntimeOptions runtime;
  FrontLimits front;
};

const char* kUsage =
    "usage: ember-faas [options]\n"
    "  --listen HOST:PORT       HTTP front end (default 127.0.0.1:8080)\n"
    "  --state-dir DIR          VM sockets, logs and snapshots (default /tmp/ember-faas); leftovers removed at start\n"
    "  --ember PATH             the ember binary (default: build/ember beside this build)\n"
    "  --max-vms N              VMs on this host, all functions (default 64)\n"
    "  --max-body-bytes N       invocation body limit, 413 beyond (default 1048576)\n"
    "  --boot-timeout-ms N      a cold boot or restore to the agent answering (default 30000)\n"
    "  --agent-grace-ms N       wait for the agent beyond the handler timeout (default 5000)\n"
    "  --queue-timeout-ms N     wait for a free VM, then 503 (default 60000)\n"
    "  --jailer PATH            run every VM under this ember-jailer (own uid, chroot, cgroup)\n"
    "  --jail-uid-base N        VM n runs as uid N+n (default 100000)\n"
    "  --jail-gid-base N        a function's VMs share gid N+<registration number> (default 100000)\n";

uint64_t number(const char* flag, const char* v, uint64_t max) {
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (!*v || *end || n > max) fail(flag, " wants a whole number up to ", max, " (got '", v, "')");
  return n;
}

std::string default_ember() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "ember";
  std::string dir(self, size_t(n));
  dir.resize(dir.rfind('/'));
  return dir + "/../../ember";  // build/examples/faas/ember-faas -> build/ember
}

Options parse(int argc, char** argv) {
  Options o;
  o.runtime.ember_bin = default_ember();
  o.runtime.state_dir = "/tmp/ember-faas";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) fail(a, ": unknown option or missing value\n", kUsage);
    const char* v = argv[++i];
    if (a == "--listen") o.listen = v;
    else if (a == "--state-dir") o.runtime.state_dir = v;
    else if (a == "--ember") o.runtime.ember_bin = v;
    else if (a == "--max-vms") o.runtime.host_max_vms = number(a.c_str(), v, 100000);
    else if (a == "--max-body-bytes") o.front.max_body_bytes = number(a.c_str(), v, FAAS_MAX_BODY_BYTES);
    else if (a == "--boot-timeout-ms") o.runtime.boot_timeout = std::chrono::milliseconds(number(a.c_str(), v, 3600000));
    else if (a == "--agent-grace-ms") o.runtime.agent_grace = std::chrono::milliseconds(number(a.c_str(), v, 3600000));
    else if (a == "--queue-timeout-ms") o.runtime.queue_timeout = std::chrono::milliseconds(number(a.c_str(), v, 3600000));
    else if (a == "--jailer") o.runtime.jailer = v;
    else if (a == "--jail-uid-base") o.runtime.jail_uid_base = number(a.c_str(), v, 4000000000u);
    else if (a == "--jail-gid-base") o.runtime.jail_gid_base = number(a.c_str(), v, 4000000000u);
    else fail(a, ": unknown option\n", kUsage);
  }
  if (access(o.runtime.ember_bin.c_str(), X_OK) != 0) fail("--ember ", o.runtime.ember_bin, ": not an executable");
  if (!o.runtime.jailer.empty() && access(o.runtime.jailer.c_str(), X_OK) != 0) fail("--jailer ", o.runtime.jailer, ": not an executable");
  return o;
}

int run(int argc, char** argv) {
  Options o = parse(argc, argv);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // every thread started below inherits it
  signal(SIGPIPE, SIG_IGN);

  Runtime runtime(o.runtime);
  HttpFront front(listen_tcp(o.listen), [&runtime](const HttpRequest& r) { return route(runtime, r); }, o.front);
  std::printf("ember-faas: listening on %s, state in %s\n", o.listen.c_str(), o.runtime.state_dir.c_str());
  std::fflush(stdout);
  std::thread front_thread([&front] { front.run(); });
  std::atomic<bool> stopping{false};
  std::thread reaper([&] {
    pthread_setname_np(pthread_self(), "faas-reaper");
    while (!stopping) {
      runtime.expire_idle();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf("ember-faas: signal %d, stopping every VM\n", sig);
  std::fflush(stdout);
  front.stop();
  front_thread.join();
  stopping = true;
  reaper.join();
  runtime.shutdown();  // before the connection threads are joined: it wakes and fails their invocations
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember-faas: %s\n", e.what());
    return 1;
  }
}
