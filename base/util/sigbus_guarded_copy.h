// A memcpy that survives SIGBUS. Reading a page of a mapped file that is past the file's
// end raises SIGBUS, as does writing a MAP_NORESERVE huge page when the pool is empty;
// either would kill ember (every VM of a fleet process) when someone truncates a kernel
// image while it is being loaded. This copy reports the fault instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ember {

struct GuardedCopyResult {
  enum class Fault { None, Source, Destination };
  Fault fault = Fault::None;
  uintptr_t address = 0;  // the faulting address, when fault != None
};

// Copies `len` bytes from `src` to `dst`; on SIGBUS in either range stops there (`dst`
// then holds part of the data) and says which side faulted. A SIGBUS anywhere else keeps
// its default action. Safe to use from several threads at once.
GuardedCopyResult sigbus_guarded_copy(void* dst, const void* src, size_t len);

}  // namespace ember
