// An address bus (port I/O or MMIO): sorted, non-overlapping [base, base+len)
// ranges, each served by one device that sees offsets, never absolute addresses.
// The bus only points at its devices: their owner keeps them alive until every
// vCPU thread (the only callers of read/write) has been joined.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ember {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Called from vCPU threads; must not throw.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  // Throws Error if the range is empty, wraps around, or overlaps another device.
  void insert(BusDevice& device, uint64_t base, uint64_t len, std::string device_name);
  // False when no device covers [addr, addr+len).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t base;
    uint64_t len;
    BusDevice* device;
    std::string name;
  };
  const Range* find(uint64_t addr, uint64_t len) const;
  std::string name_;
  std::vector<Range> ranges_;  // sorted by base; immutable once vCPUs run
};

}  // namespace ember
