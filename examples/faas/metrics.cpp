#include "examples/faas/metrics.h"

#include "base/util/error.h"

namespace ember::faas {

namespace {

std::string number(double v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", v);
  return std::string(buf, n);
}

void line(std::string& out, const std::string& name, const std::string& labels, const std::string& value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " " + value + "\n";
}

void counter(std::string& out, const char* name, const char* help, uint64_t v) {
  out += cat("# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n", name, " ", v, "\n");
}

}  // namespace

void Histogram::observe(double ms) {
  std::lock_guard lock(mu_);
  size_t i = 0;
  while (i < kLatencyBucketsMs.size() && ms > kLatencyBucketsMs[i]) i++;
  counts_[i]++;
  sum_ += ms;
  count_++;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mu_);
  std::string sep = labels.empty() ? "" : labels + ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBucketsMs.size(); i++) {
    cumulative += counts_[i];
    line(out, name + "_bucket", sep + "le=\"" + number(kLatencyBucketsMs[i]) + "\"", std::to_string(cumulative));
  }
  line(out, name + "_bucket", sep + "le=\"+Inf\"", std::to_string(count_));
  line(out, name + "_sum", labels, number(sum_));
  line(out, name + "_count", labels, std::to_string(count_));
}

const char* vm_kind_name(VmKind k) {
  static const char* const names[] = {"cold", "restored", "warm"};
  return names[int(k)];
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  out += "# HELP faas_vms VMs alive, by state\n# TYPE faas_vms gauge\n";
  line(out, "faas_vms", "state=\"starting\"", std::to_string(g.starting));
  line(out, "faas_vms", "state=\"busy\"", std::to_string(g.busy));
  line(out, "faas_vms", "state=\"idle\"", std::to_string(g.idle));
  out += cat("# HELP faas_queued_invocations invocations waiting for a VM\n# TYPE faas_queued_invocations gauge\n",
             "faas_queued_invocations ", g.waiting, "\n");
  out += cat("# HELP faas_functions registered functions\n# TYPE faas_functions gauge\nfaas_functions ", g.functions, "\n");
  counter(out, "faas_cold_boots_total", "VMs cold-booted (one per function snapshot)", cold_boots);
  counter(out, "faas_snapshots_total", "Full snapshots taken", snapshots);
  counter(out, "faas_restores_total", "VMs restored from a function's snapshot", restores);
  counter(out, "faas_code_updates_total", "new code versions registered (PUT /functions/NAME/code)", code_updates);
  counter(out, "faas_code_swaps_total", "VMs whose code drive was swapped to a newer version", code_swaps);
  counter(out, "faas_vm_start_failures_total", "cold boots or restores that failed", start_failures);
  counter(out, "faas_vms_stopped_total", "VMs stopped (keep-alive over, discarded, deleted)", vms_stopped);
  counter(out, "faas_invocations_total", "invocations answered by a handler", invocations);
  counter(out, "faas_handler_timeouts_total", "handlers killed at their timeout", handler_timeouts);
  counter(out, "faas_agent_failures_total", "invocations whose agent did not answer", agent_failures);
  counter(out, "faas_rejected_total", "invocations refused with 429 (queue full)", rejected_queue_full);
  out += "# HELP faas_invoke_ms invocation latency by how the VM was obtained\n# TYPE faas_invoke_ms histogram\n";
  for (VmKind k : {VmKind::Cold, VmKind::Restored, VmKind::Warm}) {
    invoke_ms[int(k)].render(out, "faas_invoke_ms", cat("vm=\"", vm_kind_name(k), "\""));
  }
  out += "# HELP faas_cold_boot_ms cold boot to agent answering\n# TYPE faas_cold_boot_ms histogram\n";
  cold_boot_ms.render(out, "faas_cold_boot_ms", "");
  out += "# HELP faas_restore_ms snapshot restore to agent answering\n# TYPE faas_restore_ms histogram\n";
  restore_ms.render(out, "faas_restore_ms", "");
  out += "# HELP faas_queued_ms time waiting for a VM\n# TYPE faas_queued_ms histogram\n";
  queued_ms.render(out, "faas_queued_ms", "");
  return out;
}

}  // namespace ember::faas
