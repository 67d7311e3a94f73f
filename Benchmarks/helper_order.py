#!/usr/bin/python3
"""Writes install/watchword-helper.order: the functions and data one login touches, for lld.

    python3 Benchmarks/helper_order.py [BUILD_DIR] [--out FILE]

install/build-deb.sh links the static helper with lld and this file
(--symbol-ordering-file), so that what a login runs and touches sits together instead of
across the 10 MiB program: each first touch of a page is a page fault, and the kernel maps
code 64 KiB at a time around it (BENCHMARKS.md: page faults a login 145 -> 94). The file is
a list of symbol names, functions first (callgrind: every function one correct TOTP login
runs), then data (lackey: every variable it reads or writes in the program's data, in the
order first touched). Only the order of the program changes, never what it does: a stale
file costs speed, not correctness; build-deb.sh says how many of its names the build still
has. Regenerate it when the login path changes.

BUILD_DIR holds `watchword` (to enroll the user) and the *unstripped* static helper as
`watchword-helper`; by default .build/release/watchword and .build-static/release/watchword-helper,
which install/build-deb.sh leaves behind. Needs root and valgrind.
"""
from __future__ import annotations

import argparse
import bisect
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helper_instructions as hi  # noqa: E402
import pam_bench as pb  # noqa: E402

DATA_SECTIONS = {".data", ".bss", ".data.rel.ro", ".data.rel.ro.local", ".rodata", ".tdata", ".tbss"}


def functions(build: Path, tmp: Path) -> list[str]:
    out = tmp / "callgrind.out"
    hi.valgrind_login(build, ["--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"])
    ordered: dict[str, None] = {}
    for line in out.read_text().splitlines():
        # "fn=(12) name" names function 12 the first time; later lines say "fn=(12)" only.
        m = re.match(r"c?fn=\(\d+\) (.+)$", line)
        name = m.group(1).split("'")[0] if m else ""  # "name'2": a recursion level
        if name and not name.startswith("0x"):
            ordered.setdefault(name, None)
    return list(ordered)

def data(build: Path, tmp: Path) -> list[str]:
    log = tmp / "lackey.log"
    hi.valgrind_login(build, ["--tool=lackey", "--trace-mem=yes", f"--log-file={log}"])
    helper = build / "watchword-helper"
    sections = []
    for line in subprocess.run(["readelf", "-SW", str(helper)], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and m.group(1) in DATA_SECTIONS and int(m.group(2), 16):
            sections.append((int(m.group(2), 16), int(m.group(2), 16) + int(m.group(3), 16)))
    symbols = []
    nm = subprocess.run(["nm", "-n", "-S", "--defined-only", str(helper)], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "bBdDrRvV":
            symbols.append((int(parts[0], 16), max(int(parts[1], 16), 1), parts[3]))
    symbols.sort()
    starts = [s[0] for s in symbols]
    ordered: dict[str, None] = {}
    with log.open() as lines:
        for line in lines:
            # " L 0403f2a0,8" (load), " S ..." (store), " M ..." (modify); "I" lines are code.
            if len(line) < 4 or line[0] != " " or line[1] not in "LSM":
                continue
            address = int(line[3:].split(",")[0], 16)
            if not any(start <= address < end for start, end in sections):
                continue
            i = bisect.bisect_right(starts, address) - 1
            if i >= 0 and address < symbols[i][0] + symbols[i][1]:
                ordered.setdefault(symbols[i][2], None)
    return list(ordered)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?")
    ap.add_argument("--out", default=str(pb.REPO / "install" / "watchword-helper.order"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.build:
            build = Path(args.build)
        else:
            build = tmp / "build"
            build.mkdir()
            shutil.copy(pb.REPO / ".build" / "release" / "watchword", build / "watchword")
            shutil.copy(pb.REPO / ".build-static" / "release" / "watchword-helper", build / "watchword-helper")
        names = functions(build, tmp)
        variables = data(build, tmp)
    Path(args.out).write_text("\n".join(names + variables) + "\n")
    print(f"{args.out}: {len(names)} functions, {len(variables)} variables")


if __name__ == "__main__":
    main()
