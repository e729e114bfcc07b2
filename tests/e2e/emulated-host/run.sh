#!/usr/bin/env bash
# Runs a command inside the emulated host: a Linux (L1) under QEMU TCG, whose emulated AMD SVM gives
# it a /dev/kvm, chrooted into this machine's / (read-only). Exit status: the command's, or 125 with
# "emulated host died: <reason>" on stderr when L1 died before reporting one.
# Everything is in functions and main runs last, so editing this file cannot disturb a running job.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=${0##*/}

usage() {
    cat >&2 <<EOF
usage: $prog [--timeout SECONDS] [--mem MIB] [--cpus N] [--artifacts DIR] [--verbose] -- COMMAND [ARGS...]
  --timeout SECONDS  stop the emulated host after this long (default 3000)
  --mem MIB          its memory (default 6144)
  --cpus N           its vCPUs (default 2)
  --artifacts DIR    copy what COMMAND wrote to \$EMBER_ARTIFACTS_DIR into DIR
  --verbose          stream the emulated host's console to stderr
EOF
    exit 2
}

bad_usage() { printf '%s: %s\n' "$prog" "$*" >&2; usage; }

died() {
    printf 'emulated host died: %s\n' "$*" >&2
    exit 125
}

quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }   # for sh

qemu_path() { printf '%s' "${1//,/,,}"; }          # QEMU option values escape ',' as ',,'

# Prints the job script: environment, working directory, then exec of the command.
write_job() {
    local name
    echo "# written by $prog; L1's /init runs it as: env -i chroot / sh /run/ember/share/job.sh"
    echo "export PATH=$(quote "${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}")"
    for name in HOME TERM $(compgen -e | grep -E '^(EMBER|GTEST)_'); do
        [[ -v $name ]] && echo "export $name=$(quote "${!name}")"
    done
    echo "export TMPDIR=/run/ember/tmp EMBER_EMULATED_HOST=1 EMBER_ARTIFACTS_DIR=/run/ember/share/artifacts"
    echo "cd $(quote "$cwd") || exit 125"
    printf 'exec'
    for name in "$@"; do printf ' %s' "$(quote "$name")"; done
    echo
}

# QEMU's pipe chardev NAME reads the FIFO NAME.in and writes NAME.out. The reader, started before
# QEMU, copies NAME.out into the given command.
start_reader() {   # name command...
    local name=$1; shift
    mkfifo "$scratch/$name.in" "$scratch/$name.out"
    "$@" < "$scratch/$name.out" &
    readers+=("$name:$!")
    pids+=("$!")
}

# A reader ends at EOF once QEMU closed its FIFO. If QEMU never opened it, the reader is still
# blocked in open(); a writer that opens and closes at once (read-write: never blocks) ends it.
drain_readers() {
    local reader
    for reader in "${readers[@]}"; do
        if kill -0 "${reader#*:}" 2>/dev/null; then
            exec 9<>"$scratch/${reader%%:*}.out"
            exec 9>&-
        fi
        wait "${reader#*:}"
    done
}

start_qemu() {
    local kernel=$cache/vmlinuz
    [[ -f $cache/vmlinux ]] && kernel=$cache/vmlinux   # PVH entry: no decompression under TCG
    local qemu=(
        qemu-system-x86_64 -M q35,accel=tcg -cpu max -smp "$cpus" -m "$mem"
        -nographic -no-reboot -nodefaults -no-user-config -monitor none
        -chardev "pipe,id=console,path=$(qemu_path "$scratch/console")" -serial chardev:console
        -kernel "$kernel" -initrd "$cache/initrd.gz"
        # loglevel 5: warnings and soft-lockup stacks too. init_on_free=1: L1 zeroes pages as
        # they are freed. Under TCG, writing pages an earlier guest used is slow (most likely
        # QEMU discarding translations of code that ran from them, up to ~1 ms a page); without
        # this the next VMM to get them paid while loading its kernel (90-900 ms, at random).
        -append "console=ttyS0 loglevel=5 panic=-1 oops=panic init_on_free=1"
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap
        -virtfs "local,path=$(qemu_path "$share"),mount_tag=out,security_model=none"
        -device virtio-serial-pci,id=vser
        -chardev "pipe,id=out,path=$(qemu_path "$scratch/out")"
        -device virtserialport,bus=vser.0,chardev=out,name=ember.out
        -device virtio-rng-pci
    )
    timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null 2>"$scratch/qemu.err" &
    qemu_pid=$!
    pids+=("$qemu_pid")
}

# L1's /init prints a process snapshot every 60 s while the job runs, so a console that
# stays silent much longer means L1 froze: seen under QEMU TCG when an L2 guest keeps an L1
# CPU and L1 never gets control back. Stop it early instead of waiting for --timeout.
freeze_s=${EMBER_L1_FREEZE_SECONDS:-150}
watch_for_freeze() {
    local last_size=-1 size quiet=0
    while kill -0 "$qemu_pid" 2>/dev/null; do
        sleep 10
        size=$(stat -c %s "$scratch/console.log" 2>/dev/null || echo 0)
        if [[ $size == "$last_size" ]]; then quiet=$((quiet + 10)); else quiet=0; last_size=$size; fi
        if ((quiet >= freeze_s)); then
            echo "no console output for $freeze_s s" > "$scratch/frozen"
            kill "$qemu_pid" 2>/dev/null
            return
        fi
        # The same freeze can leave L1's soft-lockup watchdog talking while nothing else runs.
        if grep -Eq 'soft lockup - CPU#[0-9]+ stuck for [0-9]{3,}s' "$scratch/console.log" 2>/dev/null; then
            echo "its kernel reported a CPU soft-locked for over 100 s" > "$scratch/frozen"
            kill "$qemu_pid" 2>/dev/null
            return
        fi
    done
}

# Explains, on stderr, why L1 ended without a job status, and exits 125.
report_death() {
    local console panic l1_error reason
    console=$(tr -d '\r' < "$scratch/console.log" 2>/dev/null | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g')
    panic=$(grep -m1 -o 'Kernel panic.*' <<<"$console")
    l1_error=$(grep -o 'ember-l1: error: .*' <<<"$console" | tail -n 1)
    if [[ -n $interrupted ]]; then
        reason="$prog was interrupted by $interrupted"
    elif [[ -f $scratch/frozen ]]; then
        reason="it froze: $(cat "$scratch/frozen") (stopped after $elapsed s)"
    elif [[ $qemu_rc == 124 ]] || [[ $qemu_rc == 137 && $elapsed -ge $timeout_s ]]; then
        reason="timeout after $timeout_s s"
    elif [[ -n $panic ]]; then
        reason="kernel panic ($panic) after $elapsed s"
    elif [[ -n $l1_error ]]; then
        reason=${l1_error#ember-l1: error: }
    elif [[ $qemu_rc -gt 128 ]]; then
        reason="qemu was killed by signal $((qemu_rc - 128)) after $elapsed s"
    elif [[ $qemu_rc != 0 ]]; then
        reason="qemu exited with code $qemu_rc: $(tail -n 1 "$scratch/qemu.err")"
    else
        reason="it powered off after $elapsed s without reporting the job's status"
    fi
    {
        echo "--- last lines of the emulated host's console ---"
        tail -n 40 <<<"$console"
        if [[ -s $scratch/qemu.err ]]; then
            echo "--- qemu's stderr ---"
            tail -n 20 "$scratch/qemu.err"
        fi
        echo "---"
    } >&2
    died "$reason"
}

cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    rm -rf "$scratch"
}

on_signal() { interrupted=$1; kill -TERM "$qemu_pid" 2>/dev/null; }

main() {
    timeout_s=3000 mem=6144 cpus=2 artifacts= verbose=0
    while [[ $# -gt 0 ]]; do
        case $1 in
            --timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || bad_usage "--timeout needs a number of seconds"; timeout_s=$2; shift 2 ;;
            --mem) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || bad_usage "--mem needs a number of MiB"; mem=$2; shift 2 ;;
            --cpus) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || bad_usage "--cpus needs a number"; cpus=$2; shift 2 ;;
            --artifacts) [[ -n ${2:-} ]] || bad_usage "--artifacts needs a folder"; artifacts=$2; shift 2 ;;
            --verbose) verbose=1; shift ;;
            --) shift; break ;;
            -h|--help) usage ;;
            *) bad_usage "unknown argument '$1' (the command goes after --)" ;;
        esac
    done
    [[ $# -gt 0 ]] || bad_usage "no command given"

    # The job runs with this cwd in a chroot of /, where L1 has its own /run, /proc, /sys and /dev.
    cwd=$(pwd -P)
    case $cwd/ in
        /run/*|/proc/*|/sys/*|/dev/*) bad_usage "the working directory $cwd is hidden in the emulated host; run from elsewhere" ;;
    esac

    cache=$("$here/prepare.sh") || died "prepare.sh could not build the L1 kernel and initramfs (see above)"

    # One emulated host per machine at a time: two share 2 cores badly and freeze more often.
    # EMBER_EMULATED_HOST_LOCK overrides the lock file (a test of this script uses its own).
    local lock=${EMBER_EMULATED_HOST_LOCK:-/tmp/ember-emulated-host.lock}
    exec 8>>"$lock" || died "cannot open the lock file $lock"
    if ! flock -n 8; then
        echo "$prog: another emulated host is running; waiting for $lock" >&2
        flock 8
    fi

    pids=() readers=() qemu_pid= interrupted=
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/ember-emulated-host.XXXXXX") || died "cannot create a scratch folder"
    trap cleanup EXIT
    share=$scratch/share   # mounted at /run/ember/share in L1
    mkdir -p "$share/artifacts"
    write_job "$@" > "$share/job.sh"

    # The job's output goes to stdout; L1's console to a log (and to stderr with --verbose).
    start_reader out cat
    if [[ $verbose == 1 ]]; then
        start_reader console tee "$scratch/console.log" >&2
    else
        start_reader console tee "$scratch/console.log" >/dev/null
    fi

    local start=$SECONDS
    start_qemu
    watch_for_freeze &
    pids+=("$!")
    trap 'on_signal SIGINT' INT
    trap 'on_signal SIGTERM' TERM
    trap 'on_signal SIGHUP' HUP
    while :; do
        wait "$qemu_pid" 2>/dev/null   # no "Killed" notice: report_death says what happened
        qemu_rc=$?
        kill -0 "$qemu_pid" 2>/dev/null || break   # else a trapped signal interrupted wait
    done
    elapsed=$((SECONDS - start))
    drain_readers

    if [[ -n $artifacts ]]; then
        mkdir -p "$artifacts" && cp -R "$share/artifacts/." "$artifacts/" ||
            printf '%s: cannot copy the artifacts to %s\n' "$prog" "$artifacts" >&2
    fi

    local status=
    [[ -f $share/status ]] && status=$(<"$share/status")
    [[ $status =~ ^[0-9]+$ ]] && exit "$status"
    report_death
}

main "$@"
exit
