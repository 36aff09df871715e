#!/bin/sh
# Create the mxguard system user and group (Debian: adduser --system --group), and let the
# Postfix and Sendmail daemons reach the milter socket through that group. Idempotent; as root.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root to create the mxguard user; without it mxguard keeps running as you" >&2
    exit 0
fi
if ! getent passwd mxguard >/dev/null; then
    adduser --quiet --system --group --no-create-home --home /var/lib/mxguard mxguard
fi
install -d -o mxguard -g mxguard -m 0750 /var/lib/mxguard
for daemon in postfix smmsp; do
    if getent passwd "$daemon" >/dev/null && ! id -nG "$daemon" | grep -qw mxguard; then
        adduser --quiet "$daemon" mxguard
    fi
done
