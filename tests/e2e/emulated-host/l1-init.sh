#!/bin/busybox sh
# /init of the emulated host (L1): loads the modules, mounts the host's / (read-only) and the
# scratch share, runs run.sh's job in a chroot of the host's / and records its exit status.
# Its own messages go to the console (ttyS0, a log file on the host); the job's output goes to
# the virtio-serial port "ember.out", which run.sh streams to its stdout.
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys

share=/host/run/ember/share   # run.sh's scratch share; job.sh and status live here

stop() {
    sync
    poweroff -f
    sleep 5
    reboot -f   # QEMU runs with -no-reboot, so this ends it too
}

# run.sh reports the last "ember-l1: error:" line of the console as the reason L1 died.
fail() {
    echo "ember-l1: error: $*"
    stop
}

mount_9p() {   # tag mountpoint [extra options]
    mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000${3:+,$3}" "$1" "$2"
}

while read -r module; do
    insmod "/lib/modules/$module" || echo "ember-l1: insmod $module failed"
done < /lib/modules/load-order
echo "ember-l1: modules loaded at uptime $(cut -d' ' -f1 /proc/uptime) s"

[ -c /dev/kvm ] || fail "no /dev/kvm (kvm_amd did not load; does this QEMU emulate SVM with -cpu max?)"

mount_9p host /host ro,cache=loose || fail "cannot mount the host's / over 9p"
mount -t tmpfs -o mode=0755 run /host/run || fail "cannot mount a tmpfs on /run"
mkdir -p "$share" /host/run/ember/tmp
chmod 1777 /host/run/ember/tmp
mount_9p out "$share" || fail "cannot mount the scratch share"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -o rbind /dev /host/dev || fail "cannot bind /dev into the chroot"
ip link set lo up

# The port's name arrives from QEMU asynchronously after the driver loads.
out=
tries=0
while [ -z "$out" ] && [ $tries -lt 100 ]; do
    for port in /sys/class/virtio-ports/*; do
        [ "$(cat "$port/name" 2>/dev/null)" = ember.out ] && out=/dev/${port##*/}
    done
    [ -n "$out" ] || { tries=$((tries + 1)); sleep 0.1; }
done
[ -n "$out" ] && [ -c "$out" ] || fail "no virtio-serial port named ember.out"
[ -f "$share/job.sh" ] || fail "no job.sh in the scratch share"

# Keep virtualization on for L1's lifetime, as hosts from Linux 6.12 do (kvm.enable_virt_at_load,
# on by default). L1's 6.1 turns it on when the first VM is created and off when the last one
# is destroyed, an IPI to every CPU each time: every test and every measured boot paid that, and
# the emulated host froze in it (L1 stuck in kvm_destroy_vm -> on_each_cpu_cond_mask, mostly in
# tests that create and destroy a VM within milliseconds). One empty VM, held by a process that
# sleeps, keeps the count above zero. perl-base is in every Debian install; perl's ioctl passes
# a number through.
if env -i /bin/chroot /host /usr/bin/perl -e '
        open(my $kvm, "+<", "/dev/kvm") or die "cannot open /dev/kvm: $!\n";
        defined(ioctl($kvm, 0xAE01, 0)) or die "KVM_CREATE_VM failed: $!\n";   # KVM_CREATE_VM
        exit 0 if fork;   # the child keeps both descriptors; the parent reports success
        sleep;'; then
    echo "ember-l1: virtualization held on by an empty VM"
else
    fail "cannot create the VM that keeps virtualization on"
fi

echo "ember-l1: job starts at uptime $(cut -d' ' -f1 /proc/uptime) s"
# Every minute, the busiest processes and any stuck in the kernel (state D): when the job
# hangs, run.sh prints the console's last lines, and these say where.
(
    while sleep 60; do
        echo "ember-l1: processes at uptime $(cut -d' ' -f1 /proc/uptime) s (pid state name utime stime):"
        for stat in /proc/[0-9]*/task/[0-9]*/stat; do
            read -r pid name state _ _ _ _ _ _ _ _ _ _ utime stime _ < "$stat" 2>/dev/null || continue
            case $name in "("kworker*|"("ksoftirq*|"("rcu*|"("migration*|"("cpuhp*|"("idle_inject*) continue ;; esac
            [ "$state" = D ] || [ $((utime + stime)) -gt 100 ] && echo "  $pid $state $name $utime $stime"
        done
        grep -E "^(ctxt|procs_running|procs_blocked)" /proc/stat | tr '\n' ' '; echo
    done
) &
watcher=$!
env -i /bin/chroot /host /bin/sh /run/ember/share/job.sh </dev/null >"$out" 2>&1
status=$?
echo "$status" > "$share/status.tmp" && mv "$share/status.tmp" "$share/status" ||
    fail "cannot write the job's status"
kill "$watcher" 2>/dev/null
echo "ember-l1: job exited with status $status at uptime $(cut -d' ' -f1 /proc/uptime) s"
stop
