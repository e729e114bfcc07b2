#include "base/bus.h"

#include <algorithm>

#include "base/util/error.h"

namespace ember {

void Bus::insert(BusDevice& device, uint64_t base, uint64_t len, std::string device_name) {
  if (len == 0 || base + len < base) fail(name_, " bus: bad range for ", device_name, " at ", hex(base));
  for (const Range& r : ranges_) {
    if (base < r.base + r.len && r.base < base + len) {
      fail(name_, " bus: ", device_name, " at ", hex(base), " overlaps ", r.name, " at ", hex(r.base));
    }
  }
  ranges_.push_back({base, len, &device, std::move(device_name)});
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.base < b.base; });
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t len) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  const Range& r = *std::prev(it);
  uint64_t offset = addr - r.base;
  if (offset >= r.len || len > r.len - offset) return nullptr;
  return &r;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (!r) return false;
  r->device->read(addr - r->base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (!r) return false;
  r->device->write(addr - r->base, data);
  return true;
}

}  // namespace ember
