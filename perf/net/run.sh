#!/usr/bin/env bash
# virtio-net throughput, ember against QEMU microvm (virtio-net-device on the same kind
# of tap, vhost off, and also vhost on), same guest, same run, interleaved: each round boots
# ember, then QEMU both ways, and each guest sends N MiB to the host and receives N MiB from it over TCP
# twice: with busybox nc on both ends (zeros, written 1 KiB at a time), then with
# guest/tools/tcp-bulk writing 64 KiB at a time (a bulk sender, as iperf-like tools are). The
# write size matters: the host's TCP sends a small writer's data in frames of one segment when
# the tap is drained at once, and of several when frames wait in it (perf/net/NOTES.md,
# 2026-12-03). The guest times each transfer (/proc/uptime) and counts its virtio interrupts;
# each side counts what it received, and a transfer where either count falls short is not used. Then
# 64-byte UDP datagrams each way for --udp-seconds (guest/tools/udp-pps, the same static
# binary on both ends): the receiver counts what arrived, from its first datagram to its last.
# Runs inside the emulated host unless this host's /dev/kvm boots guests; writes
# results.md and results.json into the output folder and prints the table.
#   usage: perf/net/run.sh [--out DIR] [--mib N (default 32)] [--rounds R (default 3)] [--ember BIN]
#                          [--baseline BIN] [--udp-seconds S (default 5)] [--bulk-mib N (default 64)]
# (--mib: the busybox nc transfers; --bulk-mib: the 64 KiB-write ones, several times faster, so
# larger for the same accuracy)
# (--ember: another ember binary than build/ember; --baseline: a second ember binary, e.g. a
# build before a change, run in every round too and compared with --ember's in its own table)
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$src/build/perf-net mib=32 rounds=3 inner=0 ember=$src/build/ember udp_seconds=5 baseline= bulk_mib=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --bulk-mib) bulk_mib=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --ember) ember=$(realpath "$2"); shift 2 ;;
    --baseline) baseline=$(realpath "$2"); shift 2 ;;
    --udp-seconds) udp_seconds=$2; shift 2 ;;
    --inner) inner=1; shift ;;
    *) echo "usage: $0 [--out DIR] [--mib N] [--rounds R] [--ember BIN] [--baseline BIN] [--udp-seconds S] [--bulk-mib N]" >&2; exit 2 ;;
  esac
done

if [[ $inner == 0 ]]; then
  guest=$("$src/guest/build.sh")
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  if "$src/tests/e2e/kvm-probe.sh" "$src/build/ember" "$guest" >/dev/null; then
    EMBER_GUEST_DIR=$guest unshare -n "$src/perf/net/run.sh" --inner --out "$out" --mib "$mib" --bulk-mib "$bulk_mib" --rounds "$rounds" \
      --ember "$ember" --udp-seconds "$udp_seconds" ${baseline:+--baseline "$baseline"}
  else
    echo "perf/net: measuring inside the emulated host (compare ratios, not absolute figures)" >&2
    # The emulated host sees this machine read-only; results come back through --artifacts.
    "$src/tests/e2e/emulated-host/run.sh" --timeout 3000 --artifacts "$out" -- env EMBER_GUEST_DIR="$guest" \
      sh -c 'exec unshare -n "$0" --inner --out "$EMBER_ARTIFACTS_DIR" --mib "$1" --rounds "$2" --ember "$3" --udp-seconds "$4" --bulk-mib "$5" ${6:+--baseline "$6"}' \
      "$src/perf/net/run.sh" "$mib" "$rounds" "$ember" "$udp_seconds" "$bulk_mib" "$baseline"
  fi
  cat "$out/results.md"
  exit 0
fi

# --- inside a fresh network namespace, as root ---
. "$src/perf/suite.sh"
guest=$EMBER_GUEST_DIR tap=perftap0 host=169.254.20.1 addr=169.254.20.2
ip link set lo up
ip tuntap add dev $tap mode tap
ip addr add $host/24 dev $tap
ip link set $tap up
bytes=$((mib << 20)) bulk_bytes=$((bulk_mib << 20))
# Host side, per VM: a source for its download (5002; one per VM, so that a VM that died
# mid-download leaves the next one a fresh source) and a sink for its upload (5001) that counts what it received into
# $counts. (busybox nc ends a connection at EOF on its stdin: the sink's stdin is the
# connection itself, through -e, which execs in the same process. A sink per VM: one whose
# guest died mid-upload would wait for the connection's end forever.)
counts=$(mktemp "${TMPDIR:-/tmp}/perf-net-counts.XXXXXX")
# UDP: a guest connecting to 5003 has its receiver up; the host then floods it and closes the
# connection when done. Per VM, a receiver on 6002 for the guest's flood.
udp_pps=$guest/tools/udp-pps udp_counts=$(mktemp "${TMPDIR:-/tmp}/perf-net-udp.XXXXXX")
(while true; do busybox nc -l -p 5003 -e "$udp_pps" send $addr 6001 "$udp_seconds" 64; done) >/dev/null 2>&1 &
udp_source=$!
# Bulk TCP: a source of 64 KiB writes for downloads (5005), and per VM a sink for its upload (5004).
tcp_bulk=$guest/tools/tcp-bulk bulk_counts=$(mktemp "${TMPDIR:-/tmp}/perf-net-bulk.XXXXXX")
"$tcp_bulk" serve 5005 $bulk_bytes 65536 >/dev/null 2>&1 &
bulk_source=$!
source= sink= udp_sink= bulk_sink=
trap 'kill $source $sink $udp_source $udp_sink $bulk_source $bulk_sink 2>/dev/null; ip link del $tap 2>/dev/null
  rm -f "$counts" "$udp_counts" "$bulk_counts"' EXIT

script="ip link set lo up; ip link set eth0 up; ip addr add $addr/24 dev eth0
ping -c 1 -W 5 $host >/dev/null || ping -c 1 -W 5 $host >/dev/null
t() { cut -d' ' -f1 /proc/uptime; }
irq() { awk '/virtio/ { for (i = 2; i <= NF && \$i ~ /^[0-9]+\$/; i++) n += \$i } END { print n + 0 }' /proc/interrupts; }
a=\$(t); i=\$(irq); head -c $bytes /dev/zero | nc $host 5001; b=\$(t); j=\$(irq)
nc $host 5002 >/tmp/in; c=\$(t); k=\$(irq)
echo \"NETPERF t=\$a,\$b,\$c irq=\$i,\$j,\$k got=\$(wc -c </tmp/in)\"
a=\$(t); i=\$(irq); tcp-bulk send $host 5004 $bulk_bytes 65536 >/dev/null; b=\$(t); j=\$(irq)
tcp-bulk get $host 5005 >/tmp/bulk; c=\$(t); k=\$(irq)
echo \"NETBULK t=\$a,\$b,\$c irq=\$i,\$j,\$k got=\$(sed -n 's/.*received=//p' /tmp/bulk)\"
udp-pps recv 6001 1000 120000 >/tmp/udp & sleep 1; nc $host 5003 </dev/null; wait; sed 's/UDPPPS received/UDPRX received/' /tmp/udp
udp-pps send $host 6002 $udp_seconds 64"
append="console=ttyS0 reboot=k panic=1 pci=off quiet ember_test=$(printf '%s' "$script" | base64 -w0)"

# transfers TAG LOG: "up_cs down_cs bytes_received up_interrupts down_interrupts" from the guest's
# TAG line: its clock (/proc/uptime, s) and its virtio interrupts before, between and after.
transfers() {
  tr -d '\r' <"$2" | sed -n "s/.*$1 t=\([0-9.]*\),\([0-9.]*\),\([0-9.]*\) irq=\([0-9]*\),\([0-9]*\),\([0-9]*\) got=\([0-9]*\).*/\1 \2 \3 \4 \5 \6 \7/p" |
    awk '{ printf "%d %d %s %d %d\n", ($2 - $1) * 100 + 0.5, ($3 - $2) * 100 + 0.5, $7, $5 - $4, $6 - $5 }'
}
# A VM's whole test takes about a minute in the emulated host; QEMU with vhost=on there
# sometimes never gets its guest's traffic through (its rounds fail), so cut it off early.
vm_timeout=$((120 + 2 * (mib + bulk_mib) + 4 * udp_seconds))
run_one() {  # vmm round: boots the VM, whose log the transfers are read from
  local log=$out/$1-$2.log
  if [[ $1 == ember* ]]; then
    local bin=$ember
    [[ $1 == ember_base ]] && bin=$baseline
    timeout $vm_timeout "$bin" --kernel "$guest/bzImage" --initrd "$guest/initramfs.cpio.gz" --mem-mib 512 \
      --cmdline "$append" --net iface_id=eth0,tap=$tap >"$log" 2>&1 || true
  else
    local vhost=off
    [[ $1 == qemu_vhost ]] && vhost=on
    qemu_microvm_argv 512 "$guest" "$append"
    timeout $vm_timeout "${qemu_argv[@]}" -netdev tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=$vhost \
      -device virtio-net-device,netdev=n0 >"$log" 2>&1 </dev/null || true
  fi
}
# Datagrams per second from a receiver's "received=N usec=T" line, or nothing.
pps() { sed -n 's/.*received=\([0-9]*\) usec=\([0-9]*\).*/\1 \2/p' | tr -d '\r' |
  awk '$1 > 1 && $2 > 0 { printf "%d", $1 * 1000000 / $2 }'; }

declare -A up down udp_rx udp_tx up_irq down_irq bulk_up bulk_down bulk_up_irq bulk_down_irq
vmms=(ember qemu qemu_vhost)
[[ -n $baseline ]] && vmms=(ember ember_base qemu qemu_vhost)
for vmm in "${vmms[@]}"; do up[$vmm]=""; down[$vmm]=""; udp_rx[$vmm]=""; udp_tx[$vmm]=""; up_irq[$vmm]=""; down_irq[$vmm]=""
  bulk_up[$vmm]=""; bulk_down[$vmm]=""; bulk_up_irq[$vmm]=""; bulk_down_irq[$vmm]=""; done
for r in $(seq 1 "$rounds"); do
  for vmm in "${vmms[@]}"; do
    : >"$counts"
    busybox nc -l -p 5001 -e /bin/sh -c "exec wc -c > '$counts'" &
    sink=$!
    head -c $bytes /dev/zero | busybox nc -l -p 5002 &
    source=$!
    "$udp_pps" recv 6002 1000 >"$udp_counts" 2>&1 &
    udp_sink=$!
    : >"$bulk_counts"
    "$tcp_bulk" sink 5004 >"$bulk_counts" 2>&1 &
    bulk_sink=$!
    run_one $vmm $r
    read -r u d got ui di <<<"$(transfers NETPERF "$out/$vmm-$r.log")" || true
    read -r bu bd bgot bui bdi <<<"$(transfers NETBULK "$out/$vmm-$r.log")" || true
    kill $sink $source $bulk_sink 2>/dev/null || true
    wait $sink $source $bulk_sink 2>/dev/null || true
    kill $udp_sink 2>/dev/null || true
    wait $udp_sink 2>/dev/null || true
    rx=$(grep UDPRX "$out/$vmm-$r.log" | pps) tx=$(pps <"$udp_counts")
    echo "perf/net: round $r $vmm: UDP 64 B host -> guest ${rx:-n/a} /s, guest -> host ${tx:-n/a} /s" >&2
    udp_rx[$vmm]+=" $rx"; udp_tx[$vmm]+=" $tx"
    sent=$(tr -d ' ' <"$counts") bsent=$(sed -n 's/.*received=//p' "$bulk_counts")
    if [[ -z ${u:-} || ${got:-0} != "$bytes" || ${sent:-0} != "$bytes" ]]; then
      echo "perf/net: $vmm round $r failed (nc): guest got ${got:-nothing} of $bytes, host got ${sent:-nothing} (see $out/$vmm-$r.log)" >&2
    else
      echo "perf/net: round $r $vmm: nc up $u cs ($ui interrupts), down $d cs ($di interrupts)" >&2
      up[$vmm]+=" $u"; down[$vmm]+=" $d"; up_irq[$vmm]+=" $ui"; down_irq[$vmm]+=" $di"
    fi
    if [[ -z ${bu:-} || ${bgot:-0} != "$bulk_bytes" || ${bsent:-0} != "$bulk_bytes" ]]; then
      echo "perf/net: $vmm round $r failed (64 KiB writes): guest got ${bgot:-nothing} of $bulk_bytes, host got ${bsent:-nothing} (see $out/$vmm-$r.log)" >&2
    else
      echo "perf/net: round $r $vmm: 64 KiB writes up $bu cs ($bui interrupts), down $bd cs ($bdi interrupts)" >&2
      bulk_up[$vmm]+=" $bu"; bulk_down[$vmm]+=" $bd"; bulk_up_irq[$vmm]+=" $bui"; bulk_down_irq[$vmm]+=" $bdi"
    fi
  done
done

# MiB/s from the median time (centiseconds) of each direction.
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}'; }
rate() { awk -v m="${2:-$mib}" -v cs="$1" 'BEGIN { if (cs > 0) printf "%.1f", m * 100 / cs; else print "n/a" }'; }
bulk_rate() { rate "$1" "$bulk_mib"; }
ratio() { awk -v e="$1" -v q="$2" 'BEGIN { if (e > 0 && q > 0) printf "%.2f", q / e; else print "n/a" }'; }
kpps() { awk -v p="$1" 'BEGIN { if (p > 0) printf "%.1f", p / 1000; else print "n/a" }'; }
# row LABEL ROUNDS FORMAT times|rates: the medians of one direction's rounds (an associative
# array by VMM), shown through FORMAT; the ratio is ember's speed over QEMU's either way.
row() {
  declare -n values=$2
  local e q v
  e=$(echo "${values[ember]}" | median) q=$(echo "${values[qemu]}" | median) v=$(echo "${values[qemu_vhost]}" | median)
  if [[ $4 == times ]]; then
    echo "| $1 | $($3 "$e") | $($3 "$q") | $(ratio "$e" "$q") | $($3 "$v") | $(ratio "$e" "$v") |"
  else
    echo "| $1 | $($3 "$e") | $($3 "$q") | $(ratio "$q" "$e") | $($3 "$v") | $(ratio "$v" "$e") |"
  fi
}
base_row() {
  declare -n values=$2
  local e b
  e=$(echo "${values[ember]}" | median) b=$(echo "${values[ember_base]}" | median)
  if [[ $4 == times ]]; then echo "| $1 | $($3 "$e") | $($3 "$b") | $(ratio "$e" "$b") |"
  else echo "| $1 | $($3 "$e") | $($3 "$b") | $(ratio "$b" "$e") |"; fi
}
irq_row() {  # LABEL ARRAY MIB: medians of the rounds' interrupt counts, per MiB
  declare -n counts=$2
  local mib=$3
  local line="| $1 |" vmm
  for vmm in ember qemu qemu_vhost; do
    line+=" $(echo "${counts[$vmm]}" | median | awk -v m="$mib" '{ printf "%.0f", $1 / m }') |"
  done
  echo "$line"
}
{
  echo "| direction (guest view) | ember MiB/s | QEMU MiB/s | ember / QEMU | QEMU vhost=on MiB/s | ember / QEMU vhost=on |"
  echo "| --- | --- | --- | --- | --- | --- |"
  row "guest -> host (TX), 64 KiB writes" bulk_up bulk_rate times
  row "host -> guest (RX), 64 KiB writes" bulk_down bulk_rate times
  row "guest -> host (TX), busybox nc (1 KiB writes)" up rate times
  row "host -> guest (RX), busybox nc (1 KiB writes)" down rate times
  echo
  echo "| 64-byte UDP (guest view) | ember kpps | QEMU kpps | ember / QEMU | QEMU vhost=on kpps | ember / QEMU vhost=on |"
  echo "| --- | --- | --- | --- | --- | --- |"
  row "UDP guest -> host (TX)" udp_tx kpps rates
  row "UDP host -> guest (RX)" udp_rx kpps rates
  echo
  if [[ -n $baseline ]]; then
    echo "| ember ($ember) against the baseline ($baseline) | ember | baseline | ember / baseline |"
    echo "| --- | --- | --- | --- |"
    base_row "guest -> host (TX), 64 KiB writes, MiB/s" bulk_up bulk_rate times
    base_row "host -> guest (RX), 64 KiB writes, MiB/s" bulk_down bulk_rate times
    base_row "guest -> host (TX), nc, MiB/s" up rate times
    base_row "host -> guest (RX), nc, MiB/s" down rate times
    base_row "UDP guest -> host (TX), kpps" udp_tx kpps rates
    base_row "UDP host -> guest (RX), kpps" udp_rx kpps rates
    echo
  fi
  echo "Guest interrupts of its virtio devices per MiB of TCP (medians of the rounds; /proc/interrupts around each transfer):"
  echo
  echo "| direction (guest view) | ember | QEMU | QEMU vhost=on |"
  echo "| --- | --- | --- | --- |"
  irq_row "guest -> host (TX), 64 KiB writes" bulk_up_irq "$bulk_mib"
  irq_row "host -> guest (RX), 64 KiB writes" bulk_down_irq "$bulk_mib"
  irq_row "guest -> host (TX), busybox nc" up_irq "$mib"
  irq_row "host -> guest (RX), busybox nc" down_irq "$mib"
  echo
  echo "$mib MiB per busybox nc transfer, $bulk_mib MiB per 64 KiB-write transfer, UDP for $udp_seconds s each way, median of $rounds rounds, $(date -u +%F), $(uname -r)"
} >"$out/results.md"
# results.json: every round's transfer time (centiseconds, guest clock) each way: guest_to_host and
# host_to_guest with busybox nc, bulk_64k_writes with tcp-bulk.
json_list() { echo "[$(echo "$1" | xargs | sed 's/ /, /g')]"; }
cat >"$out/results.json" <<JSON
{"mib": $mib, "bulk_mib": $bulk_mib, "rounds": $rounds, "unit": "centiseconds per transfer",
 "baseline": "$baseline",
 "guest_to_host": {"ember": $(json_list "${up[ember]}"), "ember_base": $(json_list "${up[ember_base]:-}"), "qemu": $(json_list "${up[qemu]}"),
                   "qemu_vhost": $(json_list "${up[qemu_vhost]}")},
 "host_to_guest": {"ember": $(json_list "${down[ember]}"), "ember_base": $(json_list "${down[ember_base]:-}"), "qemu": $(json_list "${down[qemu]}"),
                   "qemu_vhost": $(json_list "${down[qemu_vhost]}")},
 "bulk_64k_writes": {
   "guest_to_host": {"ember": $(json_list "${bulk_up[ember]}"), "ember_base": $(json_list "${bulk_up[ember_base]:-}"), "qemu": $(json_list "${bulk_up[qemu]}"),
                     "qemu_vhost": $(json_list "${bulk_up[qemu_vhost]}")},
   "host_to_guest": {"ember": $(json_list "${bulk_down[ember]}"), "ember_base": $(json_list "${bulk_down[ember_base]:-}"), "qemu": $(json_list "${bulk_down[qemu]}"),
                     "qemu_vhost": $(json_list "${bulk_down[qemu_vhost]}")}},
 "bulk_guest_interrupts_per_transfer": {
   "guest_to_host": {"ember": $(json_list "${bulk_up_irq[ember]}"), "qemu": $(json_list "${bulk_up_irq[qemu]}"), "qemu_vhost": $(json_list "${bulk_up_irq[qemu_vhost]}")},
   "host_to_guest": {"ember": $(json_list "${bulk_down_irq[ember]}"), "qemu": $(json_list "${bulk_down_irq[qemu]}"), "qemu_vhost": $(json_list "${bulk_down_irq[qemu_vhost]}")}},
 "guest_interrupts_per_transfer": {
   "guest_to_host": {"ember": $(json_list "${up_irq[ember]}"), "qemu": $(json_list "${up_irq[qemu]}"), "qemu_vhost": $(json_list "${up_irq[qemu_vhost]}")},
   "host_to_guest": {"ember": $(json_list "${down_irq[ember]}"), "qemu": $(json_list "${down_irq[qemu]}"), "qemu_vhost": $(json_list "${down_irq[qemu_vhost]}")}},
 "udp_64_packets_per_second": {
   "guest_to_host": {"ember": $(json_list "${udp_tx[ember]}"), "ember_base": $(json_list "${udp_tx[ember_base]:-}"), "qemu": $(json_list "${udp_tx[qemu]}"),
                     "qemu_vhost": $(json_list "${udp_tx[qemu_vhost]}")},
   "host_to_guest": {"ember": $(json_list "${udp_rx[ember]}"), "ember_base": $(json_list "${udp_rx[ember_base]:-}"), "qemu": $(json_list "${udp_rx[qemu]}"),
                     "qemu_vhost": $(json_list "${udp_rx[qemu_vhost]}")}}}
JSON
