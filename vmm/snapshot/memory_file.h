// Guest memory in a snapshot: saved to the memory file (offset in the file == a region's
// host_offset, so one file of the memory's size), and restored from it either by mapping
// the file (the File backend) or through a page-fault handler process that serves the
// pages over userfaultfd (the Uffd backend, Firecracker's protocol).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/memory/guest_memory.h"
#include "base/util/unique_fd.h"

namespace ember::snapshot {

// One bit per 4 KiB page, bit i of word i/64 is the region's page i: KVM_GET_DIRTY_LOG's
// format, one bitmap per region of GuestMemory::regions(), in that order.
using DirtyBitmap = std::vector<uint64_t>;
constexpr uint64_t kDirtyPageSize = 4096;

struct MemorySaveStats {
  uint64_t bytes_written = 0;  // data written; the file's size is the memory's size
  uint64_t pages_written = 0;  // 4 KiB pages with data (all-zero pages become holes)
};

// Full save: every page that is not all zeros, into a sparse file of memory.size() bytes
// written beside `path` and renamed over it once on disk (a failed save leaves `path` as
// it was). Call on paused memory. Throws Error naming the file.
MemorySaveStats save_memory_full(const GuestMemory& memory, const std::string& path);

// Diff save: the pages `dirty` marks, each written as data (a page now all zeros too: it
// must overwrite what the base holds), into a new sparse file of memory.size() bytes that
// replaces `path` once on disk, like a full save. Holes everywhere else, so only a file
// system that keeps holes (ext4, xfs, btrfs, tmpfs) keeps a diff apart from its base.
// Throws Error naming the file, or when a bitmap is too short for its region.
MemorySaveStats save_memory_diff(const GuestMemory& memory, std::span<const DirtyBitmap> dirty,
                                 const std::string& path);

// Applies a diff onto its base, in place: every data range of `diff_path` (SEEK_DATA and
// SEEK_HOLE) is copied to the same offset of `base_path`, which must be a regular file of
// the same size; then the base file is what a full save at the diff's time would have
// written. Interrupted, the base is part old, part new: keep a copy if that matters.
// Throws Error naming the file.
MemorySaveStats rebase_memory_file(const std::string& base_path, const std::string& diff_path);

// File backend: the memory file mapped MAP_PRIVATE as guest memory. Pages load on first
// touch and are shared with every other VM restored from the file until written; writes
// never reach the file. `options.size_bytes` is the snapshot's memory size; the file must
// be a regular file of exactly that size. Prefault is honoured (populating for reading),
// but Prefault::Off is what keeps the sharing. Throws Error naming the file.
GuestMemory restore_memory_from_file(const std::string& path, GuestMemoryOptions options);

// Uffd backend: anonymous guest memory registered with a userfaultfd, whose fd and the
// regions (a JSON array of Firecracker's GuestRegionUffdMapping) are sent to the handler
// listening on `socket_path` in one message. Every first touch of a page then waits for
// the handler's UFFDIO_COPY. ember serves no faults itself. Prefault is ignored (off):
// populating would wait on the handler. Throws Error naming the socket and what failed.
struct UffdMemory {
  GuestMemory memory;
  UniqueFd uffd;    // ember's copy; the handler holds the one it received
  UniqueFd socket;  // kept open: the handler sees it close when ember ends
};
UffdMemory restore_memory_with_uffd(const std::string& socket_path, GuestMemoryOptions options);

// The message restore_memory_with_uffd sends (exposed for tests and the example handler).
std::string uffd_regions_json(const GuestMemory& memory);

}  // namespace ember::snapshot
