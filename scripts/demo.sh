#!/bin/bash
# Brings a demo instance up from the test box and runs a container in it.
set -euo pipefail
box=${1:?usage: demo.sh BOX}
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/demo"
mkdir -p "$dir"
if [ ! -e "$dir/devbox.yaml" ]; then
  cat > "$dir/devbox.yaml" <<YAML
name: demo
box: $box
cpus: 2
memory: 2GiB
disk: 10GiB
# This machine's KVM cannot boot a stock kernel: software emulation.
accel: tcg
YAML
fi
cd "$dir"
"$root/bin/devbox" up
"$root/bin/devbox" ssh -- docker info --format 'docker {{.ServerVersion}} is ready in the VM'
echo "next: cd demo && ../bin/devbox ssh"
