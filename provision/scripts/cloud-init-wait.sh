# shellcheck shell=bash
# Waits for cloud-init to finish this boot, and says so if it reports a
# problem (provisioning goes on: what it needs is checked step by step).
if command -v cloud-init >/dev/null 2>&1; then
  if ! cloud-init status --wait >/dev/null 2>&1; then
    echo "warning: cloud-init reported a problem (see /var/log/cloud-init-output.log in the guest):"
    cloud-init status --long || true
  fi
fi
