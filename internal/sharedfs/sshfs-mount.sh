# shellcheck shell=sh
# sshfs-mount.sh REMOTE GUESTPATH OPTIONS, as root: lazily unmounts
# whatever is left on GUESTPATH (a dead agent's mount), creates the mount
# point and execs sshfs in passive mode with OPTIONS. sshfs speaks SFTP on
# this script's stdin and stdout and stays in the foreground, so the
# session lasts exactly as long as the mount. Where sshfs has
# contain_symlinks (Debian's sshfs from 3.7.3-1.2 turns it on and refuses
# to read symlinks that are absolute or contain ".."), no_contain_symlinks
# turns it off: the server is devbox itself, and such links are common in
# dev folders (node_modules/.bin, for one).
remote=$1 path=$2 opts=$3
umount -l -- "$path" 2>/dev/null || true
mkdir -p -- "$path" || exit 1
if sshfs -h 2>&1 | grep -q no_contain_symlinks; then
	set -- -o no_contain_symlinks
else
	set --
fi
exec sshfs ":$remote" "$path" -o "$opts" "$@"
