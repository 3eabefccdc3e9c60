# shellcheck shell=bash
# Installs sshfs (after apt.sh). fuse3 asks for a new initramfs, which
# takes minutes under software emulation and is of no use here (the root
# filesystem is not on FUSE; the next kernel update rebuilds it anyway),
# so initramfs updates are paused for the install and restored after.
conf=/etc/initramfs-tools/update-initramfs.conf
if [ -f "$conf" ] && grep -q '^update_initramfs=yes' "$conf"; then
  sed -i 's/^update_initramfs=yes/update_initramfs=no/' "$conf"
  trap 'sed -i "s/^update_initramfs=no/update_initramfs=yes/" "$conf"' EXIT
fi
apt_install sshfs
