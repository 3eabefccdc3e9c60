# shellcheck shell=bash
# Installs and enables the Docker engine from $source (auto, docker or
# distro). Safe to re-run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
: "${source:?}"

if command -v dockerd >/dev/null 2>&1 && systemctl is-enabled -q docker 2>/dev/null; then
  systemctl is-active -q docker || systemctl start docker
  echo "docker engine already installed: $(dockerd --version)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "devbox installs Docker on Debian and Ubuntu guests only (no apt-get here)" >&2
  exit 3
fi
. /etc/os-release

apt_get() { apt-get -o Dpkg::Use-Pty=0 -o APT::Acquire::Retries=3 -q -y "$@" </dev/null; }

# Docker's own repository, when this guest can reach it; else the distribution's docker.io.
if [ "$source" = auto ]; then
  if getent hosts download.docker.com >/dev/null 2>&1 &&
     timeout 15 bash -c 'exec 3<>/dev/tcp/download.docker.com/443' 2>/dev/null; then
    source=docker
  else
    echo "download.docker.com is not reachable from the guest: using ${ID}'s docker.io"
    source=distro
  fi
fi

apt_get update
if [ "$source" = docker ]; then
  apt_get install --no-install-recommends ca-certificates curl gnupg apparmor
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL --retry 3 "https://download.docker.com/linux/${ID}/gpg" -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/${ID} ${VERSION_CODENAME} stable" \
    > /etc/apt/sources.list.d/docker.list
  apt_get update
  apt_get install docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
else
  # apparmor: the guest kernel enforces it, and docker run fails without the parser.
  apt_get install --no-install-recommends docker.io apparmor ca-certificates
fi
systemctl enable --now docker
echo "docker engine installed: $(dockerd --version)"
