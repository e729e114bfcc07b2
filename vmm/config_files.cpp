#include "vmm/config_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/util/error.h"
#include "vmm/util/file_io.h"

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
  struct stat st{};
  UniqueFd fd = open_data_file(drive.path_on_host, drive.is_read_only ? O_RDONLY : O_RDWR, st);
  // The device's own words (virtio/blk/block_device.cpp), so either check reads the same.
  if (!fd.valid()) {
    throw ConfigError(cat("cannot open drive '", drive.drive_id, "' at '", drive.path_on_host, "': ", errno_text()));
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    throw ConfigError(cat("drive '", drive.path_on_host, "' is neither a regular file nor a block device (it is ",
                          file_type_name(st.st_mode), ")"));
  }
}

void check_files(const VmConfig& config) {
  check_boot_source_files(config.boot);
  as_config_error([&] { detect_kernel_format(FileImage::open(config.boot.kernel_image_path, "kernel")); });
  for (const DriveConfig& d : config.drives) check_drive_file(d);
}

}  // namespace ember
