#!/usr/bin/env bash
# Builds, once, the emulated host's L1 kernel and initramfs, and the stock guest (the same Debian
# kernel, unmodified, as an ember guest, with an initramfs of its own), and prints the cache folder
# holding them.
#
# Inputs: the Debian kernel package linux-image-amd64 depends on (or EMBER_L1_KERNEL_DEB=path.deb),
# /bin/busybox from busybox-static, l1-init.sh, ../stock-guest-init.sh and this script. Output, in
# ${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/emulated-host/<hash of inputs>/:
#   vmlinuz         the L1 kernel (also usable as a plain x86 bzImage for L2 guests)
#   vmlinux         the same kernel uncompressed, booted through PVH (absent without xz-utils)
#   initrd.gz       busybox, the modules below with their dependencies, /init
#   kernel-release  e.g. 6.1.0-56-amd64
#   modules         the modules in the initramfs, in load order
#   stock-guest/    the stock guest, for tests/e2e/stock_kernel_test.cpp (EMBER_STOCK_GUEST_DIR):
#     vmlinuz, vmlinux, kernel-release  links to the kernel above and its release
#     initrd.gz     busybox, the stock guest's modules below with their dependencies, and
#                   ../stock-guest-init.sh as /init (what it does: the comment at its top)
#     modules       the modules in its initramfs, in load order
# The only line on stdout is the folder; progress and errors go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Loaded in L1, with their modules.dep closure. kvm-amd gives /dev/kvm (QEMU TCG emulates SVM with
# nested paging), virtio_pci + 9p carry the host's / and the scratch share, virtio_console carries
# the job's output, the rest is what ember's tests use in L1.
required_modules=(kvm-amd kvm ccp irqbypass virtio_pci virtio_console 9p 9pnet_virtio 9pnet netfs
                  fscache tun vhost_net vhost_vsock vhost vsock virtio_blk loop)
optional_modules=(bridge veth virtio-rng)
# The stock guest's: ember's virtio-mmio devices (blk, net, vsock) and an ext4 root. crc32c: ext4's
# metadata checksums (a soft dependency, which modules.dep does not list).
stock_guest_modules=(virtio_mmio virtio_blk virtio_net vmw_vsock_virtio_transport ext4 crc32c_generic)
stock_guest_init=$(cd "$here/.." && pwd)/stock-guest-init.sh

log() { printf 'emulated-host prepare: %s\n' "$*" >&2; }
die() { printf 'emulated-host prepare: error: %s\n' "$*" >&2; exit 1; }

need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install $2"
}

find_depmod() {
    local p
    for p in "$(command -v depmod 2>/dev/null || true)" /usr/sbin/depmod /sbin/depmod; do
        [[ -n $p && -x $p ]] && { echo "$p"; return; }
    done
    die "'depmod' not found; install it with: apt-get install kmod"
}

# Sets pkg and version to the L1 kernel package, or to the .deb path and its sha256.
kernel_package() {
    if [[ -n ${EMBER_L1_KERNEL_DEB:-} ]]; then
        [[ -f $EMBER_L1_KERNEL_DEB ]] || die "EMBER_L1_KERNEL_DEB=$EMBER_L1_KERNEL_DEB is not a file"
        pkg=$EMBER_L1_KERNEL_DEB
        version=$(sha256sum < "$pkg" | cut -d' ' -f1)
        return
    fi
    need_tool apt-cache apt
    # The candidate linux-image-amd64 depends on exactly one linux-image-<abi>-amd64 (= version).
    local dep
    dep=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
          awk '$1 == "Depends:" { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-/) { print $i, $(i + 2); exit } }')
    read -r pkg version <<<"$dep"
    [[ -n $pkg ]] || die "apt-cache does not know linux-image-amd64 (run apt-get update, or set EMBER_L1_KERNEL_DEB)"
    version=${version%)*}   # "6.1.192-2)" or "6.1.192-2)," -> 6.1.192-2
    if [[ -z $version ]]; then
        version=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
    fi
    [[ -n $version && $version != "(none)" ]] || die "no installable version of $pkg (run apt-get update)"
}

# Downloads (or copies) the kernel package into $1/kernel.deb.
fetch_kernel_deb() {
    local dir=$1 pkg=$2 version=$3
    if [[ -n ${EMBER_L1_KERNEL_DEB:-} ]]; then
        cp "$EMBER_L1_KERNEL_DEB" "$dir/kernel.deb"
        return
    fi
    log "downloading $pkg=$version"
    local sandbox=()
    [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)  # _apt cannot write our 0700 temp dir
    (cd "$dir" && apt-get "${sandbox[@]}" download "$pkg=$version") >&2 ||
        die "apt-get download $pkg=$version failed"
    mv "$dir"/"$pkg"_*.deb "$dir/kernel.deb"
}

# Writes the uncompressed ELF kernel inside bzImage $1 to $2. QEMU boots it through its PVH entry,
# skipping the decompressor (about 2 s of emulated CPU time per L1 boot).
extract_vmlinux() {
    local bzimage=$1 dest=$2 off
    for off in $(LC_ALL=C grep -abo $'\xfd7zXZ' "$bzimage" | cut -d: -f1); do
        tail -c +$((off + 1)) "$bzimage" > "$dest.xz"
        if xz -dc --single-stream "$dest.xz" > "$dest" 2>/dev/null &&
            [[ $(head -c 4 "$dest") == $'\x7fELF' ]]; then
            rm -f "$dest.xz"
            return 0
        fi
    done
    rm -f "$dest" "$dest.xz"
    return 1
}

normalize() { local n=${1##*/}; n=${n%.ko}; echo "${n//-/_}"; }

# Writes, to stdout, the relative paths of the wanted modules and their dependencies, dependencies
# first. $1: modules folder (with modules.dep); $2, $3: names of arrays of required and optional
# module names.
module_closure() {
    local moddir=$1
    local -n required=$2 optional=$3
    local -A path_of=() deps_of=() builtin=() done=()
    local line file name
    while IFS= read -r line; do
        file=${line%%:*}
        name=$(normalize "$file")
        path_of[$name]=$file
        deps_of[$name]=${line#*:}
    done < "$moddir/modules.dep"
    while IFS= read -r file; do
        builtin[$(normalize "$file")]=1
    done < "$moddir/modules.builtin"

    visit() {
        local n=$1 dep
        [[ -n ${done[$n]:-} || -n ${builtin[$n]:-} ]] && return 0
        [[ -n ${path_of[$n]:-} ]] || return 1
        done[$n]=1
        for dep in ${deps_of[$n]}; do
            visit "$(normalize "$dep")" || die "module $n needs $dep, which is missing"
        done
        echo "${path_of[$n]}"
    }
    local m
    for m in "${required[@]}"; do
        visit "$(normalize "$m")" || die "module $m is neither in modules.dep nor built in"
    done
    for m in "${optional[@]}"; do
        visit "$(normalize "$m")" || log "optional module $m not found, skipped"
    done
}

# Writes initramfs $5 (gzip'd cpio), staged in the new folder $1: busybox $3 with its applets, the
# modules of folder $2 that module_closure picks from arrays $6 and $7, copied into /lib/modules
# with their load order in /lib/modules/load-order, and $4 as /init.
make_initramfs() {
    local root=$1 kdir=$2 busybox=$3 init=$4 dest=$5
    mkdir -p "$root"/{bin,dev,proc,sys,host,tmp,mnt,lib/modules}
    cp "$busybox" "$root/bin/busybox"
    local applet
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    module_closure "$kdir" "$6" "$7" > "$root.closure"
    local rel
    while IFS= read -r rel; do
        cp "$kdir/$rel" "$root/lib/modules/"
        echo "${rel##*/}" >> "$root/lib/modules/load-order"
    done < "$root.closure"
    cp "$init" "$root/init"
    chmod 0755 "$root/init"
    (cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 > "$dest"
}

build() {
    local out=$1 work=$2 pkg=$3 version=$4 depmod=$5 busybox=$6
    fetch_kernel_deb "$work" "$pkg" "$version"
    log "unpacking the kernel package"
    dpkg-deb -x "$work/kernel.deb" "$work/pkg" || die "dpkg-deb -x failed on the kernel package"
    local kdir kver
    kdir=$(find "$work/pkg/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [[ -n $kdir ]] || die "the kernel package has no lib/modules/<release> folder"
    kver=${kdir##*/}
    [[ -f $work/pkg/boot/vmlinuz-$kver ]] || die "the kernel package has no boot/vmlinuz-$kver"
    "$depmod" -b "$work/pkg" "$kver" || die "depmod failed"

    log "building the initramfs for $kver"
    make_initramfs "$work/initramfs" "$kdir" "$busybox" "$here/l1-init.sh" "$out/initrd.gz" \
        required_modules optional_modules
    cp "$work/initramfs/lib/modules/load-order" "$out/modules"
    log "building the stock guest's initramfs"
    mkdir "$out/stock-guest"
    local no_optional_modules=()
    make_initramfs "$work/stock-guest" "$kdir" "$busybox" "$stock_guest_init" "$out/stock-guest/initrd.gz" \
        stock_guest_modules no_optional_modules
    cp "$work/stock-guest/lib/modules/load-order" "$out/stock-guest/modules"

    cp "$work/pkg/boot/vmlinuz-$kver" "$out/vmlinuz"
    if ! grep -qx 'CONFIG_PVH=y' "$work/pkg/boot/config-$kver"; then
        log "the kernel has no PVH entry; L1 boots from vmlinuz"
    elif ! command -v xz >/dev/null 2>&1; then
        log "xz not found; L1 boots from vmlinuz (apt-get install xz-utils saves about 2 s per boot)"
    elif ! extract_vmlinux "$out/vmlinuz" "$out/vmlinux"; then
        log "could not extract vmlinux from vmlinuz; L1 boots from vmlinuz"
    fi
    echo "$kver" > "$out/kernel-release"
    local f
    for f in vmlinuz vmlinux kernel-release; do
        if [[ -f $out/$f ]]; then ln -s "../$f" "$out/stock-guest/$f"; fi
    done
}

main() {
    need_tool dpkg-deb dpkg
    need_tool cpio cpio
    need_tool gzip gzip
    local depmod busybox=${EMBER_BUSYBOX:-/bin/busybox}
    depmod=$(find_depmod)
    [[ -x $busybox ]] || die "$busybox not found; install it with: apt-get install busybox-static"
    if ldd "$busybox" 2>&1 | grep -q '=>'; then   # lists shared libraries: not static
        die "$busybox is dynamically linked; install the static one: apt-get install busybox-static"
    fi

    local pkg version hash cache_root dest
    kernel_package
    hash=$( {
        echo "$pkg $version"
        printf '%s\n' "${required_modules[@]}" -- "${optional_modules[@]}"
        sha256sum < "$busybox"
        printf '%s\n' "${stock_guest_modules[@]}"
        cat "$here/l1-init.sh" "$stock_guest_init" "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16)
    cache_root=${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/emulated-host
    dest=$cache_root/$hash
    if [[ -f $dest/vmlinuz && -f $dest/initrd.gz ]]; then
        echo "$dest"
        return
    fi

    mkdir -p "$cache_root" || die "cannot create $cache_root"
    work=$(mktemp -d "$cache_root/.build.XXXXXX")   # global: the EXIT trap runs after main
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/out"
    log "building into $dest (kernel ${pkg##*/} $version)"
    build "$work/out" "$work" "$pkg" "$version" "$depmod" "$busybox"
    chmod 0755 "$work/out"
    # Atomic publish; if a concurrent run won the race, its folder is as good as ours.
    if ! mv -T "$work/out" "$dest" 2>/dev/null; then
        [[ -f $dest/vmlinuz && -f $dest/initrd.gz ]] || die "cannot move the build to $dest"
    fi
    log "done: $(du -sh "$dest" | cut -f1) in $dest"
    echo "$dest"
}

main "$@"
exit
