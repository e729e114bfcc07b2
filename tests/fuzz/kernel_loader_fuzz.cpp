// libFuzzer target: arbitrary bytes as the kernel image, loaded into a small guest
// as ember boots one: from a buffer, or from a file (a memfd opened by its /proc
// path) with the large reads batched as vm.cpp does; then an initrd, the command
// line and the zero page or PVH start info. Bad images must be refused with Error.
#include <optional>
#include <string>
#include <vector>

#include "base/util/error.h"
#include "tests/fuzz/fuzz_input.h"
#include "vmm/loader/boot_info.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"

namespace {

using namespace ember;

constexpr uint64_t kMemBytes = 32 << 20;

GuestMemory& memory() {
  static GuestMemory m = [] {
    GuestMemoryOptions o;
    o.size_bytes = kMemBytes;
    o.prefault = Prefault::Off;
    return GuestMemory::create(o);
  }();
  return m;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// Input: [mode][initrd KiB][command line length][kernel image...].
void boot(fuzz::FuzzInput& in) {
  uint8_t mode = in.u8();
  size_t initrd_bytes = in.u8() * 1024ull;
  std::string cmdline(in.u8(), 'c');
  auto image_bytes = in.rest();
  GuestMemory& mem = memory();
  ReadBatch batch;
  std::optional<fuzz::MemFile> file;
  std::optional<FileImage> file_image;
  std::optional<BufferImage> buffer_image;
  const ImageSource* image;
  if (mode % 3 == 0) {
    buffer_image.emplace(std::vector<uint8_t>(image_bytes.begin(), image_bytes.end()), "kernel 'fuzz'");
    image = &*buffer_image;
  } else {
    file.emplace(image_bytes);
    file_image.emplace(FileImage::open(file->path(), "kernel"));
    if (mode % 3 == 2) file_image->defer_large_reads_to(&batch);
    image = &*file_image;
  }
  LoadedKernel kernel = load_kernel(*image, mem);
  check(kernel.end <= mem.size());
  check(kernel.format == KernelFormat::BzImage || !kernel.setup);
  std::optional<InitrdLocation> initrd;
  BufferImage initrd_image(std::vector<uint8_t>(initrd_bytes, 0x1d), "initrd 'fuzz'");
  if (initrd_bytes) initrd = load_initrd(initrd_image, kernel, mem);
  batch.run();
  if (initrd) check(initrd->addr >= kernel.end && initrd->addr + initrd->size - 1 <= kernel.initrd_addr_max);
  write_cmdline(mem, kernel, cmdline);
  (void)write_boot_info(mem, kernel, cmdline, initrd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  fuzz::FuzzInput in(data, size);
  try {
    boot(in);
  } catch (const Error&) {
  }
  return 0;
}
