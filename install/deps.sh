#!/usr/bin/env bash
# Installs the Debian packages watchword needs: to build (default) or also to test (--test).
# Runs apt-get only when something is missing, so repeated runs are fast.
set -euo pipefail

build=(libpam0g-dev libssl-dev libqrencode-dev libcurl4-openssl-dev libpq-dev pkg-config make gcc dpkg-dev)  # dpkg-dev: build-deb.sh
test=(pamtester libpam-wrapper openssh-server openssh-client sudo expect oathtool
      libpam-google-authenticator libpam-oath python3-pytest python3-pexpect man-db groff-base
      openssl postgresql pgbouncer zsh zbar-tools lintian)  # zbar-tools: test_qr.py decodes the QR codes; pgbouncer: Benchmarks/fleet_bench.py; openssl passwd: the sshd and sudo end-to-end tests give their user a password;
                             # zsh parses the generated completion script; lintian checks the package (test_deb.py)

want=("${build[@]}")
[ "${1:-}" = "--test" ] && want+=("${test[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
