#!/usr/bin/python3
"""Instructions the helper executes for one correct TOTP login, counted by callgrind.

    python3 Benchmarks/helper_instructions.py [HELPER_DIR] [--top N]

HELPER_DIR holds watchword-helper (and watchword, to enroll the user); default
WATCHWORD_BUILD or .build/release. The helper runs as the module runs it, over a socket
pair, on a private state directory, and is counted from exec to exit; --top lists the
functions with the most instructions, callees included (build without stripping to see
names: install/build-deb.sh keeps the unstripped static helper in
.build-static/release). Needs root and valgrind (apt-get install valgrind). A count, not
a time: it does not move with the machine's load, so two builds compare exactly.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pam_bench as pb  # noqa: E402


def valgrind_login(build: Path, tool: list[str]) -> str:
    """Runs one correct TOTP login of BUILD's helper under valgrind with `tool` (its
    --tool=... and options), as the module runs it, over a socket pair, on a private state
    directory; returns valgrind's standard error. Exits when the login does not succeed."""
    with tempfile.TemporaryDirectory(dir=pb.bench_root()) as tmp:
        s = pb.Setup(Path(tmp), 2, build)
        code = pb.stable_code()
        a, b = socket.socketpair()
        p = subprocess.Popen(["valgrind", *tool, str(s.helper), "--pam"],
                             stdin=b, stdout=b, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
        b.close()
        received = pb.helper_conversation(a, s, "u1", code)
        stderr = p.communicate()[1].decode()
        if p.returncode != 0 or b" success\n" not in received:
            sys.exit(f"the login did not succeed (exit {p.returncode}): {received!r}\n{stderr}")
        return stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.environ.get("WATCHWORD_BUILD", str(pb.REPO / ".build" / "release")))
    ap.add_argument("--top", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        stderr = valgrind_login(Path(args.build), ["--tool=callgrind", f"--callgrind-out-file={out}"])
        refs = re.search(r"refs:\s+([\d,]+)", stderr)
        print(f"instructions for one correct TOTP login: {refs.group(1) if refs else '?'}")
        if args.top:
            report = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], capture_output=True, text=True).stdout
            rows = [line for line in report.splitlines() if re.match(r"\s*[\d,]+ \(", line)]
            print("\n".join(row[:160] for row in rows[1:args.top + 1]))


if __name__ == "__main__":
    main()
