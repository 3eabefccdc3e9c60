#!/usr/bin/env bash
# debian-amd64.sh OUTPUT.qcow2
#
# Builds a small bootable Debian (bookworm by default) "cloud image" box
# from Debian's own packages (debootstrap + extlinux): devbox's test box, and
# what `devbox box build` runs (with BOX_ENGINE=docker, the engine baked in).
# See README.md next to this script. Must run as root.
#
# Cache: OUTPUT is only rebuilt when it is missing or when OUTPUT.stamp does
# not hold the sha256 of this script, lib.sh, the APT sources it bakes
# into the guest and the engine. The image is built in a temp dir next to OUTPUT and renamed
# into place at the end, so a half-built box never looks complete.
#
# Mirror: the host's own APT sources for the Debian suite (main) are used for
# debootstrap and written into the guest (the suite, -updates, -security, as
# far as the host has them). See lib.sh.
#
# Optional environment (and BOX_SUITE, BOX_ENGINE, DEBIAN_MIRROR: see lib.sh):
#   DEBOOTSTRAP_CACHE_DIR  keep downloaded .debs here (speeds up rebuilds)
#   BOX_DISK_SIZE          raw disk size in MiB, default 3072
set -euo pipefail

[[ $# -eq 1 && -n $1 && $1 != -* ]] || { echo "usage: $0 OUTPUT.qcow2" >&2; exit 2; }

OUT=$(realpath -m -- "$1")
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
BOX_NAME=box-debian-amd64
# shellcheck source=boxes/build/lib.sh
. "$(dirname "$SELF")/lib.sh"
box_start

DISK_MIB=${BOX_DISK_SIZE:-3072}
PART_OFFSET=$((1024 * 1024))                 # partition starts at 1 MiB
PART_BYTES=$(( DISK_MIB * 1024 * 1024 - PART_OFFSET ))
MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin

# Host tools and the Debian package providing each (need: lib.sh).
need debootstrap debootstrap
need extlinux extlinux
need qemu-img qemu-utils
need mkfs.ext4 e2fsprogs
need sfdisk fdisk
need losetup mount
need sha256sum coreutils
[[ -f $MBR_BIN ]] || die "missing $MBR_BIN (apt-get install syslinux-common)"

# Packages in the guest. Why the odd ones are here: see README.md.
INCLUDE=(
  linux-image-cloud-amd64 initramfs-tools kmod
  systemd-sysv udev dbus libpam-systemd
  openssh-server sudo
  cloud-init python3-cffi-backend cloud-guest-utils fdisk e2fsprogs
  ifupdown isc-dhcp-client iproute2 netbase
  ca-certificates procps
)

box_workdir

T0=$SECONDS
# ---------------------------------------------------------------- debootstrap
log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
box_debootstrap
log "debootstrap done ($((SECONDS - T0))s)"

# ---------------------------------------------------------------- configure
box_configure
box_engine

# initramfs: virtio disk + PCI must be in it (no AHCI/SATA in the cloud kernel).
box_initramfs virtio_pci virtio_blk ext4

# Clean: machine identity, logs, caches, docs.
box_clean

# ---------------------------------------------------------------- disk
TREE_MIB=$(du -sm --one-file-system "$ROOT" | cut -f1)
(( TREE_MIB * 5 / 4 + 64 < DISK_MIB )) || die "tree ($TREE_MIB MiB) does not fit a $DISK_MIB MiB disk"
log "tree is $TREE_MIB MiB"
log "creating ${DISK_MIB} MiB raw disk (msdos, ext4 at 1 MiB)"
truncate -s "${DISK_MIB}M" "$RAW"
printf 'label: dos\nstart=%d, size=%d, type=83, bootable\n' \
  $((PART_OFFSET / 512)) $((PART_BYTES / 512)) | sfdisk -q "$RAW"
# The kernel's partition devices (loopNp1) do not exist in every sandbox:
# map the partition directly with an offset loop device.
LOOP=$(losetup -f --show -o "$PART_OFFSET" --sizelimit "$PART_BYTES" "$RAW")
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
# ^64bit: keep syslinux's ext4 reader on the safe side; fs stays < 16 TiB.
mkfs.ext4 -q -F -L debian-root -U "$ROOT_UUID" -O ^64bit "$LOOP"
mkdir -p "$MNT"
mount -t ext4 "$LOOP" "$MNT"
log "copying tree to $LOOP"
cp -a "$ROOT/." "$MNT/"

cat >"$MNT/etc/fstab" <<EOF
# <fs>                                    <mount> <type> <options>          <dump> <pass>
UUID=$ROOT_UUID /       ext4   errors=remount-ro  0      1
EOF

log "installing extlinux"
mkdir -p "$MNT/boot/extlinux"
cat >"$MNT/boot/extlinux/extlinux.conf" <<EOF
# devbox test box. /vmlinuz and /initrd.img are kept current by the kernel package.
DEFAULT debian
PROMPT 0
TIMEOUT 1
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200
EOF
extlinux --install "$MNT/boot/extlinux" 2>&1 | sed 's/^/  extlinux: /' >&2
sync
umount "$MNT"
losetup -d "$LOOP"; LOOP=
# extlinux cannot learn the partition offset from a loop device: set the boot
# sector's "hidden sectors" (FAT-style BPB field at 0x1C) to the partition
# start, so ldlinux is found whether or not the MBR hands over the offset.
printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' \
  $(( (PART_OFFSET/512) & 255 )) $(( (PART_OFFSET/512 >> 8) & 255 )) \
  $(( (PART_OFFSET/512 >> 16) & 255 )) $(( (PART_OFFSET/512 >> 24) & 255 )))" |
  dd of="$RAW" bs=1 seek=$((PART_OFFSET + 0x1C)) conv=notrunc status=none
dd if="$MBR_BIN" of="$RAW" bs=440 count=1 conv=notrunc status=none

# ---------------------------------------------------------------- qcow2
box_qcow2
