// Random-access, bounds-checked reads of a kernel or initrd image, from a file
// (copied straight into guest memory) or from a buffer (tests, fuzzing).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/util/mapping.h"
#include "base/util/unique_fd.h"

namespace ember {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual uint64_t size() const = 0;
  virtual const std::string& name() const = 0;
  // Fills `dst` from `offset`. Throws Error naming the image if the range is past the end.
  virtual void read(uint64_t offset, std::span<uint8_t> dst) const = 0;

  template <typename T>
  T read_obj(uint64_t offset) const {
    T value;
    read(offset, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    return value;
  }
};

class FileImage;

// Large reads from one or more images into guest memory, gathered while the loaders
// parse headers and done together by two threads: populating and copying is CPU work
// the boot waits for (an ELF kernel and its initrd, 10 MB, took 70 ms in the emulated
// host on one thread). The images must outlive run().
class ReadBatch {
 public:
  // Cut into pieces at 2 MiB boundaries of the destination, so that one thread
  // populates each huge page.
  void add(const FileImage& image, uint64_t offset, std::span<uint8_t> dst);
  // Reads every piece; throws the first Error (naming the image) once both threads stop.
  void run();
  size_t pieces() const { return pieces_.size(); }

 private:
  struct Piece {
    const FileImage* image;
    uint64_t offset;
    std::span<uint8_t> dst;
  };
  std::vector<Piece> pieces_;
};

class FileImage : public ImageSource {
 public:
  // `what` says which image it is ("kernel", "initrd") for messages.
  static FileImage open(const std::string& path, const char* what);
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  // Small reads (headers) happen at once; with a batch set, reads of 64 KiB or more
  // are only checked against the file size here and done by the batch's run().
  void read(uint64_t offset, std::span<uint8_t> dst) const override;
  void defer_large_reads_to(ReadBatch* batch) { batch_ = batch; }

 private:
  friend class ReadBatch;
  void read_now(uint64_t offset, std::span<uint8_t> dst) const;
  // false when the file could not be mapped (read_now then uses pread); a file that shrank
  // under the mapping (SIGBUS) is an Error
  bool copy_mapped(uint64_t offset, std::span<uint8_t> dst) const;

  UniqueFd fd_;
  Mapping map_;  // the whole file, read-only
  uint64_t size_ = 0;
  std::string name_;
  ReadBatch* batch_ = nullptr;
};

class BufferImage : public ImageSource {
 public:
  BufferImage(std::vector<uint8_t> bytes, std::string name) : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> dst) const override;

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
};

}  // namespace ember
