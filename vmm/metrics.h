// Counters gathered for the metrics file (PUT /metrics, --metrics-path): groups
// of named counters, e.g. {"vcpu": {"exit_io": 12}, "block_rootfs": {"read_bytes": 4096}}.
// Plain data: whoever writes the file turns it into one JSON object per flush.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ember {

using MetricGroups = std::map<std::string, std::map<std::string, uint64_t>>;

}  // namespace ember
