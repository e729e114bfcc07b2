// libFuzzer target: the launcher's TOML file on arbitrary text. Bad input must
// come back as ember's Error naming the file and line; anything else escaping
// (a toml++ exception, std::out_of_range, a crash) is a finding.
#include <string>

#include "api/toml_config.h"
#include "base/util/error.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ember::fuzz::quiet_logs();
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ember::VmConfig config = ember::parse_toml_config(text, "fuzz.toml", "/fuzz");
    (void)config;
  } catch (const ember::Error& e) {
    if (std::string(e.what()).rfind("fuzz.toml", 0) != 0) std::abort();  // messages name the file
  }
  return 0;
}
