// Byte helpers shared by the firmware tables ember writes (MP table, ACPI).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ember::x86 {

// The byte that makes `data` sum to zero (MP and ACPI table checksums).
inline uint8_t table_checksum(const uint8_t* data, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return static_cast<uint8_t>(-sum);
}

// Appends the bytes of a packed, trivially copyable struct.
template <typename T>
void append_struct(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace ember::x86
