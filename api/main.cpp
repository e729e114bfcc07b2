// ember's entry point: parse options, serve the API if asked, build the VM, run it,
// report how it ended. This is the one place errors are reported and the exit status chosen.
#include <pthread.h>
#include <signal.h>

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/api_server.h"
#include "api/cli.h"
#include "api/json_config.h"
#include "api/request_router.h"
#include "api/toml_config.h"
#include "api/vmm_runner.h"
#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/log.h"
#include "base/util/thread.h"
#include "vmm/boot_timeline.h"
#include "vmm/metrics_writer.h"
#include "vmm/seccomp/seccomp.h"

namespace {
constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;
constexpr int kExitSignal = 130;

// Threads ember starts (vCPUs, devices, API, prefault) get 1 MiB stacks instead of 8 MiB.
// With transparent huge pages, an 8 MiB stack that happens to be 2 MiB-aligned (the one
// mapped right below guest RAM always is) takes a 2 MiB huge page on its first touch: that
// alone doubled ember's memory overhead. A 1 MiB stack cannot hold one. None of the threads
// recurses; their largest frames are I/O buffers of tens of KiB.
void use_small_thread_stacks() {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return;
  if (pthread_attr_setstacksize(&attr, 1 << 20) == 0) pthread_setattr_default_np(&attr);
  pthread_attr_destroy(&attr);
}

void to_stderr(const std::string& text) { ember::write_all(STDERR_FILENO, text); }

// For the boot-latency suite: opened at start (the running main thread may open
// nothing), written at exit.
ember::UniqueFd open_boot_timings(const std::string& path) {
  ember::UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) ember::fail("cannot open --boot-timings file '", path, "': ", ember::errno_text());
  return out;
}

// A failure to write is reported, not fatal.
void write_boot_timings(int fd, const std::string& path, const ember::BootTimeline& timeline) {
  if (!ember::write_all(fd, timeline.to_json() + "\n")) {
    to_stderr(ember::cat("ember: cannot write boot timings to '", path, "': ", ember::errno_text(), "\n"));
  }
}

// Each thread's seccomp filter, installed by the thread itself (base/util/thread.h). A
// thread that cannot be restricted must not run on: ember ends here, saying why.
void restrict_to_role(ember::ThreadRole role) {
  try {
    ember::seccomp::install_filter(role);
  } catch (const ember::Error& e) {
    to_stderr(ember::cat("ember: error: ", e.what(), "\n"));
    _exit(kExitFailure);
  }
}

// Failures go to stderr always, and to the log too when it is a file.
void log_to_file_too(const std::string& message) {
  if (!ember::log::current_config().log_path.empty()) ember::log::error(message);
}

// What the options ask for, read before anything starts.
struct Plan {
  ember::FullVmConfig config;
  bool start_now = true;  // false: wait for InstanceStart on the API
  std::optional<ember::SnapshotLoadParams> restore;  // --restore: start from a snapshot
  std::optional<std::string> api_sock;  // where the API is served, if anywhere
};

Plan plan_from(const ember::CliOptions& options) {
  using namespace ember;
  Plan plan;
  std::optional<SnapshotLoadParams> toml_restore;
  if (options.config_path) {
    TomlLaunch launch = load_toml_launch(*options.config_path);
    plan.config.vm = launch.vm;
    toml_restore = launch.restore;
  }
  if (options.config_file) plan.config = load_json_config(*options.config_file);
  apply_overrides(options, plan.config.vm);
  if (options.log_level) {
    log::Level level;
    if (!log::parse_level(*options.log_level, level)) fail("--level must be error, warn, info, debug or off");
    if (!plan.config.logger) plan.config.logger = log::LoggerConfig{"", std::nullopt, true, false};
    plan.config.logger->level = level;
  }
  if (options.log_path) {
    if (!plan.config.logger) plan.config.logger = log::LoggerConfig{"", std::nullopt, true, false};
    plan.config.logger->log_path = *options.log_path;
  }
  if (options.show_level || options.show_log_origin) {
    if (!plan.config.logger) plan.config.logger = log::LoggerConfig{"", std::nullopt, true, false};
    plan.config.logger->show_level |= options.show_level;
    plan.config.logger->show_log_origin |= options.show_log_origin;
  }
  if (options.metrics_path) plan.config.metrics = MetricsConfig{*options.metrics_path};
  plan.restore = restore_request(options);
  if (toml_restore) {
    if (describes_vm(options)) {
      fail("[restore] in ", *options.config_path, " takes the VM from the snapshot: it cannot be combined with flags "
           "that describe a VM (--kernel, --drive, --mem-mib, ...)");
    }
    plan.restore = toml_restore;
  }
  plan.api_sock = api_socket_path(options);
  bool described = options.config_path || options.config_file || options.kernel || plan.restore;
  plan.start_now = !plan.api_sock || described;
  if (plan.start_now && !plan.restore) {
    if (plan.config.vm.boot.kernel_image_path.empty()) {
      fail("no kernel: give --config FILE, --config-file FILE, --kernel PATH, or --api-sock PATH to configure over HTTP");
    }
  }
  return plan;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace ember;
  BootTimeline timeline;
  use_small_thread_stacks();
  // Every thread inherits this: SIGINT/SIGTERM are taken through signalfds (while waiting
  // for InstanceStart, and by Vm::run()), so ember always unwinds and removes its socket.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  CliOptions options;
  Plan plan;
  UniqueFd boot_timings;
  try {
    options = parse_cli(std::vector<std::string>(argv + 1, argv + argc));
    if (options.help) {
      write_all(STDOUT_FILENO, usage_text());
      return 0;
    }
    if (options.version) {
      write_all(STDOUT_FILENO, version_text(EMBER_VERSION));
      return 0;
    }
    plan = plan_from(options);
    if (plan.config.logger) log::configure(*plan.config.logger);
    if (options.boot_timings) boot_timings = open_boot_timings(*options.boot_timings);
    if (options.no_seccomp) {
      log::warn("--no-seccomp: ember's threads run without seccomp filters");
    } else {
      seccomp::install_violation_reporter();
      seccomp::keep_allocator_within_filters();
      set_role_restrictor(restrict_to_role);
    }
  } catch (const Error& e) {
    to_stderr(cat("ember: error: ", e.what(), "\n(ember --help lists the options)\n"));
    return kExitUsage;
  }
  timeline.mark(BootPhase::ArgsParsed);

  std::unique_ptr<RequestRouter> router;
  std::unique_ptr<VmmRunner> runner;
  MetricsWriter metrics(
      [&](MetricGroups& groups) {
        runner->collect_metrics(groups);
        if (router) router->collect_metrics(groups);
      },
      std::chrono::seconds(60), options.instance_id);
  try {
    runner = std::make_unique<VmmRunner>(timeline, metrics);
    if (plan.config.metrics) metrics.open(*plan.config.metrics);
    // The KVM VM is made meanwhile. An --api-sock ember that waits for its first request
    // makes it once its socket listens (wait_for_start), so that start-up stays short.
    if (plan.restore || plan.start_now) runner->prepare_machine();
    // A restored VM first, so that the API (--api-sock) starts with its configuration.
    if (plan.restore) plan.config.vm = runner->restore_now(*plan.restore, plan.config.vm.serial);
    std::unique_ptr<ApiServer> api;
    if (plan.api_sock) {
      router = std::make_unique<RequestRouter>(*runner, plan.config, options.instance_id, EMBER_VERSION);
      HttpLimits limits;
      limits.max_payload_bytes = options.http_api_max_payload_size;
      try {
        api = std::make_unique<ApiServer>(*plan.api_sock, *router, limits);
      } catch (const Error& e) {
        if (options.api_sock) throw;
        fail(e.what(), " (Firecracker's default API socket; --api-sock PATH names another, --no-api serves none)");
      }
      log::info(cat("API listening on ", *plan.api_sock));
    }
    if (plan.restore) {
      // restored above: runs now
    } else if (plan.start_now) {
      runner->start_now(plan.config.vm);  // no API call to wait for
    } else if (!runner->wait_for_start()) {
      log::info("stopped by a signal before InstanceStart");
      return kExitSignal;
    }
    VmExit exit = runner->run();
    if (boot_timings.valid()) write_boot_timings(boot_timings.get(), *options.boot_timings, timeline);
    if (metrics.is_open()) {
      try {
        metrics.flush();
      } catch (const Error& e) {
        log::warn(e.what());  // the guest's outcome decides the exit status, not the last flush
      }
    }
    if (exit.kind == ExitKind::GuestShutdown) {
      log::info(exit.detail);
    } else {
      log_to_file_too(exit.detail);
      to_stderr(cat("ember: ", exit.detail, "\n"));
    }
    return exit.exit_code();
  } catch (const ConfigError& e) {
    log_to_file_too(e.what());
    to_stderr(cat("ember: error: ", e.what(), "\n"));
    return kExitUsage;
  } catch (const Error& e) {
    log_to_file_too(e.what());
    to_stderr(cat("ember: error: ", e.what(), "\n"));
    return kExitFailure;
  }
}
