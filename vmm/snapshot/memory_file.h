// Guest memory in a snapshot: saved to the memory file (offset in the file == a region's
// host_offset, so one file of the memory's size), and restored from it either by mapping
// the file (the File backend) or through a page-fault handler process that serves the
// pages over userfaultfd (the Uffd backend, Firecracker's protocol).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/util/unique_fd.h"

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

// Diff save: only the pages `dirty` marks, written in place into `path` (created as a
// file of holes when missing, so a diff file alone is a Firecracker-style diff; when it is
// the previous snapshot's memory file it becomes this one's). A dirty page now all zeros
// becomes a hole. In place, so a failed diff save leaves the file partly updated: save
// the snapshot file last, over a base memory file one keeps a copy of if it matters. Never
// diff into a file other VMs are restored from (File backend): the pages they have not
// written yet come from that file and would change under them. A full save is safe there:
// it replaces the file, and existing mappings keep the old one.
// Throws Error when the file is not a regular file of memory.size() bytes or a bitmap is
// too short for its region.
MemorySaveStats save_memory_diff(const GuestMemory& memory, std::span<const DirtyBitmap> dirty,
                                 const std::string& path);

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
