#!/usr/bin/env bash
# Line and region coverage of the code under test by a set of corpora: builds the fuzz
# targets with source-based coverage (in Fuzz/.build-cov), runs every input once and prints
# llvm-cov's report for the files each target is about.
#
#   bash Fuzz/coverage.sh [CORPUS_ROOT]
#
# CORPUS_ROOT holds one directory per target, as FUZZ_WORK_DIR of run.sh does; default
# Fuzz/corpus (the committed seeds).
set -euo pipefail
root="$(realpath -m "${1:-$(dirname "$0")/corpus}")"
cd "$(dirname "$0")"

scratch=.build-cov
swift_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
clang="${CLANG:-$swift_bin/clang}"
export SWIFT_BACKTRACE=enable=no

swift build --quiet -c release --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer \
    -Xswiftc -profile-generate -Xswiftc -profile-coverage-mapping
"$clang" -g -O1 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -fuse-ld=lld \
    -o "$scratch/fuzz-module-protocol" ModuleProtocol/fuzz_module_protocol.c
bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)"

# name, binary, files reported
targets=(
    "state-file $bin/FuzzStateFile ../Sources/WatchwordCore/UserRecord.swift"
    "config $bin/FuzzConfig ../Sources/WatchwordCore/Config.swift ../Sources/WatchwordCore/TOML.swift"
    "otpauth-uri $bin/FuzzOTPAuthURI ../Sources/WatchwordOTP/OTPAuthURI.swift"
    "base32 $bin/FuzzBase32 ../Sources/WatchwordOTP/Base32.swift"
    "module-protocol $scratch/fuzz-module-protocol ../pam/helper.c"
)
for entry in "${targets[@]}"; do
    read -r name exe files <<<"$entry"
    [ -d "$root/$name" ] || continue
    rm -f "$scratch/$name".prof*
    # -runs=0 runs each input once; the profile is written at exit.
    LLVM_PROFILE_FILE="$PWD/$scratch/$name.profraw" "$exe" -runs=0 "$root/$name" >/dev/null 2>&1
    "$swift_bin/llvm-profdata" merge -o "$scratch/$name.profdata" "$scratch/$name.profraw"
    echo "== $name ($(find "$root/$name" -type f | wc -l) inputs)"
    # shellcheck disable=SC2086 # a list of files
    "$swift_bin/llvm-cov" report "$exe" -instr-profile="$scratch/$name.profdata" $files |
        sed -n '1p;3,$p'
done
