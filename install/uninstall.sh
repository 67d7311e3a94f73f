#!/usr/bin/env bash
# Removes what install.sh installed. Keeps /etc/watchword and /var/lib/watchword unless
# --purge is given. Refuses while a PAM file still names pam_watchword.so, because removing
# the module under a live 'auth required' line would lock everyone out of that service.
set -euo pipefail

PREFIX=${PREFIX:-/usr/local}
purge=0
force=0
for a in "$@"; do
    case "$a" in
    --purge) purge=1 ;;
    --force) force=1 ;;
    -h | --help) echo "usage: uninstall.sh [--purge] [--force]"; exit 0 ;;
    *) echo "uninstall: unknown option $a" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "uninstall: run as root" >&2; exit 1; }

users=$(grep -l 'pam_watchword' /etc/pam.d/* 2>/dev/null || true)
if [ -n "$users" ] && [ $force = 0 ]; then
    echo "uninstall: these PAM files still use pam_watchword.so: $users" >&2
    echo "uninstall: take them out first (watchword disable sshd; watchword disable sudo), or pass --force" >&2
    exit 1
fi

pamdir=$(dirname "$(find -H /lib /usr/lib -name pam_unix.so -print -quit)")
rm -f "$PREFIX/sbin/watchword" "$pamdir/pam_watchword.so"
rm -rf "$PREFIX/libexec/watchword" "$PREFIX/share/watchword"
PREFIX="$PREFIX" bash "$(dirname "$0")/docs.sh" uninstall   # man pages, completions
if [ $purge = 1 ]; then
    rm -rf /etc/watchword /var/lib/watchword
    echo "watchword removed, with its config and state."
else
    echo "watchword removed; /etc/watchword and /var/lib/watchword were kept (--purge removes them)."
fi
