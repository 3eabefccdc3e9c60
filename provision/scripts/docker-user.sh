# shellcheck shell=bash
# Creates the user devbox logs in as ($user), in the docker group.
: "${user:?}"
getent group docker >/dev/null || groupadd --system docker
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
usermod -aG docker "$user"
