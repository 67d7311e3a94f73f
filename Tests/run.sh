#!/usr/bin/env bash
# Runs every test: Swift unit tests, then the integration suite that drives the real
# pam_watchword.so through real libpam (pam_wrapper + pamtester) and the real CLI.
# As root on Debian 12; installs what it needs with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "Tests/run.sh: run as root (the helper and state checks need it)" >&2; exit 1; }
bash install/deps.sh --test

echo "== build"
swift build --quiet
make -s -C pam

echo "== swift test"
swift test --quiet

echo "== fuzz"
bash Fuzz/run.sh 10

echo "== integration"
# -rs lists every skip with its reason; with CI=true a skip not on the allow-list in
# Tests/integration/conftest.py fails the run instead.
export WATCHWORD_BUILD="$PWD/.build/debug"
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider Tests/integration "$@"
