#include "vmm/acpi/aml.h"

#include <cctype>

#include "base/util/error.h"

namespace ember::aml {

namespace {

constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;

// Resource descriptor tags (6.4).
constexpr uint8_t kSmallIrqWithoutFlags = 0x22;  // tag 4, length 2
constexpr uint8_t kSmallIoPort = 0x47;           // tag 8, length 7
constexpr uint8_t kSmallEndTag = 0x79;           // tag 15, length 1
constexpr uint8_t kLargeMemory32Fixed = 0x86;
constexpr uint8_t kLargeExtendedInterrupt = 0x89;

template <typename T>
void append_le(Bytes& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

Bytes name_seg(std::string_view seg, std::string_view path) {
  if (seg.empty() || seg.size() > 4) fail("AML name '", path, "': segment '", seg, "' is not 1-4 characters");
  Bytes out;
  for (size_t i = 0; i < seg.size(); ++i) {
    char c = seg[i];
    bool ok = (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) fail("AML name '", path, "': '", c, "' is not allowed in segment '", seg, "'");
    out.push_back(static_cast<uint8_t>(c));
  }
  while (out.size() < 4) out.push_back('_');
  return out;
}

// Op, PkgLength, then the content.
Bytes with_pkg_length(Bytes op, const Bytes& content) {
  append(op, pkg_length(content.size()));
  append(op, content);
  return op;
}

}  // namespace

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

Bytes pkg_length(size_t content_length) {
  // One byte holds up to 63 in all; with N more bytes, 4 + 8N bits (the lead byte's low nibble).
  if (content_length + 1 < 0x40) return {static_cast<uint8_t>(content_length + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    size_t total = content_length + 1 + extra;
    if (total < (size_t{1} << (4 + 8 * extra))) {
      Bytes out{static_cast<uint8_t>((extra << 6) | (total & 0x0f))};
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  fail("AML object of ", content_length, " bytes is larger than a PkgLength can describe");
}

Bytes name_string(std::string_view path) {
  Bytes out;
  std::string_view rest = path;
  if (rest.starts_with('\\')) {
    out.push_back(kRootChar);
    rest.remove_prefix(1);
  }
  std::vector<Bytes> segs;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    segs.push_back(name_seg(rest.substr(0, dot), path));
    rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
  }
  if (segs.empty()) fail("AML name '", path, "' has no name segment");
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    if (segs.size() > 255) fail("AML name '", path, "' has too many segments");
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (const Bytes& s : segs) append(out, s);
  return out;
}

Bytes integer(uint64_t value) {
  Bytes out;
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, static_cast<uint8_t>(value));
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, static_cast<uint16_t>(value));
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, static_cast<uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value);
  }
  return out;
}

Bytes string(std::string_view text) {
  Bytes out{kStringPrefix};
  for (char c : text) {
    if (c == '\0' || static_cast<unsigned char>(c) > 0x7f) fail("AML string '", text, "' is not printable ASCII");
    out.push_back(static_cast<uint8_t>(c));
  }
  out.push_back(0);
  return out;
}

Bytes eisa_id(std::string_view id) {
  // Three upper-case letters (5 bits each, 'A' = 1) and four hex digits, stored big-endian.
  bool ok = id.size() == 7;
  for (size_t i = 0; ok && i < 3; ++i) ok = id[i] >= 'A' && id[i] <= 'Z';
  for (size_t i = 3; ok && i < 7; ++i) ok = std::isxdigit(static_cast<unsigned char>(id[i])) && !std::islower(id[i]);
  if (!ok) fail("EISA id '", id, "' is not three upper-case letters and four hex digits");
  uint32_t v = static_cast<uint32_t>(id[0] - 'A' + 1) << 26 | static_cast<uint32_t>(id[1] - 'A' + 1) << 21 |
               static_cast<uint32_t>(id[2] - 'A' + 1) << 16 | std::stoul(std::string(id.substr(3)), nullptr, 16);
  uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
  Bytes out{kDWordPrefix};
  append_le(out, swapped);
  return out;
}

Bytes name(std::string_view path, const Bytes& object) {
  Bytes out{kNameOp};
  append(out, name_string(path));
  append(out, object);
  return out;
}

Bytes scope(std::string_view path, const Bytes& body) {
  Bytes content = name_string(path);
  append(content, body);
  return with_pkg_length({kScopeOp}, content);
}

Bytes device(std::string_view path, const Bytes& body) {
  Bytes content = name_string(path);
  append(content, body);
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, content);
}

Bytes package(const std::vector<Bytes>& elements) {
  if (elements.size() > 255) fail("AML package of ", elements.size(), " elements (at most 255)");
  Bytes content{static_cast<uint8_t>(elements.size())};
  for (const Bytes& e : elements) append(content, e);
  return with_pkg_length({kPackageOp}, content);
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
  Bytes data;
  for (const Bytes& d : descriptors) append(data, d);
  // End tag; a zero checksum means "treat as valid" (6.4.2.9).
  data.push_back(kSmallEndTag);
  data.push_back(0);
  Bytes content = integer(data.size());
  append(content, data);
  return with_pkg_length({kBufferOp}, content);
}

Bytes memory32_fixed(uint32_t base, uint32_t length, bool writable) {
  Bytes out{kLargeMemory32Fixed};
  append_le(out, uint16_t{9});
  out.push_back(writable ? 1 : 0);
  append_le(out, base);
  append_le(out, length);
  return out;
}

Bytes interrupt(uint32_t gsi, bool edge, bool active_high) {
  Bytes out{kLargeExtendedInterrupt};
  append_le(out, uint16_t{6});
  // Bit 0 consumer, bit 1 edge-triggered, bit 2 active low; exclusive, not wake capable.
  out.push_back(static_cast<uint8_t>(1 | (edge ? 2 : 0) | (active_high ? 0 : 4)));
  out.push_back(1);  // one interrupt in the table
  append_le(out, gsi);
  return out;
}

Bytes io_port(uint16_t base, uint8_t length) {
  Bytes out{kSmallIoPort, 1};  // 16-bit address decode
  append_le(out, base);        // minimum and maximum base: a fixed range
  append_le(out, base);
  out.push_back(1);            // alignment
  out.push_back(length);
  return out;
}

Bytes irq_no_flags(uint8_t irq) {
  if (irq > 15) fail("IRQ descriptor for IRQ ", int{irq}, ": only ISA IRQs 0-15 fit");
  Bytes out{kSmallIrqWithoutFlags};
  append_le(out, static_cast<uint16_t>(1u << irq));
  return out;
}

}  // namespace ember::aml
