# Shared by the perf suites' run.sh (sourced, not run): where a suite measures, and its chart.

# measure NAME OUT TOOL ARGS...: runs TOOL ARGS... --out OUT directly on a /dev/kvm that boots
# the project's guest ($src and $guest set by the caller), otherwise inside the emulated host
# with OUT as its artifacts folder. The emulated host can freeze by itself (exit 125, "emulated
# host died"): measured again, up to 3 attempts; a failing measurement is not retried.
# EMBER_MEASURE_TIMEOUT (seconds, default 3000) bounds one attempt in the emulated host, and
# EMBER_MEASURE_MEM (MiB, default the emulated host's 6144) sets its memory.
measure() {
  local name=$1 out=$2 why rc attempt
  shift 2
  if why=$("$src/tests/e2e/kvm-probe.sh" "$src/build/ember" "$guest"); then
    echo "$name: on this host's /dev/kvm" >&2
    "$@" --out "$out"
    return
  fi
  echo "$name: $why: measuring inside the emulated host (compare ratios, not absolute times)" >&2
  for attempt in 1 2 3; do
    rc=0
    "$src/tests/e2e/emulated-host/run.sh" --timeout "${EMBER_MEASURE_TIMEOUT:-3000}" \
      ${EMBER_MEASURE_MEM:+--mem "$EMBER_MEASURE_MEM"} --artifacts "$out" -- \
      sh -c 'exec "$0" "$@" --out "$EMBER_ARTIFACTS_DIR"' "$@" || rc=$?
    [[ $rc -eq 125 && $attempt -lt 3 ]] || break
    echo "$name: the emulated host died (not a failed measurement); measuring again" >&2
  done
  return $rc
}

# qemu_microvm_argv MEM_MIB GUEST_DIR APPEND: sets qemu_argv to QEMU microvm as
# perf/bench_util.h's qemu_microvm_argv() runs it (1 vCPU, no ACPI, the guest's bzImage and
# initramfs, serial on stdout, an i8042 so that reboot=k ends it); suites append their devices.
qemu_microvm_argv() {
  qemu_argv=(qemu-system-x86_64 -M microvm,acpi=off,x-option-roms=off,rtc=off -enable-kvm -cpu host -smp 1
    -m "$1" -nodefaults -no-user-config -nographic -no-reboot -serial stdio -device i8042
    -kernel "$2/bzImage" -initrd "$2/initramfs.cpio.gz" -append "$3")
}

# cdf_chart PNG TITLE XLABEL GNUPLOT_SETTINGS DAT...: one step curve per cdf-NAME.dat file
# (columns: value, cumulative fraction), titled NAME with '_' shown as ' '; nothing without gnuplot.
cdf_chart() {
  local png=$1 title=$2 xlabel=$3 settings=$4 f name plots=()
  shift 4
  command -v gnuplot >/dev/null || return 0
  for f in "$@"; do
    name=${f##*/cdf-}; name=${name%.dat}
    plots+=("'$f' using 1:2 with steps lw 2 title '${name//_/ }'")
  done
  gnuplot <<GP
set terminal pngcairo size 900,560
set output '$png'
set title "$title"
set xlabel '$xlabel'
set ylabel 'fraction of runs'
set key bottom right
set yrange [0:1.05]
set grid
$settings
plot $(IFS=,; echo "${plots[*]}")
GP
  echo "chart in $png" >&2
}

# bar_chart PNG TITLE YLABEL GNUPLOT_SETTINGS DAT: one bar per line of DAT ("label" value
# colour-index: bars of one index share a colour), labelled with its value (printf FORMAT,
# default %.0f); nothing without gnuplot.
bar_chart() {
  local png=$1 title=$2 ylabel=$3 settings=$4 dat=$5 format=${6:-%.0f}
  command -v gnuplot >/dev/null || return 0
  gnuplot <<GP
set terminal pngcairo size 900,560
set output '$png'
set title "$title"
set ylabel '$ylabel'
set style fill solid 0.6 border -1
set boxwidth 0.7
set xtics rotate by -25 nomirror
set grid ytics
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set rmargin 12
set bmargin 7
$settings
plot '$dat' using 0:2:3:xtic(1) with boxes lc variable notitle, \
     '' using 0:2:(sprintf('$format', \$2)) with labels offset 0,0.8 notitle
GP
  echo "chart in $png" >&2
}
