#!/bin/sh
# Mounts virtio-fs tag $1 at $2 in the guest (as root), with mode $3 (rw,
# or ro: its virtiofsd refuses writes anyway), replacing whatever
# is mounted there (the reverse-SSHFS mount of an earlier agent, or a
# virtio-fs mount whose device was replaced). Exits 0 at once if the tag
# is already mounted there.
set -eu
tag=$1
path=$2
mode=${3:-rw}
if [ "$(findmnt -rn -o SOURCE,FSTYPE -M "$path" 2>/dev/null | tail -n 1)" = "$tag virtiofs" ]; then
	exit 0
fi
while mountpoint -q "$path"; do
	umount -l "$path"
done
mkdir -p "$path"
modprobe virtiofs 2>/dev/null || true
mount -t virtiofs -o "$mode" "$tag" "$path"
