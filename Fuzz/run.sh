#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for SECONDS_PER_TARGET (default 10) on a copy of
# its seed corpus in Fuzz/corpus/, so a run never changes the repository. Exits non-zero when
# any target finds a crash, printing the path of the crashing input (kept under
# Fuzz/.build/artifacts/, the logs under Fuzz/.build/logs/). See Fuzz/README.md for longer
# campaigns.
#
#   bash Fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# TARGET is one of the names below (state-file config otpauth-uri base32 offline-cache
# google-authenticator oath json module-protocol);
# all of them when none is given. FUZZ_FLAGS adds libFuzzer options, e.g.
# FUZZ_FLAGS="-jobs=2 -workers=2". FUZZ_WORK_DIR keeps the growing corpora there (one
# directory per target) instead of in a temporary directory, so a campaign can go on later.
set -euo pipefail
keep="${FUZZ_WORK_DIR:+$(realpath -m "$FUZZ_WORK_DIR")}"
cd "$(dirname "$0")"

seconds="${1:-10}"
shift || true
case "$seconds" in '' | *[!0-9]*) echo "run.sh: SECONDS_PER_TARGET must be a number" >&2; exit 2 ;; esac

# name, binary under .build/, options of its own (state files may hold 64 recovery lines)
targets=(
    "state-file FuzzStateFile -max_len=8192"
    "config FuzzConfig"
    "otpauth-uri FuzzOTPAuthURI"
    "base32 FuzzBase32"
    "offline-cache FuzzOfflineCache -max_len=65536"
    "google-authenticator FuzzGoogleAuthenticatorFile -max_len=8192"
    "oath FuzzOathUsersFile -max_len=16384"
    "json FuzzJSON -max_len=4096"
    "module-protocol fuzz-module-protocol"
)
wanted=("$@")

scratch=.build # Fuzz/.build: ignored by the repository's .build/ pattern
swift_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
clang="${CLANG:-$swift_bin/clang}" # the toolchain's clang has libFuzzer; Debian's gcc does not

# Swift's own crash backtracer and ASan's handler trip over each other; libFuzzer's handler
# reports the crash and saves the input.
export SWIFT_BACKTRACE=enable=no

start=$SECONDS
# -Xswiftc instruments every module, the code under test included, not just the harnesses.
swift build --quiet -c release --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address
# The PAM module's protocol code, compiled from pam/helper.c as shipped.
"$clang" -g -O1 -fsanitize=fuzzer,address -fuse-ld=lld -Wall -Wextra \
    -o "$scratch/fuzz-module-protocol" ModuleProtocol/fuzz_module_protocol.c
echo "fuzz: built in $((SECONDS - start)) s"

bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)"
if [ -n "$keep" ]; then
    work="$keep"
else
    work="$(mktemp -d /tmp/watchword-fuzz.XXXXXX)"
    trap 'rm -rf "$work"' EXIT
fi
logs="$scratch/logs/$(date +%Y%m%dT%H%M%S)-$$" # one directory per run: runs may overlap
mkdir -p "$logs"
failed=0
for entry in "${targets[@]}"; do
    read -r name binary options <<<"$entry"
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $name " ]]; then continue; fi
    exe="$bin/$binary"
    [ "$binary" = fuzz-module-protocol ] && exe="$scratch/$binary"

    mkdir -p "$work/$name" "$scratch/artifacts/$name"
    cp -R "corpus/$name/." "$work/$name/"
    log="$logs/$name.log"
    dict=()
    [ -f "dict/$name.dict" ] && dict=(-dict="dict/$name.dict")
    rc=0
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of options
    "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        "${dict[@]}" -artifact_prefix="$PWD/$scratch/artifacts/$name/" ${options:-} ${FUZZ_FLAGS:-} \
        "$work/$name" >"$log" 2>&1 || rc=$?

    # -a: the logs hold raw input bytes
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1 || true)"
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz: $name FAILED (exit $rc) after ${execs:-?} runs; log: $PWD/$log"
        grep -aE 'ERROR: |Fatal error|Assertion|SUMMARY' "$log" | head -n 5 | sed 's/^/    /' || true
        grep -aoE 'Test unit written to .*' "$log" | sed "s|^Test unit written to |fuzz: crashing input: |" || true
    else
        echo "fuzz: $name ok: ${execs:-?} runs, ${rate:-?}/s, ${cov:-no coverage line}"
    fi
done
echo "fuzz: done in $((SECONDS - start)) s"
exit "$failed"
