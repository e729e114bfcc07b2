// Counters gathered for the metrics file (PUT /metrics, --metrics-path): groups
// of named counters, e.g. {"vcpu": {"exit_io": 12}, "block_rootfs": {"read_bytes": 4096}}.
// Plain data: whoever writes the file turns it into one JSON object per flush.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ember {

using MetricGroups = std::map<std::string, std::map<std::string, uint64_t>>;

// Firecracker's aggregate groups beside the per-device ones: "block" sums every "block_<id>"
// group counter by counter, "net" every "net_<id>" (tools such as Kata Containers' Firecracker
// driver read only these).
inline void add_device_totals(MetricGroups& groups) {
  std::map<std::string, uint64_t> block, net;
  for (const auto& [group, counters] : groups) {
    std::map<std::string, uint64_t>* total = group.starts_with("block_") ? &block
                                             : group.starts_with("net_") ? &net
                                                                         : nullptr;
    if (!total) continue;
    for (const auto& [name, value] : counters) (*total)[name] += value;
  }
  if (!block.empty()) groups["block"] = std::move(block);
  if (!net.empty()) groups["net"] = std::move(net);
}

}  // namespace ember
