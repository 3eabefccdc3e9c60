#!/usr/bin/env bash
# debian-arm64.sh OUTPUT.qcow2
#
# The arm64 twin of debian-amd64.sh: a small bootable Debian (bookworm by
# default) "cloud image" box for arm64 (aarch64) guests, from Debian's own
# packages (debootstrap --arch arm64 through qemu-user-static, GRUB on an EFI
# system partition). See README.md next to this script. Must run as root.
#
# Same guest as the x86_64 box (packages, cloud-init, sshd, apt settings)
# except the kernel (linux-image-cloud-arm64), the boot path (GPT disk, ESP
# with GRUB at the removable-media path EFI/BOOT/BOOTAA64.EFI, so UEFI
# firmware without boot entries finds it) and the serial console (ttyAMA0,
# the PL011 UART of QEMU's "virt" machine).
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
BOX_NAME=box-debian-arm64
# shellcheck source=boxes/build/lib.sh
. "$(dirname "$SELF")/lib.sh"
box_start

DISK_MIB=${BOX_DISK_SIZE:-3072}
# GPT like Debian's own arm64 cloud images: the ESP (partition 15) first, the
# root (partition 1) after it and last on the disk, so cloud-init can grow it.
ESP_OFFSET=$((1024 * 1024))                  # ESP at 1 MiB ...
ESP_BYTES=$((127 * 1024 * 1024))             # ... 127 MiB, FAT32
PART_OFFSET=$((ESP_OFFSET + ESP_BYTES))      # root at 128 MiB ...
PART_BYTES=$(( DISK_MIB * 1024 * 1024 - PART_OFFSET - 1024 * 1024 ))  # ... leaving 1 MiB for the backup GPT
BINFMT=/proc/sys/fs/binfmt_misc

# Host tools and the Debian package providing each (need: lib.sh).
need debootstrap debootstrap
need qemu-aarch64-static qemu-user-static
need qemu-img qemu-utils
need mkfs.ext4 e2fsprogs
need mkfs.vfat dosfstools
need mcopy mtools
need sfdisk fdisk
need losetup mount
need sha256sum coreutils

# Packages in the guest: the x86_64 box's list (see README.md) with the arm64
# kernel, plus GRUB for arm64 EFI (it builds the boot loader below and keeps
# grub.cfg current on kernel upgrades in the guest).
INCLUDE=(
  linux-image-cloud-arm64 initramfs-tools kmod
  grub-efi-arm64
  systemd-sysv udev dbus libpam-systemd
  openssh-server sudo
  cloud-init python3-cffi-backend cloud-guest-utils fdisk e2fsprogs
  ifupdown isc-dhcp-client iproute2 netbase
  ca-certificates procps
)

# ---------------------------------------------------------------- binfmt
# arm64 programs run in the chroot through qemu-user-static's binfmt_misc
# entry. Its "F" flag makes the kernel open the interpreter now, so it need
# not exist inside the chroot. Without systemd-binfmt or binfmt-support (e.g.
# in a container) nothing registers it: do it here.
if [[ ! -e $BINFMT/register ]]; then
  log "mounting binfmt_misc on $BINFMT"
  mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
fi
[[ $(cat "$BINFMT/status") == enabled ]] || die "binfmt_misc is disabled ($BINFMT/status)"
if [[ ! -e $BINFMT/qemu-aarch64 ]]; then
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [[ -f $conf ]] || die "missing $conf (apt-get install qemu-user-static)"
  log "registering qemu-aarch64 with binfmt_misc ($conf)"
  grep -v '^[#;]' "$conf" | grep . >"$BINFMT/register" || die "cannot register $conf in $BINFMT/register"
fi
[[ $(head -n1 "$BINFMT/qemu-aarch64") == enabled ]] || die "binfmt_misc entry qemu-aarch64 is disabled"
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" ||
  die "binfmt_misc entry qemu-aarch64 lacks the F (fix binary) flag: chroots cannot run arm64 programs"

box_workdir

T0=$SECONDS
# ---------------------------------------------------------------- debootstrap
log "debootstrap --arch arm64 $SUITE (minbase) from $MIRROR into $ROOT"
box_debootstrap --arch=arm64
[[ $(in_root dpkg --print-architecture) == arm64 ]] || die "the chroot is not arm64"
log "debootstrap done ($((SECONDS - T0))s)"

# ---------------------------------------------------------------- configure
box_configure
box_engine

# initramfs: virtio disk on PCI (libvirt, QEMU -M virt) or MMIO, and ext4.
box_initramfs virtio_pci virtio_mmio virtio_blk ext4
grep -q '^CONFIG_SERIAL_AMBA_PL011_CONSOLE=y' "$ROOT/boot/config-$KVER" ||
  die "kernel $KVER has no PL011 serial console (ttyAMA0)"

# ---------------------------------------------------------------- GRUB
# The host kernel may have no FAT driver, so the ESP is never mounted here:
# grub-install (which wants the ESP mounted) is replaced by what it does for
# --removable: grub-mkimage builds EFI/BOOT/BOOTAA64.EFI with a small config
# that finds the root file system by UUID, and the modules go to
# /boot/grub/arm64-efi. The ESP is filled with mtools below.
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
ESP_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
ESP_UUID=$(printf '%s-%s' "${ESP_ID:0:4}" "${ESP_ID:4:4}" | tr 'a-f' 'A-F')
log "building the GRUB EFI image"
GRUB_MODS=/usr/lib/grub/arm64-efi
mkdir -p "$ROOT/boot/grub/arm64-efi"
cp "$ROOT$GRUB_MODS"/*.mod "$ROOT$GRUB_MODS"/*.lst "$ROOT/boot/grub/arm64-efi/"
cat >"$ROOT/tmp/grub-early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $ROOT_UUID
set prefix=(\$root)/boot/grub
EOF
in_root grub-mkimage -O arm64-efi -d "$GRUB_MODS" -p /boot/grub -c /tmp/grub-early.cfg \
  -o /tmp/BOOTAA64.EFI part_gpt part_msdos ext2 fat search search_fs_uuid \
  normal configfile linux gzio echo test all_video ||
  die "grub-mkimage failed"
mv "$ROOT/tmp/BOOTAA64.EFI" "$WORK/BOOTAA64.EFI"
rm -f "$ROOT/tmp/grub-early.cfg"

# grub.cfg by hand (update-grub in this chroot would name the build's loop
# device as root). /vmlinuz and /initrd.img are kept current by the kernel
# package; a kernel upgrade in the guest runs update-grub, which rewrites this
# file from /etc/default/grub (same command line).
cat >"$ROOT/boot/grub/grub.cfg" <<EOF
# devbox test box (arm64). Replaced by update-grub on kernel upgrades.
set timeout=0
insmod part_gpt
insmod ext2
insmod gzio
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'Debian GNU/Linux 12' {
  linux /vmlinuz root=UUID=$ROOT_UUID ro console=tty0 console=ttyAMA0
  initrd /initrd.img
}
EOF
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
  -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyAMA0"/' \
  "$ROOT/etc/default/grub"
grep -q '^GRUB_CMDLINE_LINUX="console=tty0 console=ttyAMA0"$' "$ROOT/etc/default/grub" ||
  die "could not set GRUB_CMDLINE_LINUX in /etc/default/grub"
# When grub-efi-arm64 is upgraded in the guest, reinstall to the removable
# path too (the one the firmware boots here) and leave the NVRAM alone.
in_root debconf-set-selections <<'EOF'
grub-efi-arm64 grub2/force_efi_extra_removable boolean true
grub-efi-arm64 grub2/update_nvram boolean false
EOF

# Clean: machine identity, logs, caches, docs.
box_clean

# ---------------------------------------------------------------- disk
TREE_MIB=$(du -sm --one-file-system "$ROOT" | cut -f1)
(( TREE_MIB * 5 / 4 + 64 < PART_BYTES / 1024 / 1024 )) || die "tree ($TREE_MIB MiB) does not fit a $DISK_MIB MiB disk"
log "tree is $TREE_MIB MiB"
log "creating ${DISK_MIB} MiB raw disk (gpt: ESP FAT32 at 1 MiB, ext4 root at $((PART_OFFSET / 1024 / 1024)) MiB)"
truncate -s "${DISK_MIB}M" "$RAW"
sfdisk -q "$RAW" <<EOF
label: gpt
${RAW}1 : start=$((PART_OFFSET / 512)), size=$((PART_BYTES / 512)), type=L, name="root"
${RAW}15 : start=$((ESP_OFFSET / 512)), size=$((ESP_BYTES / 512)), type=U, name="esp"
EOF
sfdisk -d "$RAW" >"$WORK/gpt.dump"
if ! grep -q "^${RAW}1 : start= *$((PART_OFFSET / 512)), size= *$((PART_BYTES / 512)), type=0FC63DAF-" "$WORK/gpt.dump" ||
   ! grep -q "^${RAW}15 : start= *$((ESP_OFFSET / 512)), size= *$((ESP_BYTES / 512)), type=C12A7328-" "$WORK/gpt.dump"; then
  cat "$WORK/gpt.dump" >&2; die "unexpected partition table"
fi

# ESP: written straight into the image file at its offset, filled by mtools.
# -s 1: 512-byte clusters, so 127 MiB holds enough clusters to be FAT32.
mkfs.vfat -F 32 -s 1 -n EFI -i "$ESP_ID" --offset $((ESP_OFFSET / 512)) -h $((ESP_OFFSET / 512)) \
  "$RAW" $((ESP_BYTES / 1024)) >"$WORK/mkfs.vfat.log" 2>&1 || { cat "$WORK/mkfs.vfat.log" >&2; die "mkfs.vfat failed"; }
ESP_IMG="$RAW@@$ESP_OFFSET"
MTOOLS_SKIP_CHECK=1 mmd -i "$ESP_IMG" ::/EFI ::/EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -i "$ESP_IMG" "$WORK/BOOTAA64.EFI" ::/EFI/BOOT/BOOTAA64.EFI

# Root: the kernel's partition devices (loopNp1) do not exist in every
# sandbox: map the partition directly with an offset loop device.
LOOP=$(losetup -f --show -o "$PART_OFFSET" --sizelimit "$PART_BYTES" "$RAW")
mkfs.ext4 -q -F -L debian-root -U "$ROOT_UUID" "$LOOP"
mkdir -p "$MNT"
mount -t ext4 "$LOOP" "$MNT"
log "copying tree to $LOOP"
cp -a "$ROOT/." "$MNT/"
mkdir -p "$MNT/boot/efi"

cat >"$MNT/etc/fstab" <<EOF
# <fs>                                    <mount>   <type> <options>          <dump> <pass>
UUID=$ROOT_UUID /         ext4   errors=remount-ro  0      1
UUID=$ESP_UUID                            /boot/efi vfat   umask=0077         0      0
EOF
sync
umount "$MNT"
losetup -d "$LOOP"; LOOP=

# ---------------------------------------------------------------- qcow2
box_qcow2
