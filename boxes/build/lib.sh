# shellcheck shell=bash
# lib.sh: sourced by debian-amd64.sh and debian-arm64.sh (not run on its
# own), which `devbox box build` and `make box` run. What the two share: logging, the Debian mirror
# (taken from the host's APT sources, or DEBIAN_MIRROR), the guest's APT
# sources written from it, the build directory and its cleanup, debootstrap,
# the guest configuration, the initramfs check, the final clean-up of the
# tree and the qcow2 at the end. The scripts' stamps hash this file too.
# The caller sets BOX_NAME (log prefix), SELF (its own path) and OUT first,
# then calls box_start.
#
# Environment (both scripts):
#   BOX_SUITE        Debian suite to build: bookworm (default) or trixie
#   BOX_ENGINE       none (default) or docker: bake the Docker engine and
#                    sshfs in, so devbox provisioning installs nothing
#   BOX_STAMP_ONLY   1: print the stamp of these inputs and exit
#   DEBIAN_MIRROR    Debian archive instead of the host's entry for the suite
# shellcheck disable=SC2034 # MNT, RAW, KVER, ...: used by the build scripts

log() { printf '[%s %s] %s\n' "$BOX_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Host tools and the Debian package providing each.
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1' (apt-get install $2)"; }

BOX_LIB=$(readlink -f -- "${BASH_SOURCE[0]}")

# The host's APT URI for Debian "$1 main" (binary packages), if it has one.
host_repo() {
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
  apt-get indextargets --no-release-info --format '$(REPO_URI)' \
    "Release: $1" 'Component: main' 'Target-Of: deb' 'Identifier: Packages' 2>/dev/null |
    awk 'NR == 1 { sub(/\/+$/, ""); print }'
}

# box_sources SUITE: sets MIRROR (debootstrap's archive: DEBIAN_MIRROR, else
# the host's "SUITE main" entry) and GUEST_SOURCES, the guest's sources.list:
# SUITE from MIRROR, SUITE-updates from the host's entry (else MIRROR) and
# SUITE-security from the host's entry; without one the guest has no
# security suite (no archive host name is made up here).
box_sources() {
  local suite=$1 updates security
  command -v apt-get >/dev/null 2>&1 || die "missing 'apt-get' (the mirror comes from the host's APT sources; or set DEBIAN_MIRROR)"
  MIRROR=${DEBIAN_MIRROR:-$(host_repo "$suite")}
  MIRROR=${MIRROR%/}
  [[ -n $MIRROR ]] || die "the host's APT sources have no Debian '$suite main' entry (set DEBIAN_MIRROR)"
  updates=$(host_repo "$suite-updates"); updates=${updates:-$MIRROR}
  security=$(host_repo "$suite-security")
  GUEST_SOURCES="deb $MIRROR $suite main
deb $updates $suite-updates main"
  if [[ -n $security ]]; then
    GUEST_SOURCES+="
deb $security $suite-security main"
  else
    log "WARNING: the host's APT sources have no '$suite-security main' entry: the guest gets none"
  fi
}

# box_stamp: sets STAMP_WANT (the calling script, this file, the guest's
# APT sources and the engine) and exits 0 if OUT is already built from
# exactly that (or, with BOX_STAMP_ONLY=1, prints it and exits 0).
box_stamp() {
  STAMP_WANT=$({ cat "$SELF" "$BOX_LIB"; printf '%s\n' "$GUEST_SOURCES" "engine=$BOX_ENGINE"; } | sha256sum | cut -d' ' -f1)
  if [[ ${BOX_STAMP_ONLY:-} == 1 ]]; then
    echo "$STAMP_WANT"
    exit 0
  fi
  if [[ -s $OUT && -f $OUT.stamp && "$(cat "$OUT.stamp")" == "$STAMP_WANT" ]]; then
    log "up to date: $OUT (stamp $STAMP_WANT)"
    exit 0
  fi
}

# box_start: the mirror and the guest's APT sources, the cache check (exits 0
# when OUT is up to date), then the build needs root.
box_start() {
  SUITE=${BOX_SUITE:-bookworm}
  BOX_ENGINE=${BOX_ENGINE:-none}
  case $SUITE in bookworm|trixie) ;; *) die "BOX_SUITE=$SUITE: this builder makes bookworm or trixie" ;; esac
  case $BOX_ENGINE in none|docker) ;; *) die "BOX_ENGINE=$BOX_ENGINE: want none or docker" ;; esac
  box_sources "$SUITE"
  box_stamp
  [[ $EUID -eq 0 ]] || die "must run as root"
}

# box_workdir: the build directory next to OUT (WORK, ROOT, MNT, RAW) and
# the trap that cleans it up on every exit path.
box_workdir() {
  mkdir -p "$(dirname "$OUT")"
  WORK=$(mktemp -d "$(dirname "$OUT")/.$BOX_NAME.XXXXXX")
  ROOT=$WORK/root
  MNT=$WORK/mnt
  RAW=$WORK/disk.raw
  LOOP=
  TMP_OUT=
  trap box_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Unmount everything below $WORK (deepest first), detach loop, remove $WORK.
box_cleanup() {
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

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

# box_debootstrap [EXTRA_ARG...]: SUITE (minbase, main, INCLUDE) from MIRROR into ROOT.
box_debootstrap() {
  local args=("$@" --variant=minbase --components=main --include="$(IFS=,; echo "${INCLUDE[*]}")")
  if [[ -n ${DEBOOTSTRAP_CACHE_DIR:-} ]]; then
    mkdir -p "$DEBOOTSTRAP_CACHE_DIR"
    args+=(--cache-dir="$(realpath "$DEBOOTSTRAP_CACHE_DIR")")
  fi
  mkdir -p "$ROOT"
  if ! debootstrap "${args[@]}" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 40 "$WORK/debootstrap.log" >&2
    [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 40 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
  fi
}

# box_configure: mounts proc/sys/dev in ROOT (box_clean unmounts them) and
# writes the guest's settings both boxes share.
box_configure() {
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
  cat >"$ROOT/etc/cloud/cloud.cfg.d/90-devbox-box.cfg" <<EOF
# devbox box (boxes/build/$(basename "$SELF"), engine $BOX_ENGINE)
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
}

# box_initramfs MODULE...: adds the modules to the initramfs, rebuilds it,
# sets KVER and checks virtio_pci and virtio_blk are in the kernel or initrd.
box_initramfs() {
  local mod
  printf '%s\n' "$@" >>"$ROOT/etc/initramfs-tools/modules"
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
}

# box_engine: with BOX_ENGINE=docker, what devbox provisioning would
# install (the distribution's docker.io with apparmor, sshfs for shared
# folders), installed from the guest's own APT sources, so `devbox up`
# finds it all and installs nothing. No service starts in the chroot
# (policy-rc.d); docker is enabled for the guest's first boot.
box_engine() {
  [[ $BOX_ENGINE == docker ]] || return 0
  log "installing the Docker engine and sshfs"
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  # box_configure removed the build host's resolv.conf; apt needs it here.
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  if ! { in_root apt-get -q update &&
         in_root apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends docker.io apparmor ca-certificates sshfs; } \
       >"$WORK/engine.log" 2>&1; then
    tail -n 40 "$WORK/engine.log" >&2
    die "installing the engine failed"
  fi
  rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf"
  in_root systemctl enable docker.service containerd.service >/dev/null 2>&1 || die "cannot enable docker.service"
  in_root dockerd --version >&2
}

# box_manifest: what went into the box, for its metadata: the inputs, the
# Date of each archive's Release file (the archive's state the packages came
# from; empty if the lists are gone) and every installed package with its
# version, sorted. Written to $WORK/manifest; box_qcow2 puts it beside OUT.
box_manifest() {
  local f
  {
    printf 'suite %s\narch %s\nengine %s\nmirror %s\n' "$SUITE" "$(in_root dpkg --print-architecture)" "$BOX_ENGINE" "$MIRROR"
    for f in "$ROOT"/var/lib/apt/lists/*_InRelease "$ROOT"/var/lib/apt/lists/*_Release; do
      [[ -f $f ]] || continue
      printf 'archive %s %s\n' "$(awk '/^Codename:/ { print $2; exit }' "$f")" "$(awk -F': ' '/^Date:/ { print $2; exit }' "$f" | tr ' ' '_')"
    done
    in_root dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version} ${Architecture}\n' |
      awk '$1 == "ii" { print "package", $2, $3, $4 }' | LC_ALL=C sort
  } >"$WORK/manifest"
}

# box_clean: machine identity, logs, caches, docs; unmounts proc/sys/dev.
box_clean() {
  box_manifest
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
}

# box_qcow2: RAW to a compressed qcow2 renamed onto OUT, then its manifest
# (OUT.manifest) and the stamp.
box_qcow2() {
  log "converting to compressed qcow2"
  TMP_OUT=$(mktemp "$(dirname "$OUT")/.$(basename "$OUT").XXXXXX")
  qemu-img convert -c -O qcow2 "$RAW" "$TMP_OUT"
  chmod 0644 "$TMP_OUT"
  echo "$STAMP_WANT" >"$TMP_OUT.stamp"
  rm -f "$OUT.stamp"
  mv -f "$TMP_OUT" "$OUT"
  mv -f "$WORK/manifest" "$OUT.manifest"
  mv -f "$TMP_OUT.stamp" "$OUT.stamp"
  TMP_OUT=
  log "done in $((SECONDS - T0))s: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER)"
}
