#!/usr/bin/env bash
# fetch-rust-virtiofsd.sh OUT: the Rust virtiofsd of Debian 13 (trixie),
# the one newer hosts ship, for the e2e test of devbox with it on this
# Debian 12 host. It needs trixie's C library, so OUT/virtiofsd is a
# wrapper that runs it through trixie's own dynamic loader and libraries,
# all extracted under OUT (nothing is installed). The packages come from
# the mirror of the host's APT sources ("bookworm main"), through a
# private APT state, checked against the host's archive keyring. Cached:
# OUT is kept when its wrapper runs.
set -euo pipefail

out=${1:?usage: fetch-rust-virtiofsd.sh OUT}
log() { printf '[fetch-rust-virtiofsd %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x $out/virtiofsd ]] && "$out/virtiofsd" --version >/dev/null 2>&1; then
  log "up to date: $out"
  exit 0
fi
command -v apt-get >/dev/null || { log "ERROR: apt-get is missing (a Debian host is needed)"; exit 1; }
arch=$(dpkg --print-architecture)
mirror=$(apt-get indextargets --format '$(REPO_URI)' "Release: bookworm" 'Component: main' 'Target-Of: deb' 'Identifier: Packages' 2>/dev/null | head -n 1)
mirror=${mirror%/}
[[ -n $mirror ]] || { log "ERROR: the host's APT sources have no 'bookworm main' entry"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb $mirror trixie main" > "$work/sources.list"
apt=(apt-get -q -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
  -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/none"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
log "fetching trixie's virtiofsd and its libraries from $mirror"
"${apt[@]}" update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
(cd "$work" && "${apt[@]}" download virtiofsd libc6 libcap-ng0 libgcc-s1 libseccomp2) >>"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
rm -rf "$out.tmp"
mkdir -p "$out.tmp/root"
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$out.tmp/root"
done
loader=$(cd "$out.tmp/root" && find usr/lib* -name 'ld-linux*.so*' | head -n 1)
[[ -n $loader ]] || { log "ERROR: no dynamic loader in trixie's libc6"; exit 1; }
libdir=$(dirname "$(cd "$out.tmp/root" && find usr/lib -name 'libc.so.6' | head -n 1)")
cat > "$out.tmp/virtiofsd" <<WRAPPER
#!/bin/sh
root=\$(dirname "\$0")/root
exec "\$root/$loader" --library-path "\$root/$libdir" "\$root/usr/libexec/virtiofsd" "\$@"
WRAPPER
chmod 0755 "$out.tmp/virtiofsd"
rm -rf "$out"
mv "$out.tmp" "$out"
log "wrote $out/virtiofsd ($("$out/virtiofsd" --version))"
