// ember's side of the echo VM (perf/snapshot, perf/fleet): the project's guest running
// `vsock-io listen 5000 echo`, booted by ember or restored over its API, "responsive" once a
// host process got its first echo through ember's vsock Unix socket; and the raw HTTP/1.1
// the suites speak to ember's API socket.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perf/echo_vm/process.h"

namespace ember::perf::echo_vm {

inline constexpr const char* kGuestScript = "vsock-io listen 5000 echo\n";
inline constexpr const char* kEchoMessage = "ping";

// The guest's command line, the same under ember and QEMU.
std::string guest_cmdline();

// ember booting the guest from `guest_dir` (bzImage, initramfs.cpio.gz) with a vsock device
// at `uds` and its boot phases written to `timings`.
std::vector<std::string> ember_boot_argv(const std::string& ember, const std::string& guest_dir, int vcpus, int mem_mib,
                                         const std::string& uds, const std::string& timings);

// ember's --boot-timings file at `path`: null when missing or cut short.
nlohmann::json read_boot_timings(const std::string& path);
// CPU or wall (`clock`: "cpu_us" or "wall_us") milliseconds from phase `from` to phase `to`
// of a --boot-timings; -1 when it lacks either.
double phase_delta_ms(const nlohmann::json& phases, const char* from, const char* to, const char* clock);

// Repeated echo attempts through ember's vsock socket at `uds` (see wait_for_echo).
EchoAttempt ember_echo(const std::string& uds, int retry_ms);

// PUT /snapshot/load's body: `backend` "File" or "Uffd" at `backend_path`, resumed, with
// the vsock device's socket moved to `uds`.
std::string load_body(const std::string& snapshot, const std::string& backend, const std::string& backend_path,
                      const std::string& uds);

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string text;
};

// Writes one HTTP/1.1 request (a JSON body) to the connected `fd`; false if it did not go out.
bool http_write(int fd, const std::string& method, const std::string& path, const std::string& body);
// Sends one request on a new connection to ember's API socket; the fd to read the answer
// from, or -1.
int http_send(const std::string& sock, const std::string& method, const std::string& path, const std::string& body);
// Reads the status line, headers and Content-Length body, and closes `fd`.
HttpAnswer http_receive(int fd, Clock::time_point deadline);
HttpAnswer http(const std::string& sock, const std::string& method, const std::string& path, const std::string& body,
                double timeout_s);

// Pauses the VM behind `api_sock` and writes a Full snapshot to `snapshot` and `mem_file`;
// "" on success, else which request failed and its answer.
std::string pause_and_save(const std::string& api_sock, const std::string& snapshot, const std::string& mem_file,
                           double pause_timeout_s, double save_timeout_s);

// Boots the guest with the API at `api_sock` (log in `log`), waits for its echo, pauses it
// and writes a Full snapshot to `snapshot` and `mem_file`; "" on success, else why not.
std::string take_snapshot(const std::vector<std::string>& boot_argv, const std::string& api_sock, const std::string& log,
                          const std::string& uds, const std::string& snapshot, const std::string& mem_file,
                          double timeout_s, int retry_ms);

}  // namespace ember::perf::echo_vm
