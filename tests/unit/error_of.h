// The message of the Error a call throws, or "(no error)": for tests of error messages.
#pragma once

#include <functional>
#include <string>

#include "base/util/error.h"

namespace ember::test {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace ember::test
