#!/usr/bin/env bash
# Removes the watchword package with apt, as root. Keeps /etc/watchword and
# /var/lib/watchword unless --purge is given (apt purge: every user's secrets, recovery
# codes and audit trail go too). The package refuses while a file in /etc/pam.d still
# names pam_watchword.so, because removing the module under a live 'auth required' line
# would lock everyone out of that service: run `watchword disable sshd` / `sudo` first.
set -euo pipefail

purge=0
for a in "$@"; do
    case "$a" in
    --purge) purge=1 ;;
    -h | --help) echo "usage: uninstall.sh [--purge]"; exit 0 ;;
    *) echo "uninstall: unknown option $a" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "uninstall: run as root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
if [ $purge = 1 ]; then
    apt-get purge -y -q watchword
    echo "watchword removed, with its config and state."
else
    apt-get remove -y -q watchword
    echo "watchword removed; /etc/watchword and /var/lib/watchword were kept (uninstall.sh --purge removes them)."
fi
