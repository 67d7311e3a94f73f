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
# What ships: the release build with the static Swift runtime, as install/install.sh makes it.
swift build -c release --static-swift-stdlib --quiet --product watchword
swift build -c release --static-swift-stdlib --quiet --product watchword-helper
make -s -C pam

echo "== swift test"
swift test --quiet

echo "== fuzz"
bash Fuzz/run.sh 10

echo "== integration"
# -rs lists every skip with its reason; with CI=true a skip not on the allow-list in
# Tests/integration/conftest.py fails the run instead.
# The integration suite runs the release build (what install/install.sh installs); only the
# crash-point tests, which need WATCHWORD_TEST_HOOKS, run the debug build.
export WATCHWORD_BUILD="$(swift build -c release --show-bin-path)"
export WATCHWORD_HOOKS_BUILD="$PWD/.build/debug"
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider Tests/integration "$@"
