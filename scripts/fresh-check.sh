#!/bin/bash
# make fresh-check: run `make test` from a clean clone inside a minimal Debian root
# (debootstrap --variant=minbase plus git, make, ca-certificates), once per suite, to prove
# that scripts/system-deps.sh installs everything the tests use. As root.
#   SUITE="bookworm trixie"  the suites, in order (default: both)
#   FRESH_CACHE=DIR          minbase tarballs, run roots and logs (default /var/cache/mxguard-fresh)
#   FRESH_REBUILD=1          debootstrap again instead of starting from the cached tarball
#   FRESH_KEEP=1             keep each run's root afterwards (it is replaced by the next run anyway)
# Only the committed HEAD is tested: the root gets a `git clone` of this repository.
set -eu
set -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
suites=${SUITE:-bookworm trixie}
cache=${FRESH_CACHE:-/var/cache/mxguard-fresh}
tail_lines=${FRESH_TAIL:-8}
work=""      # the root being built or run; cleanup() acts on it
tails=""     # the last lines of each suite's log, printed at the end
summary=""   # one line per suite, printed at the end
failed=0

say() { echo "fresh-check: $*" >&2; }
minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
die() { say "$*"; exit 1; }

# --- the host --------------------------------------------------------------------------------

host_codename() { sed -n 's/^VERSION_CODENAME=//p' /etc/os-release; }

# The Debian mirror the host's apt uses: apt itself parses the sources (one-line and deb822).
host_mirror() {
    # shellcheck disable=SC2016  # $(RELEASE) is apt's format, not the shell's
    apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' \
        | awk -v suite="$(host_codename)" '$1 == suite { print $2; exit }'
}

# The source files apt actually reads (an entry's file, whatever its name says).
host_source_files() {
    # shellcheck disable=SC2016
    apt-get indextargets --no-release-info --format '$(SOURCESENTRY)' | sed 's/:[0-9]*$//' | sort -u
}

ensure_host_tools() {
    [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, mount and chroot need it)"
    command -v debootstrap >/dev/null && return 0
    say "installing debootstrap on the host"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        debootstrap >/dev/null
}

# debootstrap fetches with wget, which reads no apt.conf: hand it apt's proxy, if any.
export_apt_proxy() {
    local http="" https=""
    eval "$(apt-config shell http Acquire::http::Proxy https Acquire::https::Proxy)"
    [ -n "$http" ] && [ -z "${http_proxy:-}" ] && export http_proxy="$http"
    [ -n "$https" ] && [ -z "${https_proxy:-}" ] && export https_proxy="$https"
    return 0
}

# --- mounts and processes inside a root --------------------------------------------------------

# Every mount at or under $1, deepest first (from /proc/mounts, so nothing is forgotten even
# after a run that was killed before it could clean up).
mounts_under() {
    awk -v dir="$1" '$2 == dir || index($2, dir "/") == 1 { print length($2), $2 }' /proc/mounts \
        | sort -rn | cut -d' ' -f2-
}

unmount_all() {
    local point
    for point in $(mounts_under "$1"); do
        umount "$point" 2>/dev/null || umount -l "$point"
    done
}

# A daemon a test started and left behind would keep the root's mounts busy.
kill_inside() {
    local proc target pids=""
    for proc in /proc/[0-9]*; do
        target=$(readlink "$proc/root" 2>/dev/null) || continue
        case $target in "$1" | "$1"/*) pids="$pids ${proc#/proc/}" ;; esac
    done
    [ -z "$pids" ] && return 0
    say "ending processes left inside $1:$pids"
    # shellcheck disable=SC2086  # one word per process id
    kill -TERM $pids 2>/dev/null || true
    sleep 2
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

# Remove a root only once nothing is mounted in it: rm would otherwise go through /dev or /opt.
remove_root() {
    [ -e "$1" ] || return 0
    kill_inside "$1"
    unmount_all "$1"
    [ -z "$(mounts_under "$1")" ] || die "still mounted under $1, not removing it"
    rm -rf --one-file-system "$1"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$work" ]; then
        kill_inside "$work"
        unmount_all "$work"
        if [ -n "$(mounts_under "$work")" ]; then
            say "mounts left under $work:"; mounts_under "$work" >&2; status=1
        elif [ "${FRESH_KEEP:-0}" != 1 ]; then
            rm -rf --one-file-system "$work"
        fi
    fi
    exit "$status"
}

mount_system() {
    local root=$1
    mount -t proc proc "$root/proc"
    # Private, so that nothing mounted in the root propagates back to the host's /sys or /dev.
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
    mount --bind /dev "$root/dev" && mount --make-private "$root/dev"
    mount --bind /dev/pts "$root/dev/pts" && mount --make-private "$root/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
}

# --- the cached minbase root -----------------------------------------------------------------

# Built once per suite and kept as a tarball; each run unpacks a clean copy of it.
ensure_minbase() {
    local suite=$1 tarball=$2 mirror
    [ -s "$tarball" ] && [ "${FRESH_REBUILD:-0}" != 1 ] && return 0
    mirror=$(host_mirror)
    [ -n "$mirror" ] || die "no Debian mirror for $(host_codename) in the host's apt sources"
    work="$cache/build-$suite"
    remove_root "$work"
    say "[$suite] debootstrap --variant=minbase from $mirror, cached as $tarball"
    export_apt_proxy
    debootstrap --variant=minbase --include=git,make,ca-certificates \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$suite" "$work" "$mirror" >"$cache/logs/debootstrap-$suite.log" 2>&1 \
        || die "[$suite] debootstrap failed, see $cache/logs/debootstrap-$suite.log"
    chroot "$work" apt-get clean
    tar -C "$work" --numeric-owner --xattrs --xattrs-include='*' -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    remove_root "$work"
    work=""
}

# --- what the root takes from the host -------------------------------------------------------

# The host's apt sources, with the host's suite names (bookworm, bookworm-updates,
# bookworm-security) turned into the target's; and the apt.conf.d settings that decide whether
# the archives can be reached at all (proxies, CA, Check-Valid-Until of a snapshot mirror).
copy_apt_settings() {
    local root=$1 suite=$2 from file keyring
    from=$(host_codename)
    rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
    for file in $(host_source_files); do
        mkdir -p "$root$(dirname "$file")"
        perl -pe "s/(?<=\\s)\\Q$from\\E(?=[-\\/\\s]|\$)/$suite/g if /^\\s*(Suites:|deb(-src)?\\s)/i" \
            "$file" >"$root$file"
        # A keyring named by Signed-By that the target's own keyring package does not have.
        # shellcheck disable=SC2013  # paths, one word each
        for keyring in $(grep -ohiE '(Signed-By:[[:space:]]*|signed-by=)/[^] ,]+' "$file" \
            | sed 's/^[^/]*//'); do
            [ -e "$root$keyring" ] || install -D -m 0644 "$keyring" "$root$keyring"
        done
    done
    for file in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
        [ -f "$file" ] || continue
        grep -qiE 'proxy|valid-until|check-date|max-validtime|cainfo|capath|verify-(peer|host)' \
            "$file" && cp "$file" "$root/etc/apt/apt.conf.d/"
    done
    # The root shares the host's network and processes: a daemon started by a package's
    # postinst (redis-server on port 6379) would take the host's ports and outlive the run.
    # The tests start their own servers, so no service is started at install time.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# The host's local CAs go where update-ca-certificates picks them up, so they survive any later
# run of it in the root; the host's whole bundle is appended too, for CAs it holds only there.
copy_ca_certificates() {
    local root=$1 bundle=/etc/ssl/certs/ca-certificates.crt
    if [ -d /usr/local/share/ca-certificates ]; then
        cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi
    chroot "$root" update-ca-certificates >/dev/null 2>&1
    [ -f "$bundle" ] && cat "$bundle" >>"$root$bundle"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    [ -f /etc/hosts ] && cp /etc/hosts "$root/etc/hosts"
    return 0
}

pip_config_files() {
    local file
    for file in /etc/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" \
        ${PIP_CONFIG_FILE:-}; do
        [ -f "$file" ] && echo "$file"
    done
    [ -d /etc/xdg/pip ] && find /etc/xdg/pip -type f
    return 0
}

# What pip, Python and the proxies are told by the host's environment.
pip_environment() {
    local name
    for name in $(env | sed -n 's/^\(PIP_[A-Z0-9_]*\)=.*/\1/p') SSL_CERT_FILE SSL_CERT_DIR \
        REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO \
        http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -n "${!name:-}" ] && echo "$name=${!name}"
    done
    return 0
}

# The environment the tests get: a clean one (no MAKEFLAGS or venv of the calling make), plus
# pip_environment.
passed_environment() {
    echo "HOME=/root"
    echo "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    pip_environment
}

# pip settings: the config files, copied to the same places (the root user's home for the
# per-user ones). Some name local paths (find-links /opt/wheels, extra-index-url
# file:///opt/pypi/simple): such a directory is bind-mounted read-only at the same path, so
# pip in the root sees exactly the package archives the host's pip sees and cannot change
# them (an index's .../simple pages link to ../../files, so its parent is mounted). Only a
# path the root does not have is mounted (never over the root's own /etc or /root); a named
# file the root lacks (a constraints file, a CA bundle) is copied.
copy_pip_settings() {
    local root=$1 file target token path
    for file in $(pip_config_files); do
        target=$file
        case $file in "$HOME"/*) target="/root${file#"$HOME"}" ;; esac
        install -D -m 0644 "$file" "$root$target"
    done
    # shellcheck disable=SC2013,SC2046  # the words of the files, which have no spaces in names
    for token in $(cat $(pip_config_files) /dev/null | grep -v '^[[:space:]]*[#;]' | tr '=' ' ') \
        $(pip_environment | sed 's/^[^=]*=//'); do
        case $token in file://*) path=${token#file://} ;; /*) path=$token ;; *) continue ;; esac
        if [ -d "$path" ]; then
            [ "$(basename "$path")" = simple ] && path=$(dirname "$path")
            [ -e "$root$path" ] && continue
            mkdir -p "$root$path"
            mount --bind "$path" "$root$path"
            mount -o remount,bind,ro "$root$path"
            mount --make-private "$root$path"
            say "pip's $path is mounted read-only in the root"
        elif [ -f "$path" ] && [ ! -e "$root$path" ]; then
            install -D -m 0644 "$path" "$root$path"
        fi
    done
    return 0
}

# --- one suite -------------------------------------------------------------------------------

clone_repository() {
    local root=$1 commit=$2
    # The repository may belong to another user; git refuses it to root without this.
    git -c safe.directory='*' clone -q --no-hardlinks "$repo" "$root/root/mxguard"
    git -C "$root/root/mxguard" checkout -q --detach "$commit"
    chmod 0700 "$root/root" "$root/root/mxguard"
}

# Sets failed=1 instead of returning non-zero: a function called in a condition would run
# with set -e off, and its setup steps must stop the script when they fail.
run_suite() {
    local suite=$1 commit=$2 tarball="$cache/$1-minbase.tar" log begin start rc=0 seconds result
    local environment
    begin=$(date +%s)
    log="$cache/logs/$suite-$(date +%Y%m%dT%H%M%S).log"
    ensure_minbase "$suite" "$tarball"
    work="$cache/run-$suite"
    remove_root "$work"
    mkdir -p "$work"
    tar -C "$work" --numeric-owner --xattrs --xattrs-include='*' -xpf "$tarball"
    copy_apt_settings "$work" "$suite"
    copy_ca_certificates "$work"
    mount_system "$work"
    copy_pip_settings "$work"
    clone_repository "$work" "$commit"
    mapfile -t environment < <(passed_environment)
    say "[$suite] make test in $work, log: $log"
    start=$(date +%s)
    # In the background, so that a TERM or Ctrl-C reaches the traps at once, not after the run;
    # --default-signal undoes the SIGINT and SIGQUIT that bash ignores in background commands,
    # which the tests' processes would inherit.
    env --default-signal -i "${environment[@]}" \
        chroot "$work" /bin/sh -c 'cd /root/mxguard && exec make test' \
        </dev/null >"$log" 2>&1 9>&- &
    wait $! || rc=$?
    seconds=$(($(date +%s) - start))
    result=passed
    [ "$rc" -eq 0 ] || { result="FAILED (exit $rc)"; failed=1; }
    say "[$suite] make test $result after $(minutes "$seconds")"
    kill_inside "$work"
    unmount_all "$work"
    [ -z "$(mounts_under "$work")" ] || die "[$suite] mounts left under $work"
    [ "${FRESH_KEEP:-0}" = 1 ] || rm -rf --one-file-system "$work"
    work=""
    tails="$tails
==> $suite: last lines of make test ($log)
$(tail -n "$tail_lines" "$log")
"
    summary="$summary
  $(printf '%-9s %-16s %-14s %-14s %s' "$suite" "$result" "$(minutes "$seconds")" \
        "$(minutes $(($(date +%s) - begin)))" "$log")"
}

main() {
    local commit suite
    ensure_host_tools
    mkdir -p "$cache/logs"
    # /proc/PID/root shows the resolved path, which kill_inside compares with.
    cache=$(readlink -f "$cache")
    # One fresh-check at a time: two would share the run roots and the cache.
    exec 9>"$cache/.lock"
    flock -n 9 || die "another fresh-check holds $cache/.lock"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    for suite in $suites; do
        case $suite in bookworm | trixie) ;; *) die "SUITE must be bookworm and/or trixie" ;; esac
    done
    commit=$(git -C "$repo" rev-parse HEAD)
    say "testing commit $(git -C "$repo" log -1 --format='%h %s' "$commit") of $repo"
    [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] \
        || say "uncommitted changes in $repo are not tested"
    for suite in $suites; do
        run_suite "$suite" "$commit"
    done
    echo "$tails"
    echo "fresh-check summary, commit ${commit:0:12}:"
    printf '  %-9s %-16s %-14s %-14s %s' suite result "make test" "with setup" log
    echo "$summary"
    [ "$failed" -eq 0 ]
}

main "$@"
