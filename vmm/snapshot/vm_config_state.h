// The VM's configuration as saved in a snapshot: what a new ember needs to rebuild the
// same machine (memory size, vCPUs, drives, interfaces, vsock, ACPI). The serial console
// is not saved: the restoring ember's own choice applies.
#pragma once

#include "base/state_stream.h"
#include "vmm/snapshot/snapshot_params.h"
#include "vmm/vm_config.h"

namespace ember::snapshot {

void write_state(StateWriter& out, const VmConfig& config);
// Throws Error naming the field for a malformed section; the result still goes through
// validate() like any other configuration before a VM is built from it.
VmConfig read_vm_config(StateReader& in);
// Firecracker's network_overrides and vsock_override: each override must name an
// interface the snapshot has (else Error naming it). Also the request's track_dirty_pages.
void apply_overrides(VmConfig& config, const SnapshotLoadParams& params);

}  // namespace ember::snapshot
