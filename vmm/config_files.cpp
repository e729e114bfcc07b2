#include "vmm/config_files.h"

#include "base/util/error.h"
#include "base/util/output_file.h"
#include "virtio/blk/block_device.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"

namespace ember {

namespace {
// A file that is missing or garbage is the configuration's fault: exit status 2, API 400.
template <typename F>
void as_config_error(F check) {
  try {
    check();
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
}
}  // namespace

void check_boot_source_files(const BootSource& boot) {
  as_config_error([&] {
    if (boot.kernel_image_path.empty()) fail("boot-source.kernel_image_path is not set");
    FileImage::open(boot.kernel_image_path, "kernel");
    if (!boot.initrd_path.empty()) FileImage::open(boot.initrd_path, "initrd");
  });
}

void check_drive_file(const DriveConfig& drive) {
  as_config_error([&] {
    // Exactly as the device opens it (read-only or not, and O_DIRECT too for cache = "none":
    // a file system without O_DIRECT is named now).
    virtio::blk::open_backing(drive.drive_id, drive.path_on_host, drive.is_read_only,
                              drive.cache == DriveConfig::Cache::None);
  });
}

void check_serial_output(const SerialConfig& serial) {
  if (serial.output != SerialConfig::Output::File) return;
  as_config_error([&] { open_output_file(serial.path, "serial.serial_out_path"); });
}

void check_files(const VmConfig& config) {
  check_boot_source_files(config.boot);
  as_config_error([&] { detect_kernel_format(FileImage::open(config.boot.kernel_image_path, "kernel")); });
  check_restore_files(config);
}

void check_restore_files(const VmConfig& config) {
  for (const DriveConfig& d : config.drives) check_drive_file(d);
}

}  // namespace ember
