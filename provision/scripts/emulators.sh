# shellcheck shell=bash
# Installs Debian's qemu-user-static (after apt.sh) and has systemd-binfmt
# register the emulators named in $names, in $binfmt_dir. Their entries
# must carry the F flag (the kernel opens the emulator at registration):
# that is what lets a container, whose root has no /usr/bin/qemu-*, run a
# foreign binary.
: "${names:?}" "${binfmt_dir:?}"
if ! dpkg-query -W -f '${Status}' qemu-user-static 2>/dev/null | grep -q 'ok installed'; then
  apt_install qemu-user-static
fi
systemctl restart systemd-binfmt
for n in $names; do
  f=$binfmt_dir/qemu-$n
  if ! grep -qx enabled "$f" 2>/dev/null; then
    echo "the emulator qemu-$n is not registered with binfmt_misc ($f is missing or disabled)" >&2
    exit 1
  fi
  grep -q '^flags: .*F' "$f" || { echo "qemu-$n is registered without the F flag: containers cannot use it ($(grep flags "$f"))" >&2; exit 1; }
  echo "qemu-$n: registered ($(grep '^interpreter' "$f"))"
done
