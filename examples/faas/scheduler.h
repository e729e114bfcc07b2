// Which VM serves an invocation: the bookkeeping of every function's VMs (idle, in use,
// starting), the per-function and per-host caps, the bounded wait queue and the keep-alive.
// It holds VM ids only; the runtime owns the VMs. Thread-safe; acquire() blocks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ember::faas {

using Clock = std::chrono::steady_clock;
using VmId = uint64_t;

struct PoolLimits {
  uint32_t max_vms = 4;
  uint32_t max_queue = 16;
  std::chrono::milliseconds keep_alive{60000};
};

struct Grant {
  enum Kind {
    Warm,       // reuse `vm`, idle until now
    ColdBoot,   // a slot is reserved: boot, snapshot, then call snapshot_done()
    Restore,    // a slot is reserved: restore the function's snapshot
    QueueFull,  // 429
    Gone,       // no such function (404), or it was deleted while waiting
    TimedOut,   // no VM became free before the deadline
  } kind;
  VmId vm = 0;
  // Idle VMs of other functions taken off the books to make room under the host cap; the
  // caller stops them.
  std::vector<VmId> evicted;
};

struct Expired {
  std::string function;
  VmId vm;
};

struct PoolCounts {
  size_t alive = 0;  // every VM counted against a cap: starting, busy, idle
  size_t idle = 0;
  size_t waiting = 0;
};

class Scheduler {
 public:
  explicit Scheduler(size_t host_max_vms) : host_max_(host_max_vms) {}

  // Registers or updates a function. Updating keeps its VMs and snapshot state: the caller
  // drops them first when the image changed (remove_function).
  void add_function(const std::string& name, PoolLimits limits);
  // Forgets a function; returns its idle VMs (to stop). Waiters get Gone; VMs in use are
  // stopped when released.
  std::vector<VmId> remove_function(const std::string& name);
  bool has_function(const std::string& name) const;

  Grant acquire(const std::string& name, Clock::time_point deadline);
  // The cold boot granted by acquire() made the snapshot (ok) or failed (the next invocation
  // cold-boots again).
  void snapshot_done(const std::string& name, bool ok);
  // A VM from acquire() (or the one a granted start made) is free again. Returns false when
  // the caller must stop it instead (not reusable, or the function is gone).
  bool release(const std::string& name, VmId vm, bool reusable, Clock::time_point now);
  // A reserved slot whose VM could not be started, or a VM that was discarded.
  void discard(const std::string& name);
  // Idle VMs past their function's keep-alive at `now`, taken off the books.
  std::vector<Expired> expire(Clock::time_point now);
  // Wakes every waiter with Gone; later acquires get Gone too.
  std::vector<VmId> shutdown();

  PoolCounts counts(const std::string& name) const;
  PoolCounts host_counts() const;

 private:
  enum class Snapshot { None, Building, Ready };
  struct Idle {
    VmId vm;
    Clock::time_point since;
  };
  struct Function {
    PoolLimits limits;
    Snapshot snapshot = Snapshot::None;
    std::vector<Idle> idle;  // most recently used last
    size_t alive = 0;
    size_t waiting = 0;
    uint64_t serial = 0;  // tells a function apart from a later one of the same name
  };
  // Under mu_: a grant without waiting, if one can be given now.
  bool try_grant(Function& f, Grant& g);
  bool make_room(const Function& f, Grant& g);

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Function> functions_;
  size_t host_max_;
  size_t host_alive_ = 0;
  uint64_t next_serial_ = 1;
  bool closed_ = false;
};

}  // namespace ember::faas
