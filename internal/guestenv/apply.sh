# shellcheck shell=bash
# Makes the guest's proxy and CA certificate files what devbox wants
# (the want function in front of this script lists them), removes
# certificates devbox put there before and no longer wants, and restarts
# only what a change concerns. Prints one line per change.
set -euo pipefail
cert_dir=${DEVBOX_CERT_DIR:-/usr/local/share/ca-certificates/devbox} # tests name another
docker_changed='' certs_changed=''
declare -A wanted

# sync_file PATH BASE64|-: make PATH hold the decoded content, or not exist.
sync_file() {
	local path=$1 content=$2 tmp
	wanted[$path]=1
	if [ "$content" = - ]; then
		[ -e "$path" ] || return 0
		rm -f "$path"
		echo "removed $path"
	else
		tmp=$(mktemp)
		printf '%s' "$content" | base64 -d > "$tmp"
		if cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 0; fi
		mkdir -p "$(dirname "$path")"
		case $path in
		$cert_dir/*) chmod 644 "$tmp" ;;
		*) chmod 600 "$tmp" ;; # a proxy URL may hold a password
		esac
		mv "$tmp" "$path"
		echo "wrote $path"
	fi
	case $path in
	$cert_dir/*) certs_changed=1 ;;
	*/docker.service.d/*) docker_changed=1 ;;
	esac
}

want
for f in "$cert_dir"/*.crt; do
	[ -e "$f" ] || continue
	[ -n "${wanted[$f]:-}" ] && continue
	rm -f "$f"
	echo "removed $f"
	certs_changed=1
done

if [ -n "$certs_changed" ]; then
	update-ca-certificates >/dev/null 2>&1 || update-ca-certificates
fi
if [ -n "$docker_changed" ]; then
	systemctl daemon-reload
fi
# The engine reads its environment and the trust store when it starts.
if [ -n "$docker_changed$certs_changed" ] && systemctl is-active -q docker; then
	systemctl restart docker
	echo "restarted docker"
fi
