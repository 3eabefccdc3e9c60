# shellcheck shell=sh
# run-step.sh root|user: runs a provisioning step's script, read from
# stdin, with bash -e, as root or as the user, from the user's home. The
# script goes into a temp file and runs with stdin from /dev/null, so
# nothing in it can swallow the rest of the script.
f=$(mktemp /tmp/devbox-step.XXXXXX) || exit 1
if ! { cat > "$f" && chmod 0755 "$f"; }; then
	rm -f "$f"
	exit 1
fi
cd || exit 1
if [ "$1" = root ]; then
	sudo -n bash -e "$f" </dev/null
else
	bash -e "$f" </dev/null
fi
rc=$?
rm -f "$f"
exit $rc
