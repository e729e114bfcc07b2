// The files a configuration names, checked as Firecracker checks them: the boot files when
// PUT /boot-source arrives, a drive's file when PUT /drives arrives (both open them), and
// everything once more, with the kernel's format, when the VM is about to be built (a file
// can go away in between). Each opens without waiting on a FIFO (base/util/file_io.h) and
// resolves paths as the process sees them, so a jailed ember checks inside its chroot.
#pragma once

#include "vmm/vm_config.h"

namespace ember {

// Each throws ConfigError naming the file and the reason.
void check_boot_source_files(const BootSource& boot);  // kernel and initrd open for reading
void check_drive_file(const DriveConfig& drive);       // opens as the device will (read-only or not, O_DIRECT)
// PUT /serial: a file output is opened (created if missing) as the VM will open it.
void check_serial_output(const SerialConfig& serial);
// Main thread, at InstanceStart: the above for the whole VM, and the kernel's format.
void check_files(const VmConfig& config);
// Main thread, at a snapshot load: the drives only. A restored VM runs from its memory file,
// so its kernel and initrd need not exist any more (as with Firecracker).
void check_restore_files(const VmConfig& config);

}  // namespace ember
