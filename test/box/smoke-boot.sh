#!/usr/bin/env bash
# smoke-boot.sh BOX.qcow2 [x86_64|arm64]
#
# Boots the test box the way devbox will (qcow2 overlay, virtio disk, NoCloud
# seed on a second virtio disk, user-mode net with an SSH port forward) under
# QEMU software emulation (TCG) and checks: SSH with a pinned host key,
# cloud-init done, root grown, default route, apt-get update, systemd state,
# `systemctl poweroff` ends QEMU; then boots again and checks that the ACPI
# power button (QEMU system_powerdown) ends QEMU too.
# arm64 (the box from boxes/build/debian-arm64.sh): QEMU's "virt" machine with
# UEFI firmware, deadlines three times as long (aarch64 under TCG is slower).
# Needs: qemu-system-x86 qemu-utils genisoimage openssh-client python3;
# for arm64 also qemu-system-arm qemu-efi-aarch64.
set -euo pipefail

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $# -eq 1 || $# -eq 2 ]] || { echo "usage: $0 BOX.qcow2 [x86_64|arm64]" >&2; exit 2; }
BOX=$(realpath -- "$1")
[[ -f $BOX ]] || die "no such box: $BOX"
ARCH=${2:-x86_64}
AAVMF=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
case $ARCH in
  x86_64 | amd64)
    ARCH=x86_64; SLOW=1
    QEMU=(qemu-system-x86_64 -accel tcg) ;;
  arm64 | aarch64)
    ARCH=arm64; SLOW=3
    [[ -f $AAVMF ]] || die "missing $AAVMF (apt-get install qemu-efi-aarch64)"
    # pauth-impdef: a cheaper pointer-authentication hash than the
    # architected one; the guest cannot tell, TCG is noticeably faster.
    QEMU=(qemu-system-aarch64 -M virt -accel tcg -cpu "max,pauth-impdef=on" -bios "$AAVMF") ;;
  *) die "unknown architecture $ARCH (x86_64 or arm64)" ;;
esac

WORK=$(mktemp -d /tmp/devbox-smoke.XXXXXX)
QPID=
cleanup() {
  local rc=$?
  set +e
  if [[ -n $QPID ]] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID"; wait "$QPID" 2>/dev/null; fi
  if (( rc != 0 )) && [[ -f $WORK/console.log ]]; then
    log "last console lines:"; tail -n 40 "$WORK/console.log" >&2
  fi
  [[ -n ${KEEP:-} ]] && log "kept $WORK" || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -C dev@smoke -f "$WORK/id_dev"
ssh-keygen -q -t ed25519 -N '' -C hostkey@smoke -f "$WORK/hostkey"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/hostkey.pub")" >"$WORK/known_hosts"

cat >"$WORK/user-data" <<EOF
#cloud-config
users:
  - name: dev
    shell: /bin/bash
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - $(cat "$WORK/id_dev.pub")
ssh_pwauth: false
ssh_deletekeys: true
ssh_keys:
  ed25519_private: |
$(sed 's/^/    /' "$WORK/hostkey")
  ed25519_public: $(cat "$WORK/hostkey.pub")
EOF
cat >"$WORK/meta-data" <<EOF
instance-id: smoke-$(date +%s)
local-hostname: devbox-smoke
EOF
(cd "$WORK" && genisoimage -quiet -output seed.iso -volid cidata -joliet -rock user-data meta-data)
qemu-img create -q -f qcow2 -F qcow2 -b "$BOX" "$WORK/overlay.qcow2" 10G

SSH=(ssh -F none -i "$WORK/id_dev" -p "$PORT" -o StrictHostKeyChecking=yes
     -o UserKnownHostsFile="$WORK/known_hosts" -o BatchMode=yes -o ConnectTimeout=5
     -o LogLevel=ERROR dev@127.0.0.1)

start_vm() { # $1 = console log name
  "${QEMU[@]}" -m 1024 -smp 2 \
    -display none -monitor none -serial "file:$WORK/$1" \
    -qmp "unix:$WORK/qmp.sock,server=on,wait=off" \
    -drive "file=$WORK/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$WORK/seed.iso,if=virtio,format=raw,readonly=on" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22" \
    -device virtio-net-pci,netdev=n0 </dev/null >"$WORK/qemu.out" 2>&1 &
  QPID=$!
  T_START=$SECONDS
  T_LOGIN=
}

wait_ssh() { # $1 = console log name, $2 = deadline seconds (times SLOW); sets T_LOGIN
  local limit=$(( $2 * SLOW )) deadline
  deadline=$((SECONDS + limit))
  until "${SSH[@]}" true 2>/dev/null; do
    kill -0 "$QPID" 2>/dev/null || { cat "$WORK/qemu.out" >&2; die "qemu exited"; }
    [[ -z $T_LOGIN ]] && grep -aq ' login: ' "$WORK/$1" 2>/dev/null && T_LOGIN=$((SECONDS - T_START))
    (( SECONDS < deadline )) || die "no SSH within $limit s"
    sleep 2
  done
  [[ -z $T_LOGIN ]] && grep -aq ' login: ' "$WORK/$1" 2>/dev/null && T_LOGIN=$((SECONDS - T_START))
  log "serial console login prompt after ${T_LOGIN:-?}s"
}

wait_exit() { # $1 = deadline seconds (times SLOW); sets T_EXIT to the seconds taken
  local t0=$SECONDS limit=$(( $1 * SLOW )) deadline
  deadline=$((SECONDS + limit))
  while kill -0 "$QPID" 2>/dev/null; do
    (( SECONDS < deadline )) || die "qemu still running $limit s after power-off request"
    sleep 1
  done
  wait "$QPID" || true
  QPID=
  T_EXIT=$((SECONDS - t0))
}

qmp() { # send one QMP command
  python3 - "$WORK/qmp.sock" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush(); print(f.readline().strip())
PY
}

# ---------------------------------------------------------------- first boot
log "boot 1 ($ARCH, TCG, port $PORT)"
start_vm console.log
wait_ssh console.log 900
BOOT_SSH=$((SECONDS - T_START)); BOOT_LOGIN=${T_LOGIN:-?}
log "SSH answered after ${BOOT_SSH}s"

log "cloud-init status --wait"
CI=$("${SSH[@]}" "timeout $((600 * SLOW)) cloud-init status --wait --long" || true)
echo "$CI" >&2
grep -q '^status: done' <<<"$CI" || die "cloud-init not done"
"${SSH[@]}" 'sudo grep -E "WARNING|ERROR|Traceback" /var/log/cloud-init.log' >&2 || log "no cloud-init warnings"

log "root filesystem"
DF=$("${SSH[@]}" 'df -BG --output=size,target /' | tail -1)
echo "$DF" >&2
SIZE_G=$(awk '{print int($1)}' <<<"$DF")
(( SIZE_G >= 9 )) || die "root did not grow (size ${SIZE_G}G)"

log "ip route"
ROUTE=$("${SSH[@]}" 'ip route')
echo "$ROUTE" >&2
grep -q '^default ' <<<"$ROUTE" || die "no default route"

log "sudo apt-get update"
"${SSH[@]}" "sudo -n timeout $((600 * SLOW)) apt-get update" >&2 || die "apt-get update failed"

log "systemctl is-system-running"
STATE=$("${SSH[@]}" "timeout $((300 * SLOW)) systemctl is-system-running --wait" || true)
log "system state: $STATE"
if [[ $STATE == degraded ]]; then
  "${SSH[@]}" 'systemctl --failed --no-pager' >&2
elif [[ $STATE != running ]]; then
  die "system state $STATE"
fi
"${SSH[@]}" 'uname -rm; hostname; cat /etc/resolv.conf; lsblk; free -m; systemd-analyze || true' >&2

log "sudo systemctl poweroff"
"${SSH[@]}" 'sudo -n systemctl poweroff' || true
wait_exit 60; T_OFF=$T_EXIT
log "qemu exited ${T_OFF}s after poweroff"

# ---------------------------------------------------------------- second boot
log "boot 2: ACPI power button"
start_vm console2.log
wait_ssh console2.log 600
BOOT2_SSH=$((SECONDS - T_START))
log "SSH answered after ${BOOT2_SSH}s"
"${SSH[@]}" "timeout $((300 * SLOW)) systemctl is-system-running --wait" >&2 || true
qmp system_powerdown >&2
wait_exit 60; T_OFF2=$T_EXIT
log "qemu exited ${T_OFF2}s after ACPI power button"

log "OK ($ARCH): boot-to-SSH ${BOOT_SSH}s, to serial login prompt ${BOOT_LOGIN}s (second boot ${BOOT2_SSH}s), state ${STATE}, poweroff ${T_OFF}s, power button ${T_OFF2}s"
