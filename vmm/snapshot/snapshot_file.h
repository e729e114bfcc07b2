// The snapshot file: a versioned, checksummed container of named byte sections (machine,
// vCPUs, devices) that ember's state writers fill. Guest memory is a separate file
// (memory_file.h). Layout and compatibility promise: vmm/snapshot/README.md.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/state_stream.h"

namespace ember::snapshot {

constexpr uint32_t kFormatVersion = 1;
constexpr std::string_view kArchitecture = "x86_64";
// Device and vCPU state is small; guest memory never goes in here.
constexpr uint64_t kMaxFileSize = 64ull << 20;
constexpr uint32_t kMaxSections = 1024;
constexpr uint32_t kMaxSectionNameLength = 64;

// CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones), the file's checksum.
// Pass a previous result as `crc` to continue over more bytes.
uint64_t crc64(std::span<const uint8_t> data, uint64_t crc = 0);

struct Section {
  std::string name;
  std::vector<uint8_t> data;
};

// What a snapshot file holds. Readers returned by section() point into this object: keep it
// alive while they are used.
class SnapshotContents {
 public:
  // Appends a section; throws Error on a duplicate or empty name, a name longer than
  // kMaxSectionNameLength, or more than kMaxSections sections.
  void add(std::string name, std::vector<uint8_t> data);
  bool contains(std::string_view name) const;
  // The section as a reader whose errors say "snapshot FILE: section NAME"; throws Error
  // naming the file and the section when there is none of that name.
  StateReader section(std::string_view name) const;
  const std::vector<Section>& sections() const { return sections_; }

  // Set by read_snapshot_file: the file read and the version of the ember that wrote it.
  const std::string& source() const { return source_; }
  const std::string& ember_version() const { return ember_version_; }

 private:
  friend SnapshotContents decode_snapshot(std::span<const uint8_t>, const std::string&);
  std::vector<Section> sections_;
  std::string source_ = "(not read from a file)";
  std::string ember_version_;
};

// The ember version written into snapshots (the project version, as `ember --version`).
std::string_view ember_version();

// The file's bytes; `architecture` is a parameter for tests only.
std::vector<uint8_t> encode_snapshot(const SnapshotContents& contents,
                                     std::string_view architecture = kArchitecture);
// Parses and checks bytes read from `path` (named in every error).
SnapshotContents decode_snapshot(std::span<const uint8_t> bytes, const std::string& path);

// Writes the whole file beside `path` and renames it over `path` once it is on disk: a
// failed save leaves no partial file and whatever `path` held before. Throws Error.
void write_snapshot_file(const std::string& path, const SnapshotContents& contents);
// Reads and checks a snapshot file: a regular file of at most kMaxFileSize, the right magic,
// complete, its checksum matching, format version kFormatVersion, architecture x86_64.
// Throws Error naming the file and what does not match.
SnapshotContents read_snapshot_file(const std::string& path);

}  // namespace ember::snapshot
