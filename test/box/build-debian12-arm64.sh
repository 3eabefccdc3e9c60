#!/usr/bin/env bash
# build-debian12-arm64.sh OUTPUT.qcow2
#
# The arm64 twin of build-debian12.sh: a small bootable Debian 12 (bookworm)
# "cloud image" test box for arm64 (aarch64) guests, from Debian's own
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
# not hold the sha256 of this script plus the APT sources it bakes into the
# guest. The image is built in a temp dir next to OUTPUT and renamed into
# place at the end, so a half-built box never looks complete.
#
# Mirror: the host's own APT sources for Debian bookworm (main) are used for
# debootstrap and written into the guest (bookworm, -updates, -security, as
# far as the host has them).
#
# Optional environment:
#   DEBIAN_MIRROR          Debian archive to use instead of the host's bookworm one
#   DEBOOTSTRAP_CACHE_DIR  keep downloaded .debs here (speeds up rebuilds)
#   BOX_DISK_SIZE          raw disk size in MiB, default 3072
set -euo pipefail

log() { printf '[build-debian12-arm64 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 && -n $1 && $1 != -* ]] || { echo "usage: $0 OUTPUT.qcow2" >&2; exit 2; }

OUT=$(realpath -m -- "$1")
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
SUITE=bookworm

# The host's APT URI for Debian "$1 main" (binary packages), if it has one.
host_repo() {
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
  apt-get indextargets --no-release-info --format '$(REPO_URI)' \
    "Release: $1" 'Component: main' 'Target-Of: deb' 'Identifier: Packages' 2>/dev/null |
    awk 'NR == 1 { sub(/\/+$/, ""); print }'
}
command -v apt-get >/dev/null 2>&1 || die "missing 'apt-get' (the mirror comes from the host's APT sources; or set DEBIAN_MIRROR)"
MIRROR=${DEBIAN_MIRROR:-$(host_repo "$SUITE")}
MIRROR=${MIRROR%/}
[[ -n $MIRROR ]] || die "the host's APT sources have no Debian '$SUITE main' entry (set DEBIAN_MIRROR)"
UPDATES=$(host_repo "$SUITE-updates"); UPDATES=${UPDATES:-$MIRROR}
SECURITY=$(host_repo "$SUITE-security")
GUEST_SOURCES="deb $MIRROR $SUITE main
deb $UPDATES $SUITE-updates main"
[[ -n $SECURITY ]] && GUEST_SOURCES+="
deb $SECURITY $SUITE-security main"

STAMP_WANT=$({ cat "$SELF"; printf '%s\n' "$GUEST_SOURCES"; } | sha256sum | cut -d' ' -f1)

if [[ -s $OUT && -f $OUT.stamp && "$(cat "$OUT.stamp")" == "$STAMP_WANT" ]]; then
  log "up to date: $OUT (stamp $STAMP_WANT)"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root"

DISK_MIB=${BOX_DISK_SIZE:-3072}
# GPT like Debian's own arm64 cloud images: the ESP (partition 15) first, the
# root (partition 1) after it and last on the disk, so cloud-init can grow it.
ESP_OFFSET=$((1024 * 1024))                  # ESP at 1 MiB ...
ESP_BYTES=$((127 * 1024 * 1024))             # ... 127 MiB, FAT32
PART_OFFSET=$((ESP_OFFSET + ESP_BYTES))      # root at 128 MiB ...
PART_BYTES=$(( DISK_MIB * 1024 * 1024 - PART_OFFSET - 1024 * 1024 ))  # ... leaving 1 MiB for the backup GPT
BINFMT=/proc/sys/fs/binfmt_misc

# Host tools and the Debian package providing each.
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1' (apt-get install $2)"; }
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

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "$(dirname "$OUT")/.build-debian12-arm64.XXXXXX")
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
log "debootstrap --arch arm64 $SUITE (minbase) from $MIRROR into $ROOT"
DBS_ARGS=(--arch=arm64 --variant=minbase --components=main --include="$(IFS=,; echo "${INCLUDE[*]}")")
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
[[ $(in_root dpkg --print-architecture) == arm64 ]] || die "the chroot is not arm64"
log "debootstrap done ($((SECONDS - T0))s)"

# ---------------------------------------------------------------- configure
log "configuring the guest"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"

printf '%s\n' "$GUEST_SOURCES" >"$ROOT/etc/apt/sources.list"

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
# devbox test box (test/box/build-debian12-arm64.sh)
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

# initramfs: virtio disk on PCI (libvirt, QEMU -M virt) or MMIO, and ext4.
cat >>"$ROOT/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_mmio
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
log "converting to compressed qcow2"
TMP_OUT=$(mktemp "$(dirname "$OUT")/.$(basename "$OUT").XXXXXX")
qemu-img convert -c -O qcow2 "$RAW" "$TMP_OUT"
chmod 0644 "$TMP_OUT"
echo "$STAMP_WANT" >"$TMP_OUT.stamp"
mv -f "$TMP_OUT" "$OUT"
mv -f "$TMP_OUT.stamp" "$OUT.stamp"
TMP_OUT=
log "done in $((SECONDS - T0))s: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER)"
