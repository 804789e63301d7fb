#!/usr/bin/env bash
# Build the Debian 12 guest image of the molecule scenarios, offline from the host's apt mirror, and cache it under
# a key of its inputs (this script and the host's apt sources): a second run with the same inputs only prints the
# directory. Output (in $CNF_VM_CACHE/<key>/): disk.qcow2 (ext4 root, no partition table), vmlinuz, initrd.img,
# id_ed25519 (root's SSH key). Needs root, mmdebstrap, qemu-utils, e2fsprogs.
# The hooks are run by mmdebstrap with the root directory as $1: single quotes are meant.
# shellcheck disable=SC2016
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${CNF_VM_CACHE:-$repo/.build/vm}"
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
# What the guest needs: the modules' toolchain and libraries, and bcc with the kernel's headers (bpf_host would
# install them; baking them in keeps every scenario fast under emulation and the guest offline), SSH, and systemd.
packages=(
    systemd-sysv udev kmod dbus iproute2 openssh-server python3 python3-apt
    linux-image-amd64 clang llvm libbpf1 libbpf-dev bpftool libc6-dev linux-libc-dev
    python3-pyroute2 python3-jmespath
    python3-bpfcc linux-headers-amd64
)
key="$(cat "$0" "$sources" | sha256sum | cut -c1-16)"
out="$cache/$key"
if [ -s "$out/disk.qcow2" ] && [ -s "$out/vmlinuz" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/.build.XXXX")"
trap 'rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N "" -C cnf-ebpf-molecule -f "$work/id_ed25519"
include="$(IFS=,; echo "${packages[*]}")"
mmdebstrap --variant=minbase --include="$include" \
    --customize-hook='echo cnf-guest > "$1/etc/hostname"' \
    --customize-hook='mkdir -p "$1/root/.ssh" && chmod 700 "$1/root/.ssh"' \
    --customize-hook="upload $work/id_ed25519.pub /root/.ssh/authorized_keys" \
    --customize-hook='printf "/dev/vda / ext4 defaults 0 1\nbpf /sys/fs/bpf bpf defaults 0 0\n" > "$1/etc/fstab"' \
    --customize-hook='printf "[Match]\nName=eth0\n[Network]\nAddress=10.0.2.15/24\n" > "$1/etc/systemd/network/10-eth0.network"' \
    --customize-hook='printf "[Match]\nName=eth1\n[Network]\nLinkLocalAddressing=no\n" > "$1/etc/systemd/network/20-eth1.network"' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
    --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service' \
    --customize-hook='printf "UseDNS no\nPermitRootLogin prohibit-password\n" > "$1/etc/ssh/sshd_config.d/cnf.conf"' \
    --customize-hook='chroot "$1" sh -c "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A"' \
    bookworm "$work/root" "$sources"
cp "$work/root/boot/"vmlinuz-* "$work/vmlinuz"
cp "$work/root/boot/"initrd.img-* "$work/initrd.img"
truncate -s 4G "$work/disk.raw"
mkfs.ext4 -q -F -L root -d "$work/root" "$work/disk.raw"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
mkdir -p "$out"
mv "$work/disk.qcow2" "$work/vmlinuz" "$work/initrd.img" "$work/id_ed25519" "$work/id_ed25519.pub" "$out/"
# Images of older inputs are dead weight (over 1 GiB each).
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name ".build.*" -exec rm -rf {} +
echo "$out"
