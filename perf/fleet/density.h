// The fleet suite's density run (fleet_bench --density MAX): how many idle restored clones of
// one snapshot the host keeps alive at once, what each costs it, and what stops it going further.
#pragma once

#include <filesystem>

#include "perf/fleet/fleet.h"

namespace ember::perf::fleet {

// Restores clones of `s` (`PUT /snapshot/load`, File backend, one memory file for all) `o.batch`
// at a time and keeps them running idle, until `o.density` are alive or something stops it: a
// new clone that does not answer, an earlier one that exited or stopped answering, the host's
// MemAvailable under `o.density_floor_mib`. After each batch, with everything settled for a few
// seconds: the clones alive, the batch's time to ready, the echo time of the oldest clone, the
// host memory per clone (MemAvailable's drop since the start, over the clones alive) and its
// kernel part, the batch's RSS and PSS, and the CPU the idle clones use (cores). Writes
// density.md, density.json and density.dat into `o.out` after every batch (the emulated host
// may die on the way). Returns 0 if it reached `o.density`, 1 if it stopped earlier.
int run_density(const Options& o, const Snapshot& s, const std::filesystem::path& dir);

}  // namespace ember::perf::fleet
