# shellcheck shell=bash
# apt_install PKG... installs packages without recommends, refreshing the
# package lists only when the install fails without (they may be missing
# or stale).
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o Dpkg::Use-Pty=0 -q -y "$@" </dev/null; }
apt_install() { apt_get install --no-install-recommends "$@" || { apt_get update && apt_get install --no-install-recommends "$@"; }; }
