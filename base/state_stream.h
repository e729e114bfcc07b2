// The byte streams that saved VM state is written to and read back from (snapshots).
// Little-endian, no padding, no pointers: what one ember writes another reads.
// A snapshot file is input like any other (it may be truncated, corrupted or made by
// hand), so every read is bounds-checked and a failure throws Error naming the field.
// Header-only: virtio devices use it too, and ember_virtio sits below ember_vmm.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/util/error.h"

namespace ember::snapshot {

class StateWriter {
 public:
  void u8(uint8_t v) { put(v); }
  void u16(uint16_t v) { put(v); }
  void u32(uint32_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  // Length-prefixed (u32) bytes or text.
  void bytes(std::span<const uint8_t> v) {
    u32(static_cast<uint32_t>(v.size()));
    out_.insert(out_.end(), v.begin(), v.end());
  }
  void text(std::string_view v) { bytes({reinterpret_cast<const uint8_t*>(v.data()), v.size()}); }
  // A fixed-size plain structure (KVM's register sets), copied as it is in memory: only
  // for types whose layout is an ABI (x86-64 Linux), never for ember's own structures.
  template <typename T>
  void raw(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }

  const std::vector<uint8_t>& data() const { return out_; }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  template <typename T>
  void put(T v) {
    static_assert(std::is_unsigned_v<T>);
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

class StateReader {
 public:
  // `context` names what is being read ("snapshot section vcpu0") in every error.
  StateReader(std::span<const uint8_t> data, std::string context) : data_(data), context_(std::move(context)) {}

  uint8_t u8(const char* field) { return get<uint8_t>(field); }
  uint16_t u16(const char* field) { return get<uint16_t>(field); }
  uint32_t u32(const char* field) { return get<uint32_t>(field); }
  uint64_t u64(const char* field) { return get<uint64_t>(field); }
  bool boolean(const char* field) {
    uint8_t v = u8(field);
    if (v > 1) fail(context_, ": ", field, " is ", v, ", not a boolean (0 or 1)");
    return v == 1;
  }
  // Length-prefixed bytes of at most `max` (a bound on what a file can make ember allocate).
  std::vector<uint8_t> bytes(const char* field, size_t max) {
    uint32_t n = u32(field);
    if (n > max) fail(context_, ": ", field, " is ", n, " bytes, more than the ", max, " allowed");
    auto s = take(n, field);
    return {s.begin(), s.end()};
  }
  std::string text(const char* field, size_t max) {
    auto b = bytes(field, max);
    return {b.begin(), b.end()};
  }
  template <typename T>
  T raw(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, take(sizeof(T), field).data(), sizeof(T));
    return v;
  }
  // A value read that the reader's caller finds out of range: the same message shape.
  [[noreturn]] void invalid(const char* field, const std::string& why) const { fail(context_, ": ", field, ": ", why); }

  size_t remaining() const { return data_.size() - pos_; }
  // Everything must have been read: trailing bytes mean a different layout than expected.
  void expect_end() const {
    if (remaining() != 0) fail(context_, ": ", remaining(), " unexpected bytes at the end");
  }
  const std::string& context() const { return context_; }

 private:
  std::span<const uint8_t> take(size_t n, const char* field) {
    if (n > remaining()) fail(context_, ": truncated: ", field, " needs ", n, " bytes, ", remaining(), " left");
    auto s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  T get(const char* field) {
    auto s = take(sizeof(T), field);
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(s[i]) << (8 * i));
    return v;
  }

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  std::string context_;
};

}  // namespace ember::snapshot
