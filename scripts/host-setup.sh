#!/bin/bash
# Prepares a Debian/Ubuntu host (as root) to run devbox and its tests:
# installs libvirt, QEMU and the tools that build the test box, and starts
# virtlogd and libvirtd when they are not running (with or without systemd).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "host-setup: run as root (sudo $0)" >&2
  exit 1
fi

packages=(
  qemu-system-x86 qemu-utils libvirt-daemon-system   # the hypervisor and libvirtd
  debootstrap extlinux syslinux-common e2fsprogs fdisk genisoimage  # building the test box; its smoke-boot seed ISO
  busybox-static                                      # FROM-scratch test images
  openssh-client                                      # the OpenSSH baseline in benchmarks
  libvirt-clients libxml2-utils                       # virt-xml-validate (make lint)
  shellcheck                                          # the shell scripts, embedded ones too (make lint)
  gcc libc6-dev                                        # cgo, for the race detector (make test-unit)
  qemu-user-static dosfstools mtools                  # building the arm64 test box
  qemu-system-arm qemu-efi-aarch64                    # arm64 guests (TCG, UEFI firmware)
  make
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "host-setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Without udev (containers), /dev/kvm stays root-only. libvirt probes QEMU
# as root (KVM works) but checks the cached probe as its QEMU user (KVM
# unusable), so it throws the cache away and probes QEMU again on every
# define: 30-90 s each under emulation. Give /dev/kvm udev's usual mode.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" = root ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

socket=/var/run/libvirt/libvirt-sock
if [ -d /run/systemd/system ]; then
  systemctl start virtlogd libvirtd
else
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi
# Wait for the socket to answer, bounded.
for _ in $(seq 1 100); do
  [ -S "$socket" ] && break
  sleep 0.1
done
if [ ! -S "$socket" ]; then
  echo "host-setup: libvirtd did not create $socket" >&2
  exit 1
fi
echo "host-setup: libvirt is up at $socket"
