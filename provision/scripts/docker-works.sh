# shellcheck shell=bash
# Waits (bounded) until docker answers $user: the daemon may still be
# starting on a first boot under emulation.
: "${user:?}"
for _ in $(seq 1 60); do
  if v=$(sudo -u "$user" -H docker info --format '{{.ServerVersion}}' 2>&1); then
    echo "docker $v works for $user"
    exit 0
  fi
  sleep 1
done
echo "$v" >&2
exit 1
