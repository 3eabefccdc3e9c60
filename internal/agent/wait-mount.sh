# shellcheck shell=sh
# wait-mount.sh PATH TENTHS MESSAGE [DIR COMMAND [ARG...]]: waits up to
# TENTHS tenths of a second for PATH to be a mount point in the guest,
# then runs COMMAND in DIR, if given. If PATH never is one, it prints
# MESSAGE (unless empty) to stderr and exits 125, as a command that could
# not run. A command must never run against the empty folder under a
# shared folder that is not mounted yet.
path=$1 tenths=$2 message=$3
shift 3
i=0
until mountpoint -q "$path"; do
	i=$((i + 1))
	if [ "$i" -gt "$tenths" ]; then
		[ -z "$message" ] || echo "$message" >&2
		exit 125
	fi
	sleep 0.1
done
[ $# -gt 0 ] || exit 0
cd "$1" || exit 125
shift
exec "$@"
