#!/usr/bin/env bash
# Builds the ember guest artifacts (vmlinux, bzImage, initramfs.cpio.gz) into
# a cache folder keyed by a hash of the inputs, and prints that folder's
# absolute path as the only line on stdout:   dir=$(guest/build.sh)
# Progress and errors go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kernel_tarball=/usr/src/linux-source-6.1.tar.xz
busybox_bin=/bin/busybox

log() { echo "[guest/build.sh] $*" >&2; }
die() { echo "[guest/build.sh] ERROR: $*" >&2; exit 1; }

# --- prerequisites -----------------------------------------------------------
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

missing=()
[[ -f $kernel_tarball ]] || missing+=(linux-source-6.1)
bb_version=$(pkg_version busybox-static)
[[ -n $bb_version && -x $busybox_bin ]] || missing+=(busybox-static)
for tool in gcc:gcc make:make flex:flex bison:bison bc:bc gzip:gzip xz:xz-utils \
            readelf:binutils perl:perl flock:util-linux; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[[ -f /usr/include/libelf.h ]] || missing+=(libelf-dev)
[[ -f /usr/include/openssl/opensslv.h ]] || missing+=(libssl-dev)
if ((${#missing[@]})); then
    die "missing packages; run: sudo apt-get install $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
fi
if readelf -l "$busybox_bin" 2>/dev/null | grep -q INTERP; then
    die "$busybox_bin is dynamically linked; run: sudo apt-get install busybox-static"
fi
src_version=$(pkg_version linux-source-6.1)

# --- cache keys ----------------------------------------------------------------
# The kernel has its own key (fragment, source version, and the kernel recipe
# part of this script), so changing only /init does not rebuild the kernel.
# The artifacts folder is keyed by everything: all inputs + this whole script.
recipe() { sed -n '/^# --- kernel recipe begin/,/^# --- kernel recipe end/p' "$here/build.sh"; }
khash=$( {
    sha256sum <"$here/kernel.config"
    recipe | sha256sum
    echo "linux-source-6.1=$src_version"
} | sha256sum | cut -c1-16)
hash=$( {
    sha256sum "$here/kernel.config" "$here/init" "$here/build.sh" "$here"/tools/*.c | cut -d' ' -f1
    echo "linux-source-6.1=$src_version"
    echo "busybox-static=$bb_version"
} | sha256sum | cut -c1-16)

cache_root=${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/guest
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd)
out=$cache_root/$hash
kdir=$cache_root/kernel-$khash

complete() {  # complete DIR FILE...
    local d=$1 f; shift
    for f; do [[ -s $d/$f ]] || return 1; done
}
artifacts=(vmlinux bzImage initramfs.cpio.gz)
if complete "$out" "${artifacts[@]}"; then
    log "up to date: $out"
    echo "$out"
    exit 0
fi

# One builder at a time; a second caller waits and then finds the cache full.
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
    log "another build holds $cache_root/.lock, waiting..."
    flock 9
fi
if complete "$out" "${artifacts[@]}"; then
    log "up to date: $out"
    echo "$out"
    exit 0
fi

# Everything is built in a temporary folder inside the cache root and renamed
# into place at the end, so an interrupted build never leaves a half cache.
rm -rf "$cache_root"/.build-*   # leftovers of interrupted builds (we hold the lock)
tmp=$(mktemp -d "$cache_root/.build-$hash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP
buildlog=$tmp/build.log
: >"$buildlog"
fail() {
    log "FAILED: $*"
    if cp "$buildlog" "$cache_root/last-failure.log" 2>/dev/null; then
        log "last 40 lines of the log (full log: $cache_root/last-failure.log):"
        tail -n 40 "$buildlog" >&2
    else
        log "the build log $buildlog is gone (was the cache folder deleted during the build?)"
    fi
    exit 1
}

# --- kernel recipe begin ---------------------------------------------------------
build_kernel() {
    local src=$tmp/src stage=$tmp/kernel start line name want got bad=0
    mkdir -p "$src" "$stage"
    start=$(date +%s)
    log "building kernel into $kdir (log: $buildlog)"
    log "extracting $kernel_tarball (linux-source-6.1 $src_version)"
    tar -xJf "$kernel_tarball" -C "$src" --strip-components=1 >>"$buildlog" 2>&1 \
        || fail "extracting $kernel_tarball"

    export KBUILD_BUILD_USER=ember KBUILD_BUILD_HOST=ember \
           KBUILD_BUILD_TIMESTAMP="1970-01-01 00:00:00 UTC"
    kmake() { make -C "$src" ARCH=x86_64 "$@" >>"$buildlog" 2>&1; }

    log "configuring: make tinyconfig + guest/kernel.config + olddefconfig"
    kmake tinyconfig || fail "make tinyconfig"
    (cd "$src" && scripts/kconfig/merge_config.sh -m .config "$here/kernel.config") \
        >>"$buildlog" 2>&1 || fail "merge_config.sh"
    kmake olddefconfig || fail "make olddefconfig"

    # Every option of the fragment must have survived olddefconfig unchanged.
    while IFS= read -r line; do
        if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
        elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            name=${BASH_REMATCH[1]} want=n
        else
            continue
        fi
        got=$(sed -n "s/^$name=//p" "$src/.config")
        [[ -n $got ]] || got=n
        if [[ $want != "$got" ]]; then
            log "config mismatch: $name wanted '$want', got '$got'"
            bad=1
        fi
    done <"$here/kernel.config"
    if ((bad)); then
        cp "$src/.config" "$cache_root/last-failure.config"
        die "options of guest/kernel.config were dropped or changed by olddefconfig" \
            "(unmet dependency?); resulting config: $cache_root/last-failure.config"
    fi
    log "config check passed"

    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    log "compiling vmlinux + bzImage with make -j$jobs (~8 minutes on 2 cores)"
    kmake -j"$jobs" vmlinux bzImage || fail "kernel build"
    readelf -n "$src/vmlinux" | grep -Eq 'Xen[[:space:]].*0x0*12\b' \
        || fail "vmlinux has no PVH ELF note (Xen note type 0x12)"

    cp "$src/vmlinux" "$src/arch/x86/boot/bzImage" "$src/usr/gen_init_cpio" "$stage/"
    cp "$src/.config" "$stage/kernel.config.full"
    mv "$buildlog" "$stage/build.log"
    : >"$buildlog"
    echo "build_seconds=$(($(date +%s) - start))" >"$stage/build-info.txt"
    rm -rf "$kdir"
    mv -T "$stage" "$kdir"
    rm -rf "$src"
    log "kernel done in $(($(date +%s) - start))s"
}
# --- kernel recipe end -----------------------------------------------------------

if complete "$kdir" vmlinux bzImage gen_init_cpio; then
    log "kernel up to date: $kdir"
else
    build_kernel
fi

log "building initramfs (busybox-static $bb_version + guest/init + guest/tools)"
stage=$tmp/out
mkdir -p "$stage"
list=$tmp/initramfs.list
# Copies with a fixed mtime, so that the same inputs give the same bytes.
cp "$busybox_bin" "$tmp/busybox"
cp "$here/init" "$tmp/init"
# Guest tools busybox lacks (guest/tools/*.c), static so they need no libc in the guest.
tools=()
for c in "$here"/tools/*.c; do
    [[ -e $c ]] || continue
    name=$(basename "$c" .c)
    gcc -static -O2 -Wall -o "$tmp/$name" "$c" >>"$buildlog" 2>&1 || fail "compiling $c"
    tools+=("$name")
done
# Also beside the images: static, so host-side scripts run the same tools (perf/net's UDP sender).
mkdir -p "$stage/tools"
for name in "${tools[@]}"; do cp "$tmp/$name" "$stage/tools/$name"; done
touch -d @0 "$tmp/busybox" "$tmp/init" "${tools[@]/#/$tmp/}"
{
    for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /tmp /run /etc /root /mnt; do
        echo "dir $d 0755 0 0"
    done
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "nod /dev/null 0666 0 0 c 1 3"
    echo "file /bin/busybox $tmp/busybox 0755 0 0"
    echo "file /init $tmp/init 0755 0 0"
    for name in "${tools[@]}"; do echo "file /bin/$name $tmp/$name 0755 0 0"; done
    # The layout of `busybox --install -s`, made without touching the host.
    "$busybox_bin" --list-full | while read -r applet; do
        [[ $applet == bin/busybox ]] || echo "slink /$applet /bin/busybox 0777 0 0"
    done
} >"$list"
"$kdir/gen_init_cpio" -t 0 "$list" 2>>"$buildlog" | gzip -n -9 >"$stage/initramfs.cpio.gz" \
    || fail "gen_init_cpio"

# vmlinux and bzImage are hard links into the kernel folder (same filesystem).
for f in vmlinux bzImage kernel.config.full; do
    ln "$kdir/$f" "$stage/$f" 2>/dev/null || cp "$kdir/$f" "$stage/$f"
done
cp "$kdir/build.log" "$stage/kernel-build.log"
{
    echo "hash=$hash"
    echo "kernel_dir=$kdir"
    echo "linux-source-6.1=$src_version"
    echo "busybox-static=$bb_version"
    cat "$kdir/build-info.txt"
    for f in "${artifacts[@]}"; do echo "size_$f=$(stat -c %s "$stage/$f")"; done
} >"$stage/build-info.txt"

rm -rf "$out"
mv -T "$stage" "$out" || fail "renaming $stage to $out"
log "done: $out"
echo "$out"
