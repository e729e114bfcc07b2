// A function's registration (PUT /functions/NAME): what image it boots, how big its VMs are,
// what its handler is and the limits that shape its VM pool.
#pragma once

#include <cstdint>
#include <string>

namespace ember::faas {

struct FunctionSpec {
  std::string kernel;
  std::string initramfs;  // one of initramfs and rootfs
  std::string rootfs;     // an ext4 image with the agent as /init, read-only root drive
  std::string code;       // optional: a file the handler reads as the block device $FAAS_CODE (a
                          // read-only drive "code"); PUT /functions/NAME/code swaps it (no new snapshot)
  bool network = false;   // a virtio-net device on a tap in the VM's own network namespace; the
                          // guest's eth0 is given its address by the agent (ember-faas as root)
  uint32_t mem_mib = 128;
  uint32_t vcpus = 1;
  std::string handler;    // run as /bin/sh -c HANDLER in the guest
  uint32_t timeout_ms = 10000;
  uint32_t keep_alive_ms = 60000;
  uint32_t max_vms = 4;
  uint32_t max_queue = 16;  // invocations waiting for a VM; one more gets 429
};

// A valid function name: 1 to 64 of [A-Za-z0-9_-].
bool valid_function_name(const std::string& name);

// Parses and checks a registration body. Throws Error naming the field: unknown fields, wrong
// types, out-of-range numbers, a missing kernel or handler, neither or both of initramfs and
// rootfs, image paths that are not readable files.
FunctionSpec parse_function_spec(const std::string& body);

// Parses PUT /functions/NAME/code's body, {"code": "/path"}: the new code file's path. Throws
// Error naming the field (unknown fields, a missing or unreadable file).
std::string parse_code_update(const std::string& body);

}  // namespace ember::faas
