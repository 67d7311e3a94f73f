#!/usr/bin/env bash
# Installs watchword on Debian 12, as root, the way every host gets it: builds the Debian
# package from this checkout (install/build-deb.sh) and installs it with apt. Safe to run
# again: an upgrade or reinstall keeps /etc/watchword/config.toml (a conffile) and the
# state in /var/lib/watchword. It does not touch /etc/pam.d or sshd: see the next steps.
#
# On other hosts, no compiler needed: copy watchword_VERSION_ARCH.deb there and run
#   apt install ./watchword_VERSION_ARCH.deb
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt installs the package)"
command -v swift >/dev/null ||
    die "Swift is not on PATH (https://www.swift.org/install/linux/); or build the package on a machine that has it and run: apt install ./watchword_*.deb"

say "Debian packages to build with"
bash install/deps.sh

say "Building the package"
bash install/build-deb.sh
deb="$PWD/watchword_$(tr -d '[:space:]' <VERSION)_$(dpkg-architecture -qDEB_HOST_ARCH).deb"

say "Installing $deb"
# --reinstall: the same version again (a rebuild) is installed too, not skipped.
# confold: a config.toml already there (an older install) is kept, not replaced.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$deb"

older=()
for f in /usr/local/sbin/watchword /usr/local/libexec/watchword/watchword-helper; do
    [ -e "$f" ] && older+=("$f")
done
if [ ${#older[@]} -gt 0 ]; then
    cat <<TXT

An older install is still there: ${older[*]}.
The module runs the package's helper (/usr/libexec/watchword/watchword-helper), but
'watchword' at a root shell may find /usr/local/sbin first. Remove it (after checking
no helper= in /etc/pam.d names it):
  rm -f /usr/local/sbin/watchword; rm -rf /usr/local/libexec/watchword /usr/local/share/watchword
TXT
fi

cat <<TXT

watchword is installed (dpkg -L watchword lists every file):
  /usr/sbin/watchword                        the admin command (try: watchword --help)
  /usr/libexec/watchword/watchword-helper    run by the PAM module at each login
  $(dpkg -L watchword | grep '/security/pam_watchword.so$')
  /etc/watchword/config.toml                 settings (root, 0600)
  /var/lib/watchword/                        user state (root, 0700)
  man watchword, man pam_watchword, man watchword-config.toml

Next steps:
  1. Enroll a user and scan the QR code with an authenticator app:
       watchword enroll alice --totp
  2. Keep a root shell open, then ask for the code in sudo and ssh:
       watchword enable sudo
       watchword enable sshd --with-publickey     (or without: the password, then the code)
     and try a new login in another terminal: sudo -k; sudo true   /   ssh alice@host
  3. Check that the code is really required: watchword doctor
  To do it by hand instead, see /usr/share/watchword/pam.d-sudo, pam.d-sshd and
  sshd_config-watchword.conf. enable refuses while nobody is enrolled; --enroll-at-login
  has each user set up a token at their next login instead (README: "Rolling out").
TXT
