// Move-only owner of an mmap()ed range.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace ember {

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t size) : addr_(static_cast<uint8_t*>(addr)), size_(size) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      unmap();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Mapping() { unmap(); }

  uint8_t* data() const { return addr_; }
  size_t size() const { return size_; }

 private:
  void unmap() {
    if (addr_) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }
  uint8_t* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ember
