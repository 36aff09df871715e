#!/bin/sh
# Unpack Debian's Sendmail into a directory for the end-to-end test (sendmail-bin conflicts
# with postfix, so it is never installed): apt-get download, then dpkg -x. Idempotent.
#   sh scripts/sendmail-unpacked.sh DIR   ->  DIR/root/usr/libexec/sendmail/sendmail
set -eu
dir=${1:-/var/cache/mxguard-test/sendmail}
binary="$dir/root/usr/libexec/sendmail/sendmail"
[ -x "$binary" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    run="sh $0 $dir"
    if command -v sudo >/dev/null 2>&1; then run="sudo $run"; else run="su -c '$run'"; fi
    echo "the tests need Sendmail unpacked into $dir (apt-get download); as root run:  $run" >&2
    exit 1
fi
mkdir -p "$dir/debs" "$dir/root"
cd "$dir/debs"
apt-get download -qq sendmail-bin sendmail-cf libwrap0 2>/dev/null \
    || { apt-get update -qq && apt-get download -qq sendmail-bin sendmail-cf libwrap0; }
for package in *.deb; do
    dpkg -x "$package" "$dir/root"
done
# setgid would make the loader ignore LD_LIBRARY_PATH, which points it at the unpacked libwrap.
chmod ug-s "$binary"
