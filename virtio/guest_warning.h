// Logging what a guest did wrong, rate-limited so a hostile guest cannot flood
// ember's log: at most a burst per second, then a count of what was dropped.
#pragma once

#include <string>

namespace ember::virtio {

// "guest: <message>": something the guest did wrong.
void warn_guest(const std::string& message);
// Any warning that a guest can trigger repeatedly (e.g. I/O errors of its drive).
void warn_limited(const std::string& message);

}  // namespace ember::virtio
