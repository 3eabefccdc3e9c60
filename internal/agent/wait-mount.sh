# shellcheck shell=sh
# wait_mount PATH TENTHS [MESSAGE]: waits up to TENTHS tenths of a second
# for PATH to be a mount point in the guest; then fails, printing MESSAGE
# (if given) to stderr. A command must never run against the empty folder
# under a shared folder that is not mounted yet.
wait_mount() {
	i=0
	until mountpoint -q "$1"; do
		i=$((i + 1))
		if [ "$i" -gt "$2" ]; then
			[ -z "${3:-}" ] || echo "$3" >&2
			return 1
		fi
		sleep 0.1
	done
}
