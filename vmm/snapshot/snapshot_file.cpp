#include "vmm/snapshot/snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include "base/util/error.h"
#include "base/util/file_io.h"
#include "base/util/replacing_file.h"

#ifndef EMBER_VERSION
#error "EMBER_VERSION must name the project version (vmm/CMakeLists.txt)"
#endif

namespace ember::snapshot {

namespace {

constexpr std::array<uint8_t, 8> kMagic = {'E', 'M', 'B', 'E', 'R', 'S', 'N', 'P'};
constexpr size_t kFixedHeader = 20;  // magic, u32 format version, u64 file length
constexpr size_t kChecksumSize = 8;
constexpr size_t kMaxTextLength = 64;  // architecture and ember version

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

constexpr std::array<uint64_t, 256> make_crc_table() {
  constexpr uint64_t kPoly = 0xc96c5795d7870f42ull;  // ECMA-182, bit-reversed
  std::array<uint64_t, 256> table{};
  for (uint64_t i = 0; i < 256; ++i) {
    uint64_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

void check_section_name(std::string_view name, const std::string& where) {
  if (name.empty()) fail(where, ": a section has an empty name");
  if (name.size() > kMaxSectionNameLength) {
    fail(where, ": section name '", name.substr(0, kMaxSectionNameLength), "...' is ", name.size(),
         " bytes, more than the ", kMaxSectionNameLength, " allowed");
  }
}

// Magic, completeness and checksum: what every format version keeps (README.md).
void check_envelope(std::span<const uint8_t> bytes, const std::string& path) {
  const std::string file = cat("snapshot file '", path, "'");
  size_t magic_seen = std::min(bytes.size(), kMagic.size());
  if (!std::equal(bytes.begin(), bytes.begin() + magic_seen, kMagic.begin())) {
    fail(file, " is not an ember snapshot (its first bytes are not the snapshot magic)");
  }
  if (bytes.size() < kFixedHeader + kChecksumSize) {
    fail(file, " is truncated: ", bytes.size(), " bytes, shorter than the snapshot header");
  }
  uint64_t length = load_le64(bytes.data() + 12);
  if (length > bytes.size()) fail(file, " is truncated: ", bytes.size(), " of its ", length, " bytes");
  if (length < bytes.size()) {
    fail(file, " is corrupted: ", bytes.size(), " bytes where its header says ", length);
  }
  uint64_t stored = load_le64(bytes.data() + length - kChecksumSize);
  uint64_t computed = crc64(bytes.first(length - kChecksumSize));
  if (stored != computed) {
    fail(file, " is corrupted: checksum ", hex(computed), " does not match the stored ", hex(stored));
  }
}

}  // namespace

uint64_t crc64(std::span<const uint8_t> data, uint64_t crc) {
  crc = ~crc;
  for (uint8_t b : data) crc = kCrcTable[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string_view ember_version() { return EMBER_VERSION; }

void SnapshotContents::add(std::string name, std::vector<uint8_t> data) {
  check_section_name(name, "snapshot");
  if (contains(name)) fail("snapshot: section '", name, "' added twice");
  if (sections_.size() >= kMaxSections) fail("snapshot: more than ", kMaxSections, " sections");
  sections_.push_back({std::move(name), std::move(data)});
}

bool SnapshotContents::contains(std::string_view name) const {
  for (const Section& s : sections_) {
    if (s.name == name) return true;
  }
  return false;
}

StateReader SnapshotContents::section(std::string_view name) const {
  for (const Section& s : sections_) {
    if (s.name == name) return StateReader(s.data, cat("snapshot ", source_, ": section ", name));
  }
  fail("snapshot ", source_, " has no section '", name, "'");
}

std::vector<uint8_t> encode_snapshot(const SnapshotContents& contents, std::string_view architecture) {
  StateWriter w;
  for (uint8_t b : kMagic) w.u8(b);
  w.u32(kFormatVersion);
  w.u64(0);  // file length, filled in below
  w.text(architecture);
  w.text(ember_version());
  w.u32(static_cast<uint32_t>(contents.sections().size()));
  for (const Section& s : contents.sections()) {
    w.text(s.name);
    w.bytes(s.data);
  }
  std::vector<uint8_t> out = w.take();
  uint64_t length = out.size() + kChecksumSize;
  for (int i = 0; i < 8; ++i) out[12 + i] = static_cast<uint8_t>(length >> (8 * i));
  uint64_t crc = crc64(out);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  return out;
}

SnapshotContents decode_snapshot(std::span<const uint8_t> bytes, const std::string& path) {
  check_envelope(bytes, path);
  SnapshotContents contents;
  contents.source_ = cat("'", path, "'");
  StateReader r(bytes.subspan(kMagic.size(), bytes.size() - kMagic.size() - kChecksumSize),
                cat("snapshot file '", path, "'"));
  uint32_t version = r.u32("format version");
  if (version != kFormatVersion) {
    r.invalid("format version", cat(version, " is not supported: this ember (", ember_version(),
                                     ") reads format version ", kFormatVersion, " only"));
  }
  r.u64("file length");  // checked with the envelope
  std::string arch = r.text("architecture", kMaxTextLength);
  if (arch != kArchitecture) {
    r.invalid("architecture", cat("the snapshot is of a '", arch, "' machine, this ember runs ", kArchitecture));
  }
  contents.ember_version_ = r.text("ember version", kMaxTextLength);
  uint32_t count = r.u32("section count");
  if (count > kMaxSections) r.invalid("section count", cat(count, " is more than the ", kMaxSections, " allowed"));
  for (uint32_t i = 0; i < count; ++i) {
    std::string name = r.text("section name", kMaxSectionNameLength);
    check_section_name(name, r.context());
    if (contents.contains(name)) r.invalid("section name", cat("section '", name, "' appears twice"));
    std::vector<uint8_t> data = r.bytes("section data", kMaxFileSize);
    contents.sections_.push_back({std::move(name), std::move(data)});
  }
  r.expect_end();
  return contents;
}

void write_snapshot_file(const std::string& path, const SnapshotContents& contents) {
  std::vector<uint8_t> bytes = encode_snapshot(contents);
  if (bytes.size() > kMaxFileSize) {
    fail("cannot write snapshot file '", path, "': ", bytes.size(), " bytes, more than the ", kMaxFileSize,
         " a snapshot file may hold");
  }
  ReplacingFile file(path, "snapshot file");
  file.write_at(bytes.data(), bytes.size(), 0);
  file.commit();
}

SnapshotContents read_snapshot_file(const std::string& path) {
  struct stat st{};
  UniqueFd fd = open_data_file(path, O_RDONLY, st);
  if (!fd.valid()) fail("cannot open snapshot file '", path, "': ", errno_text());
  if (!S_ISREG(st.st_mode)) fail("snapshot file '", path, "' is ", file_type_name(st.st_mode), ", not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxFileSize) {
    fail("snapshot file '", path, "' is ", st.st_size, " bytes, more than the ", kMaxFileSize,
         " a snapshot file may hold (guest memory is a file of its own)");
  }
  // Reads one byte past the bound: a file that grew since fstat() is refused too.
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::pread(fd.get(), bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read snapshot file '", path, "': ", errno_text());
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kMaxFileSize) fail("snapshot file '", path, "' grew past ", kMaxFileSize, " bytes while being read");
  bytes.resize(got);
  return decode_snapshot(bytes, path);
}

}  // namespace ember::snapshot
