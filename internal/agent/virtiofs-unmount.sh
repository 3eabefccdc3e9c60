#!/bin/sh
# Unmounts every mount of virtio-fs tag $1 in the guest (as root), so that
# its device can go.
set -eu
findmnt -rn -t virtiofs -S "$1" -o TARGET | while read -r path; do
	umount -l "$path"
done
