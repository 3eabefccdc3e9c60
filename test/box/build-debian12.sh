#!/usr/bin/env bash
# build-debian12.sh OUTPUT.qcow2
#
# Builds a small bootable Debian 12 (bookworm) "cloud image" test box from
# Debian's own packages (debootstrap + extlinux), for devbox's VM tests.
# See README.md next to this script. Must run as root.
#
# Cache: OUTPUT is only rebuilt when it is missing or when OUTPUT.stamp does
# not hold the sha256 of this very script. The image is built in a temp dir
# next to OUTPUT and renamed into place at the end, so a half-built box never
# looks complete.
#
# Optional environment:
#   DEBIAN_MIRROR          default http://deb.debian.org/debian
#   DEBOOTSTRAP_CACHE_DIR  keep downloaded .debs here (speeds up rebuilds)
#   BOX_DISK_SIZE          raw disk size in MiB, default 3072
set -euo pipefail

log() { printf '[build-debian12 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 && -n $1 && $1 != -* ]] || { echo "usage: $0 OUTPUT.qcow2" >&2; exit 2; }

OUT=$(realpath -m -- "$1")
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
STAMP_WANT=$(sha256sum "$SELF" | cut -d' ' -f1)

if [[ -s $OUT && -f $OUT.stamp && "$(cat "$OUT.stamp")" == "$STAMP_WANT" ]]; then
  log "up to date: $OUT (stamp $STAMP_WANT)"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root"

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
DISK_MIB=${BOX_DISK_SIZE:-3072}
PART_OFFSET=$((1024 * 1024))                 # partition starts at 1 MiB
PART_BYTES=$(( DISK_MIB * 1024 * 1024 - PART_OFFSET ))
MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin

# Host tools and the Debian package providing each.
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1' (apt-get install $2)"; }
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

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "$(dirname "$OUT")/.build-debian12.XXXXXX")
ROOT=$WORK/root
MNT=$WORK/mnt
RAW=$WORK/disk.raw
LOOP=
TMP_OUT=

# Unmount everything below $WORK (deepest first), detach loop, remove $WORK.
cleanup() {
  local rc=$? m
  set +e
  trap - EXIT INT TERM
  sync
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
  [[ -n $LOOP ]] && losetup -d "$LOOP"
  [[ -n $TMP_OUT ]] && rm -f "$TMP_OUT" "$TMP_OUT.stamp"
  if awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
    log "WARNING: mounts remain below $WORK, not removing it"
  else
    rm -rf --one-file-system "$WORK"
  fi
  (( rc == 0 )) || log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

T0=$SECONDS
# ---------------------------------------------------------------- debootstrap
log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
DBS_ARGS=(--variant=minbase --components=main --include="$(IFS=,; echo "${INCLUDE[*]}")")
if [[ -n ${DEBOOTSTRAP_CACHE_DIR:-} ]]; then
  mkdir -p "$DEBOOTSTRAP_CACHE_DIR"
  DBS_ARGS+=(--cache-dir="$(realpath "$DEBOOTSTRAP_CACHE_DIR")")
fi
mkdir -p "$ROOT"
if ! debootstrap "${DBS_ARGS[@]}" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 40 "$WORK/debootstrap.log" >&2
  [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 40 "$ROOT/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi
log "debootstrap done ($((SECONDS - T0))s)"

# ---------------------------------------------------------------- configure
log "configuring the guest"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"

cat >"$ROOT/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF

# Hostname: cloud-init sets the real one from meta-data.
echo localhost >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# debootstrap copied the build host's resolv.conf; dhclient writes the guest's.
rm -f "$ROOT/etc/resolv.conf"

# ifupdown: loopback only; cloud-init renders the NIC (DHCP) into interfaces.d.
cat >"$ROOT/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
mkdir -p "$ROOT/etc/network/interfaces.d"

# cloud-init: NoCloud seed (cidata) or nothing; keep our apt sources.
cat >"$ROOT/etc/cloud/cloud.cfg.d/90-devbox-box.cfg" <<'EOF'
# devbox test box (test/box/build-debian12.sh)
datasource_list: [NoCloud, None]
apt:
  preserve_sources_list: true
manage_etc_hosts: true
EOF
# No locales are generated in this box: drop cloud-init's locale module
# (it would run locale-gen for en_US.UTF-8 on first boot, slow under TCG).
sed -i '/^ *- locale$/d' "$ROOT/etc/cloud/cloud.cfg"

# sshd: host keys come from cloud-init (ssh_keys) on first boot; if none are
# there for some reason, generate them instead of failing `sshd -t`.
rm -f "$ROOT"/etc/ssh/ssh_host_*
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
cat >"$ROOT/etc/systemd/system/ssh.service.d/10-devbox-hostkeys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF

# Background apt jobs would grab the dpkg lock while devbox installs Docker.
# Masked (not disabled): first boot with an empty machine-id runs preset-all.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1

# Keep future package installs small too.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-devbox-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
cat >"$ROOT/etc/apt/apt.conf.d/01-devbox-norecommends" <<'EOF'
APT::Install-Recommends "false";
EOF

# initramfs: virtio disk + PCI must be in it (no AHCI/SATA in the cloud kernel).
cat >>"$ROOT/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
ext4
EOF
in_root update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }

KVER=$(basename "$(readlink -f "$ROOT/vmlinuz")"); KVER=${KVER#vmlinuz-}
[[ -f $ROOT/boot/vmlinuz-$KVER && -f $ROOT/boot/initrd.img-$KVER ]] || die "kernel/initrd not found ($KVER)"
in_root lsinitramfs "/boot/initrd.img-$KVER" >"$WORK/initrd.list"
for mod in virtio_pci virtio_blk; do
  if grep -q "^CONFIG_${mod^^}=y" "$ROOT/boot/config-$KVER"; then
    log "initramfs check: $mod is built into kernel $KVER"
  elif grep -q "/$mod\.ko" "$WORK/initrd.list"; then
    log "initramfs check: $mod.ko is in initrd.img-$KVER"
  else
    die "$mod missing from kernel and initramfs $KVER"
  fi
done

# Clean: machine identity, logs, caches, docs.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
in_root apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
  "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old \
  "$ROOT"/var/cache/ldconfig/aux-cache \
  "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/root/.bash_history
mkdir -p "$ROOT/var/lib/apt/lists/partial"
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOT/var/log" -type f -delete
rm -rf "$ROOT/var/lib/cloud"

umount "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"
log "configured ($((SECONDS - T0))s)"

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
log "converting to compressed qcow2"
TMP_OUT=$(mktemp "$(dirname "$OUT")/.$(basename "$OUT").XXXXXX")
qemu-img convert -c -O qcow2 "$RAW" "$TMP_OUT"
chmod 0644 "$TMP_OUT"
echo "$STAMP_WANT" >"$TMP_OUT.stamp"
mv -f "$TMP_OUT" "$OUT"
mv -f "$TMP_OUT.stamp" "$OUT.stamp"
TMP_OUT=
log "done in $((SECONDS - T0))s: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER)"
