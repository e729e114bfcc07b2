// ember's std::terminate handler. It replaces libstdc++'s verbose handler, whose only extra
// is demangling the exception type: that demangler is ~160 KiB of code ember would
// otherwise carry (and partly keep resident) for a path that must never run.
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <string_view>

#include "base/util/file_io.h"

namespace {
void say(std::string_view text) { ember::write_all(STDERR_FILENO, text); }  // best effort on the way down
}  // namespace

namespace __gnu_cxx {
// Same name as libstdc++'s default handler, so the linker takes this one instead.
void __verbose_terminate_handler() {
  say("ember: fatal: std::terminate called");
  if (std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::exception& e) {
      say(" after an uncaught exception: ");
      say(e.what());
    } catch (...) {
      say(" after an uncaught exception of an unknown type");
    }
  }
  say("\n");
  std::abort();
}
}  // namespace __gnu_cxx
