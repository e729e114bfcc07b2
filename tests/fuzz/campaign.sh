#!/bin/bash
# A longer fuzzing campaign than CTest's 20 s: runs the fuzz binaries already built in
# build/tests/fuzz (builds nothing) on a copy of their seed corpora, and prints per target
# the executions, exec/s, libFuzzer's final coverage (cov: edges, ft: features) and whether
# it found something. Exits 1 on any finding; the reproducer and the log stay in the work
# folder.
#
#   tests/fuzz/campaign.sh [SECONDS_PER_TARGET]      (default 600)
#
# A work folder can be given again (FUZZ_WORK_DIR) to resume: each target goes on from its
# corpus there, its earlier runs' logs are kept, and the table counts their executions too
# (from the final stats, or the last status line of a run that was killed).
#
# Environment:
#   FUZZ_RUNS=N       stop a target once N executions were made in its work folder, over all
#                     runs (the seconds are then only a cap on this run)
#   FUZZ_JOBS=N       run N targets side by side (default 1; one per core at most)
#   FUZZ_TARGETS="mmio-transport vsock-packet"   only these, in this order (default: all)
#   FUZZ_BUILD_DIR, FUZZ_WORK_DIR   where the binaries are, where corpora and logs go
#
#   FUZZ_RUNS=10000000 FUZZ_JOBS=2 tests/fuzz/campaign.sh 36000
set -u
seconds=${1:-600}
runs=${FUZZ_RUNS:--1}
jobs=${FUZZ_JOBS:-1}
here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILD_DIR:-$here/../../build/tests/fuzz}
work=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ember-fuzz-campaign.XXXXXX")}
for number in "$seconds" "$jobs" "${runs#-}"; do
  case $number in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] (FUZZ_RUNS, FUZZ_JOBS: numbers)" >&2; exit 2 ;; esac
done
if [ -n "${FUZZ_TARGETS:-}" ]; then
  binaries=""
  for t in $FUZZ_TARGETS; do
    if [ ! -x "$build/$t-fuzzer" ]; then echo "no fuzz binary $build/$t-fuzzer" >&2; exit 2; fi
    binaries="$binaries $build/$t-fuzzer"
  done
else
  binaries=$(ls "$build"/*-fuzzer 2>/dev/null)
fi
if [ -z "$binaries" ]; then
  echo "no fuzz binaries in $build: build them first (ninja -C build <target>_fuzz)" >&2
  exit 2
fi

# The seed corpus of <name>-fuzzer: tests/fuzz/<name>-corpus, or <first word>-corpus
# (api-corpus for api-request-fuzzer); none means starting empty.
seeds_of() {
  for dir in "$here/$1-corpus" "$here/${1%%-*}-corpus"; do
    if [ -d "$dir" ]; then echo "$dir"; return; fi
  done
}

# Executions recorded in one libFuzzer log: its final count, or for a run that was killed the
# last status line's ("#123456 pulse ...").
executions_in() {
  local n
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n 1)
  [ -n "$n" ] || n=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$1" | tail -n 1)
  echo "${n:-0}"
}

# Runs one target and writes its table row to $work/<name>/row.
fuzz_one() {
  local bin=$1 name dir seeds rc execs before=0 left rate secs stats cov ft artifact result log old
  name=$(basename "$bin" -fuzzer)
  dir=$work/$name
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/logs"
  for old in "$dir"/logs/run-*.log; do
    [ -f "$old" ] && before=$((before + $(executions_in "$old")))
  done
  log=$dir/logs/run-$(ls "$dir/logs" | wc -l).log
  left=$runs
  if [ "$runs" -ge 0 ]; then
    left=$((runs - before))
    if [ "$left" -le 0 ]; then
      printf '%-16s %12s %12s %8s %8s %8s %8s  %s\n' "$name" 0 "$before" - - - - "ok (goal reached earlier)" >"$dir/row"
      return
    fi
  fi
  seeds=$(seeds_of "$name")
  if [ -n "$seeds" ]; then cp -R "$seeds"/. "$dir/corpus"; fi
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$bin" -max_total_time="$seconds" -runs="$left" -max_len=8192 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
    >"$log" 2>&1
  rc=$?
  execs=$(executions_in "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  stats=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1)
  cov=$(echo "$stats" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$stats" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  artifact=$(ls "$dir/artifacts" 2>/dev/null | head -n 1)
  if [ -n "$artifact" ]; then
    result="FINDING: $dir/artifacts/$artifact (logs: $dir/logs)"
  elif [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc, log: $log)"
  else
    result=ok
  fi
  printf '%-16s %12s %12s %8s %8s %8s %8s  %s\n' "$name" "$execs" "$((before + execs))" "${rate:-?}" "${secs:-?}" \
    "${cov:-?}" "${ft:-?}" "$result" >"$dir/row"
}

echo "work folder: $work (FUZZ_RUNS=$runs, FUZZ_JOBS=$jobs, at most ${seconds}s per target)"
running=0
for bin in $binaries; do
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  fuzz_one "$bin" &
  running=$((running + 1))
done
wait

findings=0
printf '%-16s %12s %12s %8s %8s %8s %8s  %s\n' target executions total exec/s seconds cov ft result
for bin in $binaries; do
  row=$work/$(basename "$bin" -fuzzer)/row
  if [ -f "$row" ]; then cat "$row"; else echo "$(basename "$bin" -fuzzer): no result"; fi
  grep -q ' ok' "$row" 2>/dev/null || findings=$((findings + 1))
done
echo "work folder: $work"
[ "$findings" -eq 0 ]
