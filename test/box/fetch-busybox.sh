#!/usr/bin/env bash
# fetch-busybox.sh ARCH OUT: Debian 12's static busybox for ARCH (a Debian
# architecture: arm64, amd64, ...) extracted to OUT, for tests that build a
# FROM-scratch image of a foreign architecture on this host. It uses a
# private APT state (the host's APT sources, ARCH only), so the host's own
# package architectures and lists are left alone. Cached: OUT is kept when
# it exists.
set -euo pipefail

arch=${1:?usage: fetch-busybox.sh ARCH OUT}
out=${2:?usage: fetch-busybox.sh ARCH OUT}
log() { printf '[fetch-busybox %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x $out ]]; then
  log "up to date: $out"
  exit 0
fi
command -v apt-get >/dev/null || { log "ERROR: apt-get is missing (a Debian host is needed)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
apt=(apt-get -q -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
log "fetching busybox-static:$arch from the host's APT sources"
"${apt[@]}" update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
(cd "$work" && "${apt[@]}" download "busybox-static:$arch") >>"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
dpkg-deb -x "$work"/busybox-static_*.deb "$work/root"
mkdir -p "$(dirname "$out")"
install -m 0755 "$work/root/bin/busybox" "$out.tmp"
mv "$out.tmp" "$out"
log "wrote $out ($(file -b "$out" | cut -d, -f1-2))"
