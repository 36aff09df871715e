#!/bin/sh
# Install the Debian packages mxguard needs: `runtime` for make run, `test` for make test (the
# runtime packages and what the tests use, checked together so that one list names them all).
# As root it installs what is missing with apt-get, non-interactively; otherwise it prints the
# one command to run as root and exits non-zero.
set -eu
want="libmilter-dev gcc"
# The interpreter must be able to create a venv and build pymilter's C extension.
if ! python3 -c 'import ensurepip, os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null; then
    want="$want python3-venv python3-dev"
fi
if [ "${1:-runtime}" = test ]; then
    # The end-to-end servers, and m4 for Sendmail's .cf; groff-base checks the man pages;
    # systemd gives systemd-analyze (the unit test), which runs man (man-db) for the unit's
    # Documentation=man: pages and wants the unit's ExecReload=/bin/kill (procps) to exist.
    # Minimal roots and container images have none of these three.
    want="$want postfix redis-server sasl2-bin libsasl2-modules m4 groff-base systemd man-db procps"
fi
missing=""
for package in $want; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "mxguard needs these Debian packages:$missing" >&2
    if command -v sudo >/dev/null 2>&1; then
        echo "install them as root with:  sudo apt-get install -y$missing" >&2
    else
        echo "install them as root with:  su -c 'apt-get install -y$missing'" >&2
    fi
    exit 1
fi
echo "installing:$missing" >&2
# Postfix must not ask questions, and must not configure or start the system instance.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
