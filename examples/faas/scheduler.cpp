#include "examples/faas/scheduler.h"

namespace ember::faas {

void Scheduler::add_function(const std::string& name, PoolLimits limits) {
  std::lock_guard lock(mu_);
  Function& f = functions_[name];
  if (f.serial == 0) f.serial = next_serial_++;
  f.limits = limits;
  changed_.notify_all();
}

std::vector<VmId> Scheduler::remove_function(const std::string& name) {
  std::lock_guard lock(mu_);
  std::vector<VmId> out;
  auto it = functions_.find(name);
  if (it == functions_.end()) return out;
  for (const Idle& i : it->second.idle) out.push_back(i.vm);
  host_alive_ -= it->second.idle.size();
  functions_.erase(it);
  changed_.notify_all();
  return out;
}

bool Scheduler::has_function(const std::string& name) const {
  std::lock_guard lock(mu_);
  return functions_.count(name) != 0;
}

bool Scheduler::make_room(const Function& f, Grant& g) {
  if (f.alive >= f.limits.max_vms) return false;
  if (host_alive_ < host_max_) return true;
  // At the host cap: the idle VM unused longest, of any function, makes room.
  Function* victim = nullptr;
  for (auto& [name, other] : functions_) {
    if (!other.idle.empty() && (!victim || other.idle.front().since < victim->idle.front().since)) victim = &other;
  }
  if (!victim) return false;
  g.evicted.push_back(victim->idle.front().vm);
  victim->idle.erase(victim->idle.begin());
  victim->alive--;
  host_alive_--;
  return true;
}

bool Scheduler::try_grant(Function& f, Grant& g) {
  if (!f.idle.empty()) {
    g.kind = Grant::Warm;
    g.vm = f.idle.back().vm;
    f.idle.pop_back();
    return true;
  }
  if (f.snapshot == Snapshot::Building) return false;  // restores wait for the snapshot
  if (!make_room(f, g)) return false;
  g.kind = f.snapshot == Snapshot::None ? Grant::ColdBoot : Grant::Restore;
  if (g.kind == Grant::ColdBoot) f.snapshot = Snapshot::Building;
  f.alive++;
  host_alive_++;
  return true;
}

Grant Scheduler::acquire(const std::string& name, Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  Grant g{Grant::Gone};
  auto it = functions_.find(name);
  if (closed_ || it == functions_.end()) return g;
  if (try_grant(it->second, g)) return g;
  if (it->second.waiting >= it->second.limits.max_queue) return Grant{Grant::QueueFull};
  it->second.waiting++;
  const uint64_t serial = it->second.serial;
  for (;;) {
    bool timed_out = changed_.wait_until(lock, deadline) == std::cv_status::timeout;
    it = functions_.find(name);
    if (closed_ || it == functions_.end() || it->second.serial != serial) return Grant{Grant::Gone, 0, std::move(g.evicted)};
    if (try_grant(it->second, g)) break;
    if (timed_out) {
      g.kind = Grant::TimedOut;
      break;
    }
  }
  it->second.waiting--;
  return g;
}

void Scheduler::snapshot_done(const std::string& name, bool ok) {
  std::lock_guard lock(mu_);
  auto it = functions_.find(name);
  if (it != functions_.end()) it->second.snapshot = ok ? Snapshot::Ready : Snapshot::None;
  changed_.notify_all();
}

bool Scheduler::release(const std::string& name, VmId vm, bool reusable, Clock::time_point now) {
  std::lock_guard lock(mu_);
  changed_.notify_all();
  auto it = functions_.find(name);
  if (reusable && !closed_ && it != functions_.end()) {
    it->second.idle.push_back({vm, now});
    return true;
  }
  if (it != functions_.end()) it->second.alive--;
  host_alive_--;
  return false;
}

void Scheduler::discard(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = functions_.find(name);
  if (it != functions_.end()) it->second.alive--;
  host_alive_--;
  changed_.notify_all();
}

std::vector<Expired> Scheduler::expire(Clock::time_point now) {
  std::lock_guard lock(mu_);
  std::vector<Expired> out;
  for (auto& [name, f] : functions_) {
    for (auto i = f.idle.begin(); i != f.idle.end();) {
      if (now - i->since < f.limits.keep_alive) {
        ++i;
        continue;
      }
      out.push_back({name, i->vm});
      i = f.idle.erase(i);
      f.alive--;
      host_alive_--;
    }
  }
  if (!out.empty()) changed_.notify_all();
  return out;
}

std::vector<VmId> Scheduler::shutdown() {
  std::lock_guard lock(mu_);
  closed_ = true;
  std::vector<VmId> out;
  for (auto& [name, f] : functions_) {
    for (const Idle& i : f.idle) out.push_back(i.vm);
    host_alive_ -= f.idle.size();
    f.alive -= f.idle.size();
    f.idle.clear();
  }
  changed_.notify_all();
  return out;
}

PoolCounts Scheduler::counts(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end()) return {};
  return {it->second.alive, it->second.idle.size(), it->second.waiting};
}

PoolCounts Scheduler::host_counts() const {
  std::lock_guard lock(mu_);
  PoolCounts c{host_alive_, 0, 0};
  for (const auto& [name, f] : functions_) {
    c.idle += f.idle.size();
    c.waiting += f.waiting;
  }
  return c;
}

}  // namespace ember::faas
