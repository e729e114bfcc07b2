#!/bin/sh
# A longer fuzzing campaign than CTest's 20 s: runs every fuzz binary already built in
# build/tests/fuzz (builds nothing), one after the other, for SECONDS_PER_TARGET each
# (default 600) on a copy of its seed corpus, and prints per target the executions,
# exec/s, libFuzzer's final coverage (cov: edges, ft: features) and whether it found
# something. Exits 1 on any finding; the reproducer and the log stay in the work folder.
#
#   tests/fuzz/campaign.sh [SECONDS_PER_TARGET]
#   FUZZ_BUILD_DIR=other/build/tests/fuzz FUZZ_WORK_DIR=/tmp/fuzz tests/fuzz/campaign.sh 120
set -u
seconds=${1:-600}
here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILD_DIR:-$here/../../build/tests/fuzz}
work=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ember-fuzz-campaign.XXXXXX")}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
binaries=$(ls "$build"/*-fuzzer 2>/dev/null)
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

findings=0
printf '%-16s %12s %8s %8s %8s  %s\n' target executions exec/s cov ft result
for bin in $binaries; do
  name=$(basename "$bin" -fuzzer)
  dir=$work/$name
  mkdir -p "$dir/corpus" "$dir/artifacts"
  seeds=$(seeds_of "$name")
  if [ -n "$seeds" ]; then cp -R "$seeds"/. "$dir/corpus"; fi
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$bin" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n 1)
  stats=$(grep -E '^#[0-9]+.* cov: ' "$dir/log" | tail -n 1)
  cov=$(echo "$stats" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$stats" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  artifact=$(ls "$dir/artifacts" 2>/dev/null | head -n 1)
  if [ -n "$artifact" ]; then
    result="FINDING: $dir/artifacts/$artifact (log: $dir/log)"
    findings=$((findings + 1))
  elif [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc, log: $dir/log)"
    findings=$((findings + 1))
  else
    result=ok
  fi
  printf '%-16s %12s %8s %8s %8s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
echo "work folder: $work"
[ "$findings" -eq 0 ]
