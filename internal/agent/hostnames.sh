#!/bin/sh
# Names the host in the guest (devbox's agent runs this as root on each
# connection; it is idempotent). $1 is the host's address as the guest
# sees it, $2 the port on it where the agent answers DNS queries for the
# names.
#
# The VM resolves the names through /etc/hosts. Containers do not read
# the VM's /etc/hosts, so DNS queries for exactly these names (matched in
# the packet, as DNS labels) are redirected to the agent; every other
# query goes where it went before, and keeps working when the agent is
# down.
set -eu
addr=$1 port=$2
names="host.devbox.internal host.docker.internal"
hosts=${DEVBOX_HOSTS_FILE:-/etc/hosts} # tests name another

kept=$(grep -v ' # devbox host names$' "$hosts" || true)
printf '%s\n%s %s # devbox host names\n' "$kept" "$addr" "$names" > "$hosts.devbox"
mv "$hosts.devbox" "$hosts"

command -v iptables >/dev/null || { echo "no iptables in the VM: containers cannot resolve the host's names" >&2; exit 3; }
chain=DEVBOX_HOST_NAMES
iptables -t nat -N "$chain" 2>/dev/null || iptables -t nat -F "$chain"
for name in $names; do
	# host.docker.internal as DNS labels: |04|host|06|docker|08|internal|00|
	hex=$(printf '%s' "$name" | awk -F. '{ for (i = 1; i <= NF; i++) printf "|%02x|%s", length($i), $i; printf "|00|" }')
	iptables -t nat -A "$chain" -p udp --dport 53 -m string --algo bm --hex-string "$hex" -j DNAT --to-destination "$addr:$port"
done
for hook in OUTPUT PREROUTING; do
	iptables -t nat -C "$hook" -j "$chain" 2>/dev/null || iptables -t nat -I "$hook" -j "$chain"
done
