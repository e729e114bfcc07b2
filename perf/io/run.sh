#!/usr/bin/env bash
# The I/O suite: ember against QEMU microvm with the same guest kernel, initramfs, vCPUs and
# memory, side by side in one run of each part, directly on a /dev/kvm that boots guests,
# otherwise inside the emulated host (compare the ratios, not the absolute figures):
#   block  virtio-blk (this script, below), four VMMs a round, interleaved: ember (its
#          default: io_uring, host page cache), ember with cache = "none" (O_DIRECT), QEMU
#          with aio=io_uring,cache=none, and QEMU's default (aio=threads, writeback). In each,
#          the guest's blk-bench (guest/tools/blk-bench.c, O_DIRECT in the guest) measures for
#          SECONDS each: sequential write and read in 1 MiB requests (MiB/s), and 4 KiB random
#          read and write (IOPS) with 1 and 32 requests in flight. The drive is a loop device
#          over a file in $TMPDIR when run as root (O_DIRECT works whatever holds the file),
#          else the file itself. Like is compared with like: ember's default with QEMU's (both
#          through the host's page cache), ember's cache = "none" with QEMU's
#          io_uring,cache=none (both O_DIRECT).
#   net    TCP each way over a tap (busybox nc, 1 KiB writes, and 64 KiB writes: tcp-bulk), and
#          64-byte UDP packets per second each way, QEMU with
#          vhost=off (perf/net/run.sh)
#   vsock  each way, QEMU with vhost-vsock-device (perf/vsock/run.sh)
# Writes results.md (every table), results.json (every measurement) and ratios.png (ember /
# QEMU per test, medians of the rounds' ratios) into the output folder; each part's own
# output goes to block/, net/ and vsock/ there.
# The block part also counts the guest's interrupts of the drive per request (a table of its own).
# --only PART measures that part again and keeps the others' results from an earlier run in DIR.
# --baseline BIN adds another ember binary (an earlier build) to the block part, in both cache
# modes, right after ember's runs in each round, and a table of ember / baseline: what a change bought.
#   usage: perf/io/run.sh [--out DIR] [--only block|net|vsock] [--rounds R (5)] [--seconds S (3)]
#                         [--disk-mib N (256)] [--net-mib N (16)] [--vsock-mib N (16)] [--baseline BIN]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$src/build/io-perf rounds=5 seconds=3 disk_mib=256 net_mib=16 vsock_mib=16 only= inner=0 guest= baseline=
usage() {
  echo "usage: $0 [--out DIR] [--only block|net|vsock] [--rounds R] [--seconds S] [--disk-mib N] [--net-mib N]" \
    "[--vsock-mib N] [--baseline BIN]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --disk-mib) disk_mib=$2; shift 2 ;;
    --net-mib) net_mib=$2; shift 2 ;;
    --vsock-mib) vsock_mib=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --inner) inner=1 guest=$2; shift 2 ;;
    *) usage ;;
  esac
done
for n in "$rounds" "$seconds" "$disk_mib" "$net_mib" "$vsock_mib"; do [[ $n =~ ^[1-9][0-9]*$ ]] || usage; done
[[ -z $only || $only == block || $only == net || $only == vsock ]] || usage
wants() { [[ -z $only || $only == "$1" ]]; }
if [[ -n $baseline ]]; then
  [[ -x $baseline ]] || { echo "perf/io: --baseline $baseline is not an executable" >&2; exit 2; }
  baseline=$(cd "$(dirname "$baseline")" && pwd)/$(basename "$baseline")
fi

. "$src/perf/suite.sh"
if [[ $inner == 0 ]]; then
  "$src/tools/setup.sh"
  guest=$("$src/guest/build.sh")
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  # --only measures one part again and keeps the others' results in the combined output.
  for p in block net vsock; do wants $p && rm -rf "${out:?}/$p"; done
  rm -f "$out"/ratios.dat "$out"/results.*
  failed=()
  if wants block; then
    mkdir -p "$out/block"
    measure "io perf (block)" "$out/block" "$src/perf/io/run.sh" --inner "$guest" --rounds "$rounds" \
      --seconds "$seconds" --disk-mib "$disk_mib" ${baseline:+--baseline "$baseline"} || failed+=(block)
  fi
  if wants net; then
    "$src/perf/net/run.sh" --out "$out/net" --mib "$net_mib" --rounds "$rounds" >/dev/null || failed+=(net)
  fi
  if wants vsock; then
    "$src/perf/vsock/run.sh" --out "$out/vsock" --bytes $((vsock_mib << 20)) --rounds "$rounds" >/dev/null ||
      failed+=(vsock)
  fi
  # One table, one JSON document, one chart.
  part() { [[ -s $out/$1/$2 ]] && cat "$out/$1/$2" || echo "${3:-}"; }
  {
    echo "# I/O: ember / QEMU microvm, $(date -u +%F)"
    printf '\n## virtio-blk\n\n%s\n' "$(part block results.md "(no results in $out/block)")"
    printf '\n## virtio-net (QEMU vhost=off)\n\n%s\n' "$(part net results.md "(no results in $out/net)")"
    printf '\n## vsock (QEMU vhost-vsock)\n\n%s\n' "$(part vsock results.md "(no results in $out/vsock)")"
  } >"$out/results.md"
  printf '{"block": %s,\n "net": %s,\n "vsock": %s}\n' "$(part block results.json null)" "$(part net results.json null)" \
    "$(part vsock results.json null)" >"$out/results.json"
  {
    part block ratios.dat
    # net: "| host -> guest (RX), ... | e | q | ratio | v | ratio |" (the other tables have fewer
    # columns); vsock: "ember / QEMU median throughput: r" per direction.
    part net results.md | awk -F'|' 'NF != 8 { next } /UDP guest -> host/ { print "\"net UDP TX\"", $5, 3; next }
      /UDP host -> guest/ { print "\"net UDP RX\"", $5, 3; next }
      /guest -> host.*64 KiB/ { print "\"net TX\"", $5, 3; next } /host -> guest.*64 KiB/ { print "\"net RX\"", $5, 3; next }
      /guest -> host.*nc/ { print "\"net TX nc\"", $5, 3 } /host -> guest.*nc/ { print "\"net RX nc\"", $5, 3 }'
    part vsock results.md | awk '/^guest -> host/ { d = "to host" } /^host -> guest/ { d = "to guest" }
      /^ember \/ QEMU median throughput:/ { printf "\"vsock %s\" %.2f 4\n", d, $NF }'
  } | awk '$(NF-1) + 0 > 0' >"$out/ratios.dat"
  bar_chart "$out/ratios.png" "I/O, ember / QEMU microvm (medians), $(date -u +%F)" "ember / QEMU (1 = as fast)" \
    "set termoption noenhanced; set yrange [0:*]; set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2" \
    "$out/ratios.dat" "%.2f"
  cat "$out/results.md"
  ((${#failed[@]} == 0)) || { echo "perf/io: failed: ${failed[*]}" >&2; exit 1; }
  exit 0
fi

# --- the measurement: directly or inside the emulated host -------------------------------
command -v qemu-system-x86_64 >/dev/null || { echo "perf/io: qemu-system-x86_64 is not on PATH" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ember-io-perf.XXXXXX")
loop=
cleanup() {
  [[ -n $loop ]] && losetup -d "$loop" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
head -c $((disk_mib << 20)) /dev/zero >"$work/disk.img"  # allocated, not sparse: no first-touch cost
disk=$work/disk.img
if [[ $(id -u) == 0 ]] && loop=$(losetup --find --show "$disk" 2>/dev/null); then
  disk=$loop
fi

tests=("seqwrite 1" "seqread 1" "randread 1" "randread 32" "randwrite 1" "randwrite 32")
# Around each test the drive's interrupt count (/proc/interrupts, the line naming virtio0).
irq="awk '/virtio0/ { print \$2 }' /proc/interrupts"
script="for t in $(printf "'%s' " "${tests[@]}"); do set -- \$t; a=\$($irq); blk-bench /dev/vda \$1 $seconds \$2 || echo BLKBENCH_FAILED \$t; echo BLKIRQ test=\$1 depth=\$2 irqs=\$((\$($irq) - a)); done"
append="console=ttyS0 reboot=k panic=1 pci=off quiet ember_test=$(printf '%s' "$script" | base64 -w0)"
vmms=(ember ember_cache_none qemu_io_uring_cache_none qemu_default)
[[ -n $baseline ]] && vmms=(ember ember_baseline ember_cache_none ember_baseline_cache_none qemu_io_uring_cache_none
  qemu_default)

# A VMM's run takes a minute or two in the emulated host; one still running after 5 minutes and
# twice its tests' time has hung (QEMU's default did, about one run in five, in 2026-12 runs)
# and is cut off, its round reported short, rather than costing the suite 15 minutes.
vmm_timeout=$((300 + 12 * seconds))
run_one() {  # run_one VMM LOG
  local qemu_drive=(-drive "file=$disk,if=none,id=d0,format=raw")
  case $1 in
    ember*)
      local spec=id=data,path=$disk bin=$src/build/ember
      [[ $1 == *_cache_none ]] && spec+=,cache=none
      [[ $1 == ember_baseline* ]] && bin=$baseline
      timeout "$vmm_timeout" "$bin" --kernel "$guest/bzImage" --initrd "$guest/initramfs.cpio.gz" --vcpus 1 \
        --mem-mib 256 --cmdline "$append" --drive "$spec" >"$2" 2>&1 </dev/null || true ;;
    qemu_*)
      [[ $1 == qemu_io_uring_cache_none ]] && qemu_drive[1]+=,aio=io_uring,cache=none
      qemu_microvm_argv 256 "$guest" "$append"
      timeout "$vmm_timeout" "${qemu_argv[@]}" "${qemu_drive[@]}" -device virtio-blk-device,drive=d0 >"$2" 2>&1 </dev/null || true ;;
  esac
}

# Results: one line "VMM TEST DEPTH VALUE ROUND" per measurement (MiB/s for seq*, IOPS for rand*);
# interrupts per request in "VMM TEST DEPTH IRQS_PER_REQUEST ROUND" lines of their own.
: >"$work/values"
: >"$work/irqs"
for r in $(seq 1 "$rounds"); do
  for vmm in "${vmms[@]}"; do
    log=$out/$vmm-$r.log
    run_one "$vmm" "$log"
    lines=$(tr -d '\r' <"$log" | grep '^BLKBENCH test=' || true)
    if [[ $(grep -c . <<<"$lines") != "${#tests[@]}" ]]; then
      echo "perf/io: $vmm round $r: $(grep -c . <<<"$lines") of ${#tests[@]} tests reported (see $log)" >&2
    fi
    sed -n 's/^BLKBENCH test=\([a-z]*\) depth=\([0-9]*\) ops=\([0-9]*\) bytes=\([0-9]*\) usec=\([0-9]*\)$/\1 \2 \3 \4 \5/p' \
      <<<"$lines" | while read -r test depth ops bytes usec; do
      if [[ $test == seq* ]]; then
        value=$(awk -v b="$bytes" -v u="$usec" 'BEGIN { printf "%.1f", b / 1048576 / (u / 1e6) }')
      else
        value=$(awk -v o="$ops" -v u="$usec" 'BEGIN { printf "%.0f", o / (u / 1e6) }')
      fi
      echo "$vmm $test $depth $value $r" >>"$work/values"
      irqs=$(sed -n "s/^BLKIRQ test=$test depth=$depth irqs=\([0-9]*\)$/\1/p" <<<"$(tr -d '\r' <"$log")" | head -1)
      if [[ -n $irqs ]] && ((ops > 0)); then
        echo "$vmm $test $depth $(awk -v i="$irqs" -v o="$ops" 'BEGIN { printf "%.3f", i / o }') $r" >>"$work/irqs"
      fi
      echo "perf/io: round $r $vmm $test depth $depth: $value${irqs:+ ($irqs interrupts)}" >&2
    done
  done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print ""}'; }
med() { awk -v v="$1" -v t="$2" -v d="$3" '$1 == v && $2 == t && $3 == d {print $4}' "${4:-$work/values}" | median; }
# The median over rounds of ember / QEMU within a round: the VMMs of one round ran minutes
# apart, rounds on a shared machine may not, so each round's ratio is the paired figure.
ratio() {  # ratio VMM QEMU TEST DEPTH
  awk -v a="$1" -v b="$2" -v t="$3" -v d="$4" '$2 == t && $3 == d && ($1 == a || $1 == b) { v[$1, $5] = $4; r[$5] = 1 }
    END { for (k in r) if (((a, k) in v) && ((b, k) in v) && v[b, k] > 0) print v[a, k] / v[b, k] }' "$work/values" |
    median | awk '{ printf "%.2f", $1 } END { if (!NR) print "n/a" }'
}
label() { case $1 in seq*) echo "sequential ${1#seq}, 1 MiB (MiB/s)" ;; *) echo "random ${1#rand}, 4 KiB, depth $2 (IOPS)" ;; esac; }
{
  echo "| test | ember | QEMU default | ember / QEMU, both cached | ember cache=none | QEMU io_uring cache=none | ember / QEMU, both O_DIRECT |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for t in "${tests[@]}"; do
    read -r test depth <<<"$t"
    e=$(med ember "$test" "$depth") en=$(med ember_cache_none "$test" "$depth")
    qu=$(med qemu_io_uring_cache_none "$test" "$depth") qd=$(med qemu_default "$test" "$depth")
    echo "| $(label "$test" "$depth") | ${e:-n/a} | ${qd:-n/a} | $(ratio ember qemu_default "$test" "$depth") |" \
      "${en:-n/a} | ${qu:-n/a} | $(ratio ember_cache_none qemu_io_uring_cache_none "$test" "$depth") |"
  done
  echo
  echo "Figures: medians of $rounds rounds. Ratios: medians of each round's ember / QEMU (a round runs the"
  echo "${#vmms[@]} VMMs one after the other). $seconds s per test, ${disk_mib} MiB drive ($([[ -n $loop ]] && echo "loop device over a file in ${TMPDIR:-/tmp}" || echo "file in ${TMPDIR:-/tmp}")), 1 vCPU, 256 MiB; $(date -u +%F), host $(uname -r)."
  echo
  echo "Guest interrupts of the drive per request (medians of the rounds; /proc/interrupts around each test):"
  echo
  echo "| test | $(printf '%s | ' "${vmms[@]}")"
  echo "| --- |$(printf ' --- |%.0s' "${vmms[@]}")"
  for t in "${tests[@]}"; do
    read -r test depth <<<"$t"
    row="| $(label "$test" "$depth" | sed 's/ ([A-Za-z/]*)$//') |"
    for vmm in "${vmms[@]}"; do
      v=$(med "$vmm" "$test" "$depth" "$work/irqs")
      row+=" ${v:-n/a} |"
    done
    echo "$row"
  done
  if [[ -n $baseline ]]; then
    echo
    echo "ember / baseline ($baseline), medians of each round's ratio:"
    echo
    echo "| test | cached | cache=none |"
    echo "| --- | --- | --- |"
    for t in "${tests[@]}"; do
      read -r test depth <<<"$t"
      echo "| $(label "$test" "$depth") | $(ratio ember ember_baseline "$test" "$depth") |" \
        "$(ratio ember_cache_none ember_baseline_cache_none "$test" "$depth") |"
    done
  fi
} >"$out/results.md"
{
  for t in "${tests[@]}"; do
    read -r test depth <<<"$t"
    echo "\"$test d$depth cached\" $(ratio ember qemu_default "$test" "$depth") 1"
    echo "\"$test d$depth O_DIRECT\" $(ratio ember_cache_none qemu_io_uring_cache_none "$test" "$depth") 2"
  done
} | grep -v n/a >"$out/ratios.dat" || true
# results.json: every measurement and the medians.
awk -v rounds="$rounds" -v seconds="$seconds" '
  { key = $1 "\t" $2 "\t" $3
    if (key in seen) vals[key] = vals[key] ", " $4
    else { seen[key] = 1; order[++n] = key; vals[key] = $4 } }
  END {
    printf "{\"rounds\": %d, \"seconds\": %d, \"unit\": {\"seq\": \"MiB/s\", \"rand\": \"IOPS\"}, \"block\": [\n", rounds, seconds
    for (i = 1; i <= n; i++) {
      split(order[i], k, "\t")
      printf "  {\"vmm\": \"%s\", \"test\": \"%s\", \"depth\": %d, \"values\": [%s]}%s\n", k[1], k[2], k[3], vals[order[i]], i < n ? "," : ""
    }
    print "]}"
  }' "$work/values" >"$out/results.json"
cat "$out/results.md"
