#!/usr/bin/env bash
# Runs every test: Swift unit tests, then the integration suite that drives the real
# pam_watchword.so through real libpam (pam_wrapper + pamtester) and the real CLI.
# As root on Debian 12; installs what it needs with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "Tests/run.sh: run as root (the helper and state checks need it)" >&2; exit 1; }
bash install/deps.sh --test

echo "== build"
swift build --quiet    # debug: the unit tests, and the crash points of the crash-safety tests
make -s -C pam

echo "== package"
# What ships: the Debian package (release build, static Swift runtime), built once and
# installed with apt as install/install.sh does; the integration suite runs what it installed.
bash install/build-deb.sh .build/deb >/dev/null
deb="$PWD/.build/deb/watchword_$(tr -d '[:space:]' <VERSION)_$(dpkg-architecture -qDEB_HOST_ARCH).deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall -o DPkg::Lock::Timeout=300 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$deb" >/dev/null

echo "== swift test"
swift test --quiet

echo "== fuzz"
bash Fuzz/run.sh 10

echo "== integration"
# -rs lists every skip with its reason; with CI=true a skip not on the allow-list in
# Tests/integration/conftest.py fails the run instead.
# The integration suite runs the installed package's CLI, helper and module; only the
# crash-point tests, which need WATCHWORD_TEST_HOOKS, run the debug build. test_deb.py
# removes, purges, upgrades and reinstalls WATCHWORD_DEB.
export WATCHWORD_BUILD="$(swift build -c release --show-bin-path)"
export WATCHWORD_DEB="$deb"
export WATCHWORD_CLI=/usr/sbin/watchword
export WATCHWORD_HELPER=/usr/libexec/watchword/watchword-helper
export WATCHWORD_MODULE="$(dpkg -L watchword | grep '/security/pam_watchword\.so$')"
export WATCHWORD_HOOKS_BUILD="$PWD/.build/debug"
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider Tests/integration "$@"
