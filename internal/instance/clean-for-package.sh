# shellcheck shell=sh
# Runs as root in the guest before its disk becomes a box: what identifies
# this machine or lets someone in goes, so every instance made from the
# box gets its own (cloud-init runs afresh, with the new instance's seed:
# machine-id, host keys, the user's key). An empty /etc/machine-id (not a
# missing one) makes systemd write a new one at the next boot. After it no
# new SSH login works: the guest is powered off on the same connection.
# fstrim last: the disk is attached with discard=unmap, so the blocks the
# guest does not use (deleted files, the logs and caches just cleared)
# read as zeros in the overlay and the flattened box carries none of
# their old data.
set -e
cloud-init clean --logs
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
rm -f /etc/ssh/ssh_host_*
rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys /root/.bash_history /home/*/.bash_history
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/*
sync
fstrim -av || echo "fstrim failed: free space is not trimmed (the box may be larger)"
