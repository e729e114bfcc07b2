// End-to-end snapshots: a guest with a running shell loop, a virtio-blk drive and a vsock
// listener is paused and saved over the API; new embers restore it (the launcher's
// --restore, PUT /snapshot/load, the File and the Uffd memory backends) and the same loop
// goes on counting where it stopped, reading the drive and answering on vsock; broken
// snapshot files are refused before any guest runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <functional>
#include <iostream>
#include <regex>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/net_util.h"

namespace ember::e2e {
namespace {

using namespace util;

// Counts once a second in a shell variable, each time reading the drive's first MiB from
// the device (caches dropped), printing its checksum and the guest's uptime, and writing
// the count to the drive's second MiB (synchronously); a vsock echo listener runs beside.
constexpr const char* kGuestLoop =
    "vsock-io listen 5000 echo &\n"
    "n=0\n"
    "while :; do n=$((n+1)); echo 3 > /proc/sys/vm/drop_caches; "
    "echo \"TICK $n $(head -c 1048576 /dev/vda | md5sum | cut -c1-8) up $(cut -d' ' -f1 /proc/uptime)\"; "
    "echo \"WROTE $n\" | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null; sleep 1; done\n";

std::string guest(const char* file) { return env("EMBER_GUEST_DIR") + "/" + file; }

// The highest number that `pattern`'s first group matches in `text`, or 0.
int last_number(const std::string& text, const std::regex& pattern) {
  int last = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern); it != std::sregex_iterator(); ++it) {
    last = std::max(last, std::stoi((*it)[1]));
  }
  return last;
}

// The highest TICK number in `console`, or 0.
int last_tick(const std::string& console) { return last_number(console, std::regex("TICK ([0-9]+) ")); }

// A phase's wall microseconds in a --boot-timings file, -1 if it is not there.
int64_t phase_wall_us(const std::string& timings, const std::string& phase) {
  std::smatch m;
  if (!std::regex_search(timings, m, std::regex("\"" + phase + "\": \\{\"wall_us\": (\\d+)"))) return -1;
  return std::stoll(m[1]);
}

// The highest N of "PREFIX N ok" lines in `text` (0 if none).
int last_ok(const std::string& text, const std::string& prefix) {
  return last_number(text, std::regex(prefix + " ([0-9]+) ok"));
}

// Polls `done` until it holds; false on timeout or once `ended` (the ember being watched has
// exited) with `done` still false.
bool wait_until(const std::function<bool()>& done, double timeout, const std::atomic<bool>& ended) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    if (ended) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

// Waits until `file` shows a TICK of at least `n`.
bool wait_for_tick(const fs::path& file, int n, double timeout, const std::atomic<bool>& ended) {
  return wait_until([&] { return last_tick(read_text(file)) >= n; }, timeout, ended);
}

// A host process connects to the guest's vsock port 5000 through ember's Unix socket and
// gets `message` echoed back; "" on success, else what went wrong.
// A stream connected to the Unix socket at `path` whose reads give up after `seconds`; -1
// if it cannot connect.
int connect_with_timeout(const std::string& path, double seconds) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  timeval tv{static_cast<time_t>(seconds), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
  ::close(fd);
  return -1;
}

std::string vsock_echo(const std::string& uds, const std::string& message) {
  int fd = connect_with_timeout(uds, 60 * time_scale());
  std::string out;
  if (fd < 0) {
    out = "cannot connect to " + uds;
  } else {
    std::string req = "CONNECT 5000\n" + message, line;
    if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) out = "short write";
    char c;
    while (out.empty() && ::read(fd, &c, 1) == 1 && c != '\n') line += c;
    if (out.empty() && line.rfind("OK ", 0) != 0) out = "no OK from the guest: '" + line + "'";
    std::string echo;
    while (out.empty() && echo.size() < message.size() && ::read(fd, &c, 1) == 1) echo += c;
    if (out.empty() && echo != message) out = "echo was '" + echo + "'";
  }
  ::close(fd);
  return out;
}

// Sends one HTTP request to the API socket at `sock` (waiting up to a minute for it to
// exist) and returns the answer's status line, or why there is none. In-process, so that
// whatever the test does next follows the answer within microseconds.
std::string http_request(const std::string& sock, const std::string& method, const std::string& path,
                         const std::string& body) {
  for (int i = 0; i < 600 && !fs::exists(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  int fd = connect_with_timeout(sock, 120 * time_scale());
  std::string answer;
  if (fd < 0) {
    answer = "cannot connect to " + sock;
  } else {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    char c;
    if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) answer = "short write";
    else while (::read(fd, &c, 1) == 1 && c != '\r') answer += c;
  }
  ::close(fd);
  return answer;
}

// A process (ember, the page-fault handler) running on a thread of its own while the test
// drives it; `ended` tells waits to stop early when it exits.
class Background {
 public:
  Background(std::vector<std::string> argv, double timeout)
      : thread_([this, argv = std::move(argv), timeout] {
          result_ = run_process(argv, timeout);
          ended = true;
        }) {}
  ~Background() {
    if (thread_.joinable()) thread_.join();
  }
  const ProcessResult& wait() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }
  std::atomic<bool> ended{false};

 private:
  ProcessResult result_;
  std::thread thread_;
};

std::string api_script(const std::string& body) { return "set -u\n" + api_shell_functions() + body; }

// Pauses the VM behind `sock` and saves a Full snapshot as vm.snap and vm.mem in `dir`; the
// two answers' status lines (" HTTP204\n HTTP204\n" when both worked).
std::string pause_and_save(const std::string& sock, const fs::path& dir) {
  return sh(api_script("api " + sock + " PATCH /vm -d '{\"state\": \"Paused\"}'\n"
                       "api " + sock + " PUT /snapshot/create -d '{\"snapshot_path\": \"" + (dir / "vm.snap").string() +
                       "\", \"mem_file_path\": \"" + (dir / "vm.mem").string() + "\"}'\n"),
            120 * time_scale());
}

// One snapshot for the whole suite (each boot costs tens of seconds in the emulated host):
// taken from a VM started with the API socket, the drive and vsock, after its third TICK.
class Snapshot : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(host_tools({{"curl", "curl"}, {"md5sum", "coreutils"}}));
    dir_ = new fs::path(scratch_dir("snapshot"));
    fs::path d = *dir_;
    sh("head -c 1048576 /dev/urandom > '" + (d / "data.img").string() + "' && truncate -s 2M '" +
       (d / "data.img").string() + "'");
    data_md5_ = new std::string(sh("head -c 1048576 '" + (d / "data.img").string() + "' | md5sum | cut -c1-8"));
    data_md5_->erase(data_md5_->find_last_not_of("\n") + 1);
    std::string sock = (d / "a.sock").string(), uds = (d / "v.sock").string();
    // Booted from copies of the kernel and initrd, deleted once the snapshot is taken: every
    // restore below shows that a snapshot needs neither any more.
    fs::copy_file(guest("bzImage"), d / "bzImage");
    fs::copy_file(guest("initramfs.cpio.gz"), d / "initramfs.cpio.gz");
    Background vm({env("EMBER_BIN"), "--api-sock", sock, "--kernel", (d / "bzImage").string(), "--initrd",
                   (d / "initramfs.cpio.gz").string(), "--cmdline", cmdline(kGuestLoop), "--drive",
                   "id=data,path=" + (d / "data.img").string(), "--vsock", "cid=3,uds=" + uds, "--vcpus", "2",
                   "--serial-out", (d / "a-console.txt").string()},
                  600 * time_scale());
    bool ticked = wait_for_tick(d / "a-console.txt", 3, 300 * time_scale(), vm.ended);
    std::string echo = ticked ? vsock_echo(uds, "before the snapshot") : "not reached";
    std::string api = pause_and_save(sock, d);
    ticks_at_snapshot_ = last_tick(read_text(d / "a-console.txt"));
    // The original goes on after its snapshot, then ends through Ctrl+Alt+Del (exit 0).
    std::string resumed = sh(api_script("api " + sock + " PATCH /vm -d '{\"state\": \"Resumed\"}'\n"));
    bool ticked_after = wait_for_tick(d / "a-console.txt", ticks_at_snapshot_ + 1, 120 * time_scale(), vm.ended);
    if (!vm.ended) sh(api_script("api " + sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
    const ProcessResult& original = vm.wait();
    fs::remove(d / "bzImage");
    fs::remove(d / "initramfs.cpio.gz");
    std::string console = read_text(d / "a-console.txt");
    SCOPED_TRACE(describe(original) + "\n--- stderr ---\n" + original.err + "\n--- console ---\n" + console +
                 "\n--- api ---\n" + api);
    ASSERT_TRUE(ticked) << "the original guest never ticked 3 times";
    EXPECT_EQ(echo, "");
    EXPECT_EQ(api, " HTTP204\n HTTP204\n") << "pause and snapshot/create";
    EXPECT_EQ(resumed, " HTTP204\n");
    EXPECT_TRUE(ticked_after) << "the original did not go on after its snapshot";
    EXPECT_EQ(original.exit_code, 0);
    ASSERT_TRUE(fs::exists(d / "vm.snap") && fs::exists(d / "vm.mem"));
    EXPECT_EQ(fs::file_size(d / "vm.mem"), 128u << 20);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete data_md5_;
  }
  void SetUp() override {
    if (!dir_ || !fs::exists(*dir_ / "vm.snap")) GTEST_SKIP() << "no snapshot: SetUpTestSuite failed (reported there)";
  }

  // A restored guest's console: the loop goes on from the snapshot's count (no new boot),
  // the drive reads the same, and vsock answers on `uds`.
  void expect_resumed_guest(const std::string& console, int ticks_seen, const std::string& echo) {
    EXPECT_GE(ticks_seen, ticks_at_snapshot_ + 2);
    // The guest's clock moves on: uptime grows from tick to tick after the restore.
    static const std::regex up("TICK [0-9]+ [0-9a-f]+ up ([0-9.]+)");
    std::vector<double> uptimes;
    for (auto it = std::sregex_iterator(console.begin(), console.end(), up); it != std::sregex_iterator(); ++it) {
      uptimes.push_back(std::stod((*it)[1]));
    }
    ASSERT_GE(uptimes.size(), 2u);
    EXPECT_GT(uptimes.back(), uptimes.front()) << "the guest's clock stood still";
    EXPECT_NE(console.find("TICK " + std::to_string(ticks_at_snapshot_ + 1) + " " + *data_md5_), std::string::npos)
        << "the first TICK after the restore must continue the count with the drive's checksum";
    EXPECT_EQ(console.find("TICK 1 "), std::string::npos) << "the restored guest started over";
    EXPECT_EQ(console.find("EMBER_GUEST_USERSPACE"), std::string::npos) << "the restored guest booted again";
    EXPECT_EQ(echo, "");
  }

  static fs::path* dir_;
  static std::string* data_md5_;
  static int ticks_at_snapshot_;
};
fs::path* Snapshot::dir_ = nullptr;
std::string* Snapshot::data_md5_ = nullptr;
int Snapshot::ticks_at_snapshot_ = 0;

TEST_F(Snapshot, LauncherRestoresFromTomlAndTheGuestGoesOnWithItsDriveAndVsock) {
  fs::path d = *dir_ / "launcher";
  fs::create_directories(d);
  std::string sock = (d / "b.sock").string();
  // The TOML launcher's [restore] (--restore and --mem-file are the same request as flags,
  // used by the tests below).
  std::ofstream(d / "restore.toml") << "[restore]\nsnapshot_path = \"../vm.snap\"\nmem_file_path = \"" +
                                           (*dir_ / "vm.mem").string() +
                                           "\"\n\n[serial]\noutput = \"file\"\npath = \"console.txt\"\n";
  Background vm({env("EMBER_BIN"), "--config", (d / "restore.toml").string(), "--api-sock", sock, "--level", "info"},
                300 * time_scale());
  bool ticked = wait_for_tick(d / "console.txt", ticks_at_snapshot_ + 2, 120 * time_scale(), vm.ended);
  // A guest that stalls is stopped with SIGTERM: ember then logs where each vCPU and queue was.
  if (!ticked) sh("pkill -TERM -f -- '[-]-api-sock " + sock + "' || true");
  // The original ember has ended, so its vsock socket path is free for the restored one.
  std::string echo = vsock_echo((*dir_ / "v.sock").string(), "after the restore");
  std::string api = sh(api_script("api " + sock + " GET /\napi " + sock + " GET /vm/config\n"
                                  "api " + sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = vm.wait();
  std::string console = read_text(d / "console.txt");
  SCOPED_TRACE(describe(r) + "\n--- stderr ---\n" + r.err + "\n--- console ---\n" + console + "\n--- api ---\n" + api);
  EXPECT_TRUE(ticked);
  expect_resumed_guest(console, last_tick(console), echo);
  EXPECT_NE(api.find(R"("state":"Running")"), std::string::npos);
  EXPECT_NE(api.find(R"("drive_id":"data")"), std::string::npos) << "GET /vm/config shows the restored VM";
  EXPECT_EQ(r.exit_code, 0) << "ends through Ctrl+Alt+Del like a booted VM";
  // What the restored guest wrote reached the drive.
  std::string written = sh("dd if='" + (*dir_ / "data.img").string() + "' bs=512 skip=2048 count=1 2>/dev/null | head -n 1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(written, m, std::regex("WROTE ([0-9]+)"))) << written;
  EXPECT_GT(std::stoi(m[1]), ticks_at_snapshot_) << "no write after the restore reached the drive";
}

TEST_F(Snapshot, ApiLoadsAPausedCloneBesideAnotherFromTheSameFiles) {
  fs::path d = *dir_ / "clones";
  fs::create_directories(d);
  std::string sock1 = (d / "c1.sock").string(), sock2 = (d / "c2.sock").string();
  std::string uds1 = (d / "v1.sock").string(), uds2 = (d / "v2.sock").string();
  Background vm1({env("EMBER_BIN"), "--api-sock", sock1, "--serial-out", (d / "c1.txt").string(), "--boot-timings",
                  (d / "c1-timings.json").string()},
                 300 * time_scale());
  Background vm2({env("EMBER_BIN"), "--api-sock", sock2, "--serial-out", (d / "c2.txt").string()}, 300 * time_scale());
  auto load = [&](const std::string& sock, const std::string& uds, bool resume) {
    return "wait_sock " + sock + "\napi " + sock + " PUT /snapshot/load -d '{\"snapshot_path\": \"" +
           (*dir_ / "vm.snap").string() + "\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"" +
           (*dir_ / "vm.mem").string() + "\"}, \"vsock_override\": {\"uds_path\": \"" + uds + "\"}, \"resume_vm\": " +
           (resume ? "true" : "false") + "}'\napi " + sock + " GET /\n";
  };
  std::string api = sh(api_script(load(sock1, uds1, true) + load(sock2, uds2, false)));
  // The paused clone does not run until resumed.
  bool ticked1 = wait_for_tick(d / "c1.txt", ticks_at_snapshot_ + 2, 120 * time_scale(), vm1.ended);
  int paused_ticks = last_tick(read_text(d / "c2.txt"));
  // A clone loaded without track_dirty_pages cannot take a Diff snapshot.
  std::string no_diff = sh(api_script("api " + sock2 + " PUT /snapshot/create -d '{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"" +
                                      (d / "d.snap").string() + "\", \"mem_file_path\": \"" + (d / "d.mem").string() + "\"}'\n"));
  std::string resumed = sh(api_script("api " + sock2 + " PATCH /vm -d '{\"state\": \"Resumed\"}'\n"));
  bool ticked2 = wait_for_tick(d / "c2.txt", ticks_at_snapshot_ + 2, 120 * time_scale(), vm2.ended);
  std::string echo1 = vsock_echo(uds1, "clone one"), echo2 = vsock_echo(uds2, "clone two");
  std::string again = sh(api_script("api " + sock1 + " PUT /snapshot/load -d '{\"snapshot_path\": \"/x\", \"mem_file_path\": \"/y\"}'\n"
                                    "api " + sock1 + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"
                                    "api " + sock2 + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r1 = vm1.wait();
  const ProcessResult& r2 = vm2.wait();
  std::string c1 = read_text(d / "c1.txt"), c2 = read_text(d / "c2.txt");
  SCOPED_TRACE(describe(r1) + " / " + describe(r2) + "\n--- stderr ---\n" + r1.err + r2.err + "\n--- clone 1 ---\n" + c1 + "\n--- clone 2 ---\n" + c2 +
               "\n--- api ---\n" + api + resumed + again);
  EXPECT_NE(api.find(R"("state":"Running")"), std::string::npos);
  EXPECT_NE(api.find(R"("state":"Paused")"), std::string::npos);
  EXPECT_EQ(paused_ticks, 0) << "a clone loaded without resume_vm ran";
  EXPECT_TRUE(ticked1);
  EXPECT_TRUE(ticked2);
  expect_resumed_guest(c1, last_tick(c1), echo1);
  expect_resumed_guest(c2, last_tick(c2), echo2);
  EXPECT_NE(again.find("a VM is already Running"), std::string::npos);
  EXPECT_NE(no_diff.find("HTTP400"), std::string::npos) << no_diff;
  EXPECT_NE(no_diff.find("needs dirty page tracking"), std::string::npos) << no_diff;
  EXPECT_FALSE(fs::exists(d / "d.snap") || fs::exists(d / "d.mem"));
  EXPECT_EQ(r1.exit_code, 0);
  EXPECT_EQ(r2.exit_code, 0);
  // ember's own part of a restore, as perf/snapshot measures it: from the request's arrival
  // (before the snapshot file is read) to the first KVM_RUN.
  std::string timings = read_text(d / "c1-timings.json");
  int64_t requested = phase_wall_us(timings, "restore_requested"), started = phase_wall_us(timings, "instance_start");
  int64_t first_run = phase_wall_us(timings, "first_kvm_run");
  EXPECT_GT(requested, 0) << timings;
  EXPECT_GE(started, requested) << timings;
  EXPECT_GE(first_run, started) << timings;
}

// A FaaS runtime connects the moment its load is answered. A restored guest takes the
// transport reset only once it runs again; a connection that reached it first was accepted
// and then reset with the old ones (Linux finds both in one interrupt and handles the
// connection first), so ember holds it until the guest took the reset.
TEST_F(Snapshot, TheFirstHostConnectionRightAfterTheLoadIsEchoed) {
  fs::path d = *dir_ / "first-connection";
  fs::create_directories(d);
  std::string sock = (d / "f.sock").string(), uds = (d / "v.sock").string();
  Background vm({env("EMBER_BIN"), "--api-sock", sock, "--serial-out", (d / "console.txt").string(), "--level",
                 "debug"},
                300 * time_scale());
  std::string load = "{\"snapshot_path\": \"" + (*dir_ / "vm.snap").string() +
                     "\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"" +
                     (*dir_ / "vm.mem").string() + "\"}, \"vsock_override\": {\"uds_path\": \"" + uds +
                     "\"}, \"resume_vm\": true}";
  std::string answer = http_request(sock, "PUT", "/snapshot/load", load);
  std::string echo = vsock_echo(uds, "right after the load");
  std::string second = vsock_echo(uds, "and again");
  std::string end = sh(api_script("api " + sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = vm.wait();
  SCOPED_TRACE(describe(r) + "\n--- stderr ---\n" + r.err + "\n--- console ---\n" + read_text(d / "console.txt"));
  EXPECT_EQ(answer, "HTTP/1.1 204 No Content");
  EXPECT_EQ(echo, "") << "the first connection after the load";
  EXPECT_EQ(second, "");
  EXPECT_NE(r.err.find("the guest took the transport reset"), std::string::npos);
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(Snapshot, UffdHandlerServesTheRestoredMemory) {
  fs::path d = *dir_ / "uffd";
  fs::create_directories(d);
  std::string handler_sock = (d / "uffd.sock").string(), api_sock = (d / "api.sock").string();
  std::string handler = env("EMBER_UFFD_HANDLER_BIN");
  Background serve({handler, handler_sock, (*dir_ / "vm.mem").string()}, 300 * time_scale());
  sh(api_script("wait_sock " + handler_sock + "\n"));
  Background vm({env("EMBER_BIN"), "--restore", (*dir_ / "vm.snap").string(), "--uffd-socket", handler_sock,
                 "--api-sock", api_sock, "--serial-out", (d / "console.txt").string()},
                300 * time_scale());
  bool ticked = wait_for_tick(d / "console.txt", ticks_at_snapshot_ + 2, 120 * time_scale(), vm.ended);
  std::string echo = vsock_echo((*dir_ / "v.sock").string(), "served by the handler");
  sh(api_script("api " + api_sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = vm.wait();
  const ProcessResult& h = serve.wait();  // the handler ends when ember closes its connection
  std::string console = read_text(d / "console.txt");
  SCOPED_TRACE(describe(r) + "\n--- stderr ---\n" + r.err + "\n--- console ---\n" + console + "\n--- handler ---\n" + describe(h) + "\n" + h.out + h.err);
  EXPECT_TRUE(ticked);
  expect_resumed_guest(console, last_tick(console), echo);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(h.exit_code, 0);
}

// Diff snapshots: a clone restored with track_dirty_pages takes a Full snapshot, runs on,
// and takes a Diff; ember-rebase-snap applies the diff onto the Full memory file, and the
// Diff's state restored with that file goes on from the Diff's count (pages the guest or
// the drive wrote after the Full one would otherwise be stale). Between the two, a
// snapshot into a folder that does not exist is refused and changes nothing.
TEST_F(Snapshot, DiffRebasedOntoTheFullOneRestoresTheLaterState) {
  fs::path d = *dir_ / "diff";
  fs::create_directories(d);
  std::string sock = (d / "a.sock").string(), uds = (d / "v.sock").string();
  auto create = [&](const char* type, const fs::path& snap, const fs::path& mem) {
    return "api " + sock + " PUT /snapshot/create -d '{\"snapshot_type\": \"" + type + "\", \"snapshot_path\": \"" +
           snap.string() + "\", \"mem_file_path\": \"" + mem.string() + "\"}'\n";
  };
  std::string pause = "api " + sock + " PATCH /vm -d '{\"state\": \"Paused\"}'\n";
  std::string resume = "api " + sock + " PATCH /vm -d '{\"state\": \"Resumed\"}'\n";
  Background vm({env("EMBER_BIN"), "--api-sock", sock, "--serial-out", (d / "a.txt").string()}, 600 * time_scale());
  std::string api = sh(api_script("wait_sock " + sock + "\napi " + sock + " PUT /snapshot/load -d '{\"snapshot_path\": \"" +
                                  (*dir_ / "vm.snap").string() + "\", \"mem_file_path\": \"" + (*dir_ / "vm.mem").string() +
                                  "\", \"track_dirty_pages\": true, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"" +
                                  uds + "\"}}'\napi " + sock + " GET /vm/config\n"));
  bool ticked = wait_for_tick(d / "a.txt", ticks_at_snapshot_ + 2, 120 * time_scale(), vm.ended);
  api += sh(api_script(pause + create("Full", d / "full.snap", d / "full.mem") + resume), 120 * time_scale());
  int at_full = last_tick(read_text(d / "a.txt"));
  bool ticked_after_full = wait_for_tick(d / "a.txt", at_full + 3, 120 * time_scale(), vm.ended);
  std::string diff = sh(api_script(pause + create("Diff", d / "diff.snap", d / "diff.mem") +
                                   create("Full", d / "missing" / "x.snap", d / "x.mem")),
                        120 * time_scale());
  int at_diff = last_tick(read_text(d / "a.txt"));
  sh(api_script(resume + "api " + sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& original = vm.wait();

  ProcessResult rebase = run_process({env("EMBER_REBASE_SNAP_BIN"), "--base-file", (d / "full.mem").string(),
                                      "--diff-file", (d / "diff.mem").string()},
                                     120 * time_scale());
  std::string sock2 = (d / "b.sock").string();
  Background restored({env("EMBER_BIN"), "--restore", (d / "diff.snap").string(), "--mem-file", (d / "full.mem").string(),
                       "--api-sock", sock2, "--serial-out", (d / "b.txt").string()},
                      300 * time_scale());
  bool ticked_restored = wait_for_tick(d / "b.txt", at_diff + 2, 120 * time_scale(), restored.ended);
  if (!ticked_restored) sh("pkill -TERM -f -- '[-]-api-sock " + sock2 + "' || true");
  std::string echo = vsock_echo(uds, "after the diff");
  sh(api_script("api " + sock2 + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = restored.wait();
  std::string console = read_text(d / "b.txt");
  std::string sizes = sh("du -k '" + (*dir_ / "vm.mem").string() + "' '" + (d / "full.mem").string() + "' '" +
                        (d / "diff.mem").string() + "'");
  std::cout << "memory files (KiB on disk):\n" << sizes;
  SCOPED_TRACE(describe(original) + " / " + describe(r) + "\n--- stderr ---\n" + original.err + r.err +
               "\n--- console ---\n" + console + "\n--- api ---\n" + api + diff + "\n--- rebase ---\n" + rebase.out +
               rebase.err + "\n--- sizes ---\n" + sizes);
  EXPECT_NE(api.find(R"("track_dirty_pages":true)"), std::string::npos) << "GET /vm/config shows the tracking";
  EXPECT_TRUE(ticked);
  EXPECT_TRUE(ticked_after_full);
  EXPECT_EQ(api.substr(api.rfind("}") + 1), " HTTP200\n HTTP204\n HTTP204\n HTTP204\n") << "config, pause, Full, resume";
  ASSERT_EQ(diff.rfind(" HTTP204\n HTTP204\n", 0), 0u) << "pause and the Diff";
  EXPECT_NE(diff.find("HTTP400"), std::string::npos) << "a snapshot into a missing folder";
  EXPECT_NE(diff.find((d / "missing" / "x.snap").string()), std::string::npos) << "the refusal names the path";
  EXPECT_FALSE(fs::exists(d / "missing"));
  EXPECT_EQ(original.exit_code, 0);
  EXPECT_GT(at_diff, at_full);
  EXPECT_EQ(rebase.exit_code, 0);
  EXPECT_NE(rebase.out.find("applied "), std::string::npos);
  EXPECT_LT(fs::file_size(d / "diff.snap"), 1u << 20);
  EXPECT_TRUE(ticked_restored);
  EXPECT_NE(console.find("TICK " + std::to_string(at_diff + 1) + " " + *data_md5_), std::string::npos)
      << "the restored guest must go on from the Diff's count, " << at_diff;
  EXPECT_EQ(console.find("TICK " + std::to_string(at_full + 1) + " "), std::string::npos) << "it went on from the Full one";
  EXPECT_EQ(console.find("EMBER_GUEST_USERSPACE"), std::string::npos) << "the restored guest booted again";
  EXPECT_EQ(echo, "");
  EXPECT_EQ(r.exit_code, 0);
}

// A 4-vCPU guest with a tap: it pings the host every second and streams numbered lines to
// a host TCP listener over one connection. Saved, its ember killed, its tap deleted, it is
// restored by the TOML launcher onto another tap (network_overrides): pings go on, and the
// same TCP connection carries the next lines.
TEST(SnapshotNet, FourVcpusAndATcpConnectionGoOnThroughAnotherTap) {
  fs::path d = scratch_dir("snapshot-net");
  NetNamespace ns("embersnapa");
  int listener = tcp_listen(kUploadPort);
  std::mutex mu;
  std::string received;
  int connections = 0;
  std::atomic<bool> stop{false};
  std::thread host([&] {
    for (int c; !stop && (c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
      {
        std::lock_guard lock(mu);
        ++connections;
      }
      timeval tv{1, 0};  // the guest may never close the connection: look at `stop` every second
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      while (!stop) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        std::lock_guard lock(mu);
        received.append(buf, static_cast<size_t>(n));
      }
      ::close(c);
    }
  });
  auto host_text = [&] {
    std::lock_guard lock(mu);
    return received;
  };
  const std::string script =
      "ip link set lo up; ip link set eth0 up && ip addr add 169.254.10.2/24 dev eth0 || exit 10\n"
      "n=0; while :; do n=$((n+1)); echo \"LINE $n ok\"; sleep 1; done | nc 169.254.10.1 5001 &\n"
      "m=0; while :; do m=$((m+1)); ping -c 1 -W 2 169.254.10.1 >/dev/null && r=ok || r=lost; "
      "echo \"NTICK $m $r cpus $(nproc)\"; sleep 1; done\n";
  std::string sock = (d / "a.sock").string();
  Background vm({env("EMBER_BIN"), "--api-sock", sock, "--kernel", guest("bzImage"), "--initrd",
                 guest("initramfs.cpio.gz"), "--cmdline", cmdline(script), "--vcpus", "4", "--net",
                 "iface_id=eth0,tap=embersnapa,mac=06:00:ac:10:00:02", "--serial-out", (d / "a.txt").string()},
                600 * time_scale());
  bool ticked = wait_until([&] { return last_ok(read_text(d / "a.txt"), "NTICK") >= 3 && last_ok(host_text(), "LINE") >= 3; },
                           300 * time_scale(), vm.ended);
  std::string api = pause_and_save(sock, d);
  int pings_at_snapshot = last_ok(read_text(d / "a.txt"), "NTICK");
  int lines_at_snapshot = last_ok(host_text(), "LINE");
  sh("pkill -KILL -f -- '[-]-api-sock " + sock + "' || true");  // a crash: nothing closes the connection
  const ProcessResult& original = vm.wait();
  sh("ip link del embersnapa && ip tuntap add dev embersnapb mode tap && ip addr add " + std::string(kHostIp) +
     "/24 dev embersnapb && ip link set embersnapb up");
  std::ofstream(d / "restore.toml") << "[restore]\nsnapshot_path = \"vm.snap\"\nmem_file_path = \"vm.mem\"\n"
                                       "network_overrides = [ { iface_id = \"eth0\", host_dev_name = \"embersnapb\" } ]\n"
                                       "[serial]\noutput = \"file\"\npath = \"b.txt\"\n";
  std::string sock2 = (d / "b.sock").string();
  Background restored({env("EMBER_BIN"), "--config", (d / "restore.toml").string(), "--api-sock", sock2}, 300 * time_scale());
  bool went_on = wait_until([&] {
    return last_ok(read_text(d / "b.txt"), "NTICK") >= pings_at_snapshot + 3 && last_ok(host_text(), "LINE") >= lines_at_snapshot + 3;
  }, 180 * time_scale(), restored.ended);
  if (!went_on) sh("pkill -TERM -f -- '[-]-api-sock " + sock2 + "' || true");
  sh(api_script("api " + sock2 + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = restored.wait();
  stop = true;
  ::shutdown(listener, SHUT_RDWR);
  host.join();
  ::close(listener);
  std::string console = read_text(d / "b.txt");
  SCOPED_TRACE(describe(original) + " / " + describe(r) + "\n--- stderr ---\n" + original.err + r.err + "\n--- console ---\n" +
               console + "\n--- api ---\n" + api + "\n--- host received ---\n" + received.substr(received.size() > 2000 ? received.size() - 2000 : 0));
  ASSERT_TRUE(ticked) << "the original guest never pinged and sent 3 times";
  EXPECT_EQ(api, " HTTP204\n HTTP204\n");
  EXPECT_TRUE(went_on) << "after the restore: pings from " << pings_at_snapshot << ", lines from " << lines_at_snapshot;
  EXPECT_NE(console.find("NTICK " + std::to_string(pings_at_snapshot + 1) + " "), std::string::npos) << "the count went on";
  EXPECT_NE(console.find("ok cpus 4"), std::string::npos) << "four vCPUs after the restore";
  EXPECT_EQ(console.find("EMBER_GUEST_USERSPACE"), std::string::npos) << "the restored guest booted again";
  EXPECT_EQ(connections, 1) << "the lines after the restore came on the connection made before it";
  EXPECT_NE(received.find("LINE " + std::to_string(lines_at_snapshot + 1) + " ok"), std::string::npos);
  EXPECT_EQ(r.exit_code, 0);
  sh("ip link del embersnapb || true");
}

// A field of /proc/PID/smaps_rollup in KiB (0 when missing).
uint64_t smaps_kib(const std::string& rollup, const std::string& field) {
  std::smatch m;
  if (!std::regex_search(rollup, m, std::regex("\n" + field + ":\\s+([0-9]+) kB"))) return 0;
  return std::stoull(m[1]);
}

// Counts once a second and answers on vsock: the ten clones' guest, light enough for ten of
// them on the emulated host's two CPUs (the suite's guest reads its drive every second).
constexpr const char* kLightLoop =
    "vsock-io listen 5000 echo &\n"
    "n=0\n"
    "while :; do n=$((n+1)); echo \"TICK $n up $(cut -d' ' -f1 /proc/uptime)\"; sleep 1; done\n";

// Ten clones restored at once from one snapshot (1 vCPU, 128 MiB) all run: each goes on
// counting and answers on its own vsock socket. They share the memory file: their
// proportional set size is well under their resident size (without sharing, each clone's
// pages would be its own and the two would be equal); and though the source pre-faulted its
// RAM, no clone does: each maps well under half of the memory file. Prints each clone's Rss/Pss/Private
// and the sums, and the one VM's before its snapshot.
TEST(SnapshotClones, TenRunAtOnceSharingTheMemoryFile) {
  constexpr int kClones = 10;
  ASSERT_TRUE(host_tools({{"curl", "curl"}}));
  fs::path d = scratch_dir("snapshot-clones");
  std::string sock = (d / "a.sock").string();
  Background vm({env("EMBER_BIN"), "--api-sock", sock, "--kernel", guest("bzImage"), "--initrd",
                 guest("initramfs.cpio.gz"), "--cmdline", cmdline(kLightLoop), "--vsock",
                 "cid=3,uds=" + (d / "v.sock").string(), "--serial-out", (d / "a.txt").string()},
                600 * time_scale());
  bool ticked = wait_for_tick(d / "a.txt", 2, 300 * time_scale(), vm.ended);
  std::string one = sh("pgrep -f -- '[-]-api-sock " + sock + "' | head -n 1 | xargs -I{} cat /proc/{}/smaps_rollup || true");
  std::string api = pause_and_save(sock, d);
  int at_snapshot = last_tick(read_text(d / "a.txt"));
  sh("pkill -KILL -f -- '[-]-api-sock " + sock + "' || true");
  vm.wait();
  ASSERT_TRUE(ticked) << "the guest never ticked twice";
  ASSERT_EQ(api, " HTTP204\n HTTP204\n") << "pause and snapshot/create";

  std::vector<std::unique_ptr<Background>> clones;
  for (int i = 0; i < kClones; ++i) {
    std::string n = std::to_string(i);
    std::ofstream(d / ("clone-" + n + ".toml")) << "[restore]\nsnapshot_path = \"vm.snap\"\nmem_file_path = \"vm.mem\"\n"
                                                   "vsock_override = { uds_path = \"v" + n + ".sock\" }\n"
                                                   "[serial]\noutput = \"file\"\npath = \"c" + n + ".txt\"\n";
    clones.push_back(std::make_unique<Background>(
        std::vector<std::string>{env("EMBER_BIN"), "--config", (d / ("clone-" + n + ".toml")).string()}, 900 * time_scale()));
  }
  std::vector<bool> went_on(kClones);
  for (int i = 0; i < kClones; ++i) {
    went_on[i] = wait_for_tick(d / ("c" + std::to_string(i) + ".txt"), at_snapshot + 2, 300 * time_scale(),
                               clones[i]->ended);
  }
  std::string report = "one VM before its snapshot: Rss " + std::to_string(smaps_kib("\n" + one, "Rss")) + " KiB, Pss " +
                       std::to_string(smaps_kib("\n" + one, "Pss")) + " KiB\n";
  uint64_t rss = 0, pss = 0, private_kib = 0;
  int measured = 0;
  for (int i = 0; i < kClones; ++i) {
    std::string pid = sh("pgrep -f -- '[c]lone-" + std::to_string(i) + ".toml' | head -n 1 || true");
    pid.erase(pid.find_last_not_of("\n") + 1);
    if (pid.empty()) continue;
    std::string rollup = "\n" + read_text("/proc/" + pid + "/smaps_rollup");
    uint64_t r = smaps_kib(rollup, "Rss"), p = smaps_kib(rollup, "Pss");
    uint64_t priv = smaps_kib(rollup, "Private_Clean") + smaps_kib(rollup, "Private_Dirty");
    report += "clone " + std::to_string(i) + ": Rss " + std::to_string(r) + " KiB, Pss " + std::to_string(p) +
              " KiB, Private " + std::to_string(priv) + " KiB\n";
    rss += r;
    pss += p;
    private_kib += priv;
    ++measured;
  }
  report += "sum of " + std::to_string(measured) + ": Rss " + std::to_string(rss) + " KiB, Pss " + std::to_string(pss) +
            " KiB, Private " + std::to_string(private_kib) + " KiB\n";
  std::cout << report;
  std::vector<std::string> echoes;
  for (int i = 0; i < kClones; ++i) echoes.push_back(vsock_echo((d / ("v" + std::to_string(i) + ".sock")).string(), "clone " + std::to_string(i)));
  for (int i = 0; i < kClones; ++i) sh("pkill -TERM -f -- '[c]lone-" + std::to_string(i) + ".toml' || true");
  for (int i = 0; i < kClones; ++i) {
    const ProcessResult& r = clones[i]->wait();
    std::string console = read_text(d / ("c" + std::to_string(i) + ".txt"));
    SCOPED_TRACE("clone " + std::to_string(i) + ": " + describe(r) + "\n" + r.err + "\n--- console ---\n" + console);
    EXPECT_TRUE(went_on[i]);
    EXPECT_NE(console.find("TICK " + std::to_string(at_snapshot + 1) + " "), std::string::npos) << "the count went on";
    EXPECT_EQ(console.find("TICK 1 "), std::string::npos) << "the clone started over";
    EXPECT_EQ(echoes[i], "");
    EXPECT_EQ(r.exit_code, 130) << "stopped by SIGTERM";
  }
  ASSERT_EQ(measured, kClones) << report;
  EXPECT_LT(pss * 10, rss * 6) << "the clones do not share the memory file's pages:\n" << report;
  // The source VM pre-faulted its RAM (ember's default): its clones must not. A clone maps
  // the pages its guest touched since the restore, not the whole 128 MiB memory file.
  EXPECT_LT(rss / kClones, 64u * 1024) << "a clone mapped most of the memory file (pre-faulted?):\n" << report;
}

// Each broken input ends ember with status 1 and a message naming it, before a guest runs.
TEST_F(Snapshot, BrokenSnapshotsAreRefusedNamingWhatIsWrong) {
  fs::path d = *dir_ / "broken";
  fs::create_directories(d);
  std::string snap = (*dir_ / "vm.snap").string(), mem = (*dir_ / "vm.mem").string();
  sh("head -c 100 '" + snap + "' > '" + (d / "truncated.snap").string() + "'");
  sh("cp '" + snap + "' '" + (d / "flipped.snap").string() + "' && printf '\\377' | dd of='" + (d / "flipped.snap").string() +
     "' bs=1 seek=200 conv=notrunc 2>/dev/null");
  sh("head -c 4096 '" + mem + "' > '" + (d / "short.mem").string() + "'");
  sh("mkfifo '" + (d / "fifo").string() + "'");
  struct Bad {
    std::string snapshot, memory, message;
  } cases[] = {
      {(d / "truncated.snap").string(), mem, "truncated"},
      {(d / "flipped.snap").string(), mem, "checksum"},
      {(d / "fifo").string(), mem, "not a regular file"},
      {snap, (d / "short.mem").string(), "4096"},
      {snap, (d / "missing.mem").string(), "missing.mem"},
  };
  for (const Bad& b : cases) {
    SCOPED_TRACE(b.snapshot + " + " + b.memory);
    ProcessResult r = run_process({env("EMBER_BIN"), "--restore", b.snapshot, "--mem-file", b.memory}, 60 * time_scale());
    EXPECT_EQ(r.exit_code, 1) << describe(r) << r.err;
    EXPECT_NE(r.err.find(b.message), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("TICK"), std::string::npos);
  }
  // A drive the snapshot names that is gone: refused naming it; over the API a 400, and the
  // same ember then loads a good snapshot.
  fs::rename(*dir_ / "data.img", *dir_ / "data.away");
  std::string sock = (d / "api.sock").string();
  Background vm({env("EMBER_BIN"), "--api-sock", sock, "--serial-out", (d / "console.txt").string()}, 300 * time_scale());
  std::string load = "api " + sock + " PUT /snapshot/load -d '{\"snapshot_path\": \"" + snap +
                     "\", \"mem_file_path\": \"" + mem + "\", \"resume_vm\": true}'\n";
  std::string first = sh(api_script("wait_sock " + sock + "\n" + load));
  fs::rename(*dir_ / "data.away", *dir_ / "data.img");
  std::string second = sh(api_script(load));
  bool ticked = wait_for_tick(d / "console.txt", ticks_at_snapshot_ + 1, 120 * time_scale(), vm.ended);
  sh(api_script("api " + sock + " PUT /actions -d '{\"action_type\": \"SendCtrlAltDel\"}'\n"));
  const ProcessResult& r = vm.wait();
  SCOPED_TRACE(first + second + describe(r) + r.err);
  EXPECT_NE(first.find("data.img"), std::string::npos);
  EXPECT_NE(first.find("HTTP400"), std::string::npos);
  EXPECT_NE(second.find("HTTP204"), std::string::npos);
  EXPECT_TRUE(ticked);
  EXPECT_EQ(r.exit_code, 0);
}

}  // namespace
}  // namespace ember::e2e
