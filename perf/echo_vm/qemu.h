// QEMU's side of the echo VM (perf/snapshot, perf/fleet): the same guest under QEMU microvm
// with a vhost-vsock device, booted from the kernel or restored from a migration file
// (`-incoming`), its echo reached from the host through AF_VSOCK, and the migration file
// written once over QMP.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perf/echo_vm/process.h"

namespace ember::perf::echo_vm {

struct QemuGuest {
  std::string qemu;  // an absolute path (see qemu_unavailable)
  std::string kernel, initrd, cmdline;
  int vcpus = 1, mem_mib = 128;
  unsigned cid = 3;  // the guest's vsock CID: unique among the QEMUs running at once
};

// Why QEMU cannot be measured here, or "" when it can; on success `qemu` (a name looked up
// on PATH, or a path) becomes the absolute path to run. Checks /dev/vhost-vsock and AF_VSOCK too.
std::string qemu_unavailable(std::string& qemu);
// The same, said on stderr for `tool` (with how to go on without QEMU) when QEMU cannot be used.
bool qemu_usable(std::string& qemu, const char* tool);

// QEMU's command line for the guest: microvm as perf/boot-latency boots it (no ACPI, option
// ROMs or default devices), a vhost-vsock device with `g.cid`, QMP listening at `qmp_sock`,
// no run state in a migration stream, and, when `incoming` is not empty, `-incoming exec:cat
// INCOMING` (QEMU loads the file, then runs the guest).
std::vector<std::string> qemu_argv(const QemuGuest& g, const std::string& qmp_sock, const std::string& incoming);

// One echo attempt through AF_VSOCK to (cid, port): connect, send `message`, read it back.
EchoTry vsock_echo(unsigned cid, unsigned port, const std::string& message, int retry_ms,
                   Clock::time_point deadline);

struct MigrationFile {
  std::string error;     // "" when `file` holds the whole stream
  nlohmann::json stats;  // QEMU's last query-migrate answer
};

// Boots the guest with QMP, waits for its echo, gives it 1 s, stops it and migrates it to
// `file` (`exec:` through cat: QEMU 7.2 has no `file:` URI), then quits. Logs go to `dir`.
MigrationFile qemu_save(const QemuGuest& g, const EchoAttempt& echo, const std::filesystem::path& dir,
                        const std::string& file, double timeout_s);

}  // namespace ember::perf::echo_vm
