#include "vmm/devices/i8042.h"

#include <algorithm>

namespace ember {

namespace {
constexpr uint64_t kCommandOffset = 4;  // port 0x64
constexpr uint8_t kCmdResetCpu = 0xfe;  // pulse the CPU reset line
}  // namespace

void I8042::read(uint64_t, std::span<uint8_t> data) {
  // Status 0: input buffer empty (the guest may send a command), output buffer empty.
  std::fill(data.begin(), data.end(), 0);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kCommandOffset && data.size() == 1 && data[0] == kCmdResetCpu && on_reset_) on_reset_();
}

}  // namespace ember
