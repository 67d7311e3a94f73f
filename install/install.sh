#!/usr/bin/env bash
# Installs watchword on Debian/Ubuntu, as root: builds a release, installs the CLI, the
# helper, the PAM module, the config template and the state directory with the owners
# and modes the security rules ask for. Safe to run again (an existing config and state
# are kept). It does not touch /etc/pam.d or sshd: see the next steps it prints.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
SBIN="$PREFIX/sbin"
LIBEXEC="$PREFIX/libexec/watchword"
SHARE="$PREFIX/share/watchword"
CONFIG_DIR=/etc/watchword
STATE_DIR=/var/lib/watchword

say() { printf '==> %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs into $SBIN, the PAM directory, /etc and /var/lib)"
command -v swift >/dev/null || die "Swift is not on PATH (https://www.swift.org/install/linux/)"

say "Debian packages"
bash install/deps.sh

say "Building (release, static Swift runtime)"
swift build -c release --static-swift-stdlib --product watchword
swift build -c release --static-swift-stdlib --product watchword-helper
bin=$(swift build -c release --show-bin-path)
make -s -C pam clean all

say "Installing"
install -d -o root -g root -m 0755 "$SBIN" "$LIBEXEC" "$SHARE"
install -o root -g root -m 0755 "$bin/watchword" "$SBIN/watchword"
install -o root -g root -m 0755 "$bin/watchword-helper" "$LIBEXEC/watchword-helper"
make -s -C pam install
install -o root -g root -m 0644 install/pam.d-sshd install/pam.d-sudo install/sshd_config-watchword.conf "$SHARE/"
bash install/docs.sh install "$bin/watchword"   # man pages and bash/zsh completions

install -d -o root -g root -m 0700 "$CONFIG_DIR"
if [ -e "$CONFIG_DIR/config.toml" ]; then
    say "Keeping the existing $CONFIG_DIR/config.toml"
else
    install -o root -g root -m 0600 install/config.toml "$CONFIG_DIR/config.toml"
fi
if [ -d "$STATE_DIR" ]; then
    say "Keeping the existing state in $STATE_DIR"
else
    install -d -o root -g root -m 0700 "$STATE_DIR"
fi

# Refuse to leave a state or config directory that the helper would refuse at login.
for d in "$CONFIG_DIR" "$STATE_DIR"; do
    [ "$(stat -c '%u %a' "$d")" = "0 700" ] || die "$d must be owned by root with mode 0700 (it is $(stat -c '%U %a' "$d")); fix it by hand"
done

# Refuse to leave a helper the module would refuse at login: it and every directory above
# it root's, not writable by group or other, no symlink. (Where
# /etc/staff-group-for-usr-local exists, Debian makes /usr/local group staff 2775: install
# with PREFIX=/usr then.)
p="$LIBEXEC/watchword-helper"
while :; do
    if [ -L "$p" ] || [ "$(stat -c %u "$p")" != 0 ] || (( 0$(stat -c %a "$p") & 8#022 )); then
        die "$p must be root's, not writable by group or other and no symlink (it is $(stat -c '%U %a %F' "$p")): the module would refuse the helper below it"
    fi
    [ "$p" = / ] && break
    p=$(dirname "$p")
done

pamdir=$(dirname "$(find -H /lib /usr/lib -name pam_unix.so -print -quit)")
cat <<TXT

watchword is installed:
  $SBIN/watchword                       the admin command (try: watchword --help)
  $LIBEXEC/watchword-helper     run by the PAM module at each login
  $pamdir/pam_watchword.so
  $CONFIG_DIR/config.toml               settings (root, 0600)
  $STATE_DIR/                          user state (root, 0700)
  man watchword, man pam_watchword, man watchword-config.toml

Next steps:
  1. Enroll a user and scan the QR code with an authenticator app:
       watchword enroll alice --totp
  2. Keep a root shell open, then ask for the code in sudo and ssh:
       watchword enable sudo
       watchword enable sshd --with-publickey     (or without: the password, then the code)
     and try a new login in another terminal: sudo -k; sudo true   /   ssh alice@host
  3. Check that the code is really required: watchword doctor
  To do it by hand instead, see $SHARE/pam.d-sudo, pam.d-sshd and sshd_config-watchword.conf.
  enable refuses while nobody is enrolled; --nullok lets users who are not enrolled in
  without a code while you enroll everybody.
TXT
