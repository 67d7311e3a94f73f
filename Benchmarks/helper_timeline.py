#!/usr/bin/python3
"""Where a helper's time goes, from exec to exit, by kernel tracepoints (perf).

    python3 Benchmarks/helper_timeline.py N NAME=HELPER ...

Runs N correct-code logins of each helper over a socket pair (helper_ab.py's "sock" mode,
in rotation) under `perf record` of the system-call, page-fault and exec/exit tracepoints,
then prints for each helper the mean microseconds per login spent in each system call, in
user space between them (page faults included), before its first system call (the C
library's and runtime's start), and the page faults counted. A design floor to compare
with: `cc -O2 -static -o /tmp/floor-helper Benchmarks/floor_helper.c` and floor=/tmp/floor-helper.

Tracing costs about a microsecond an event: compare helpers within one run, not with the
untraced figures. Needs root, perf (linux-perf) and what helper_ab.py needs.
"""
from __future__ import annotations

import collections
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EVENTS = ["raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_process_exec",
          "sched:sched_process_exit", "exceptions:page_fault_user"]
NAMES = {0: "read", 1: "write", 3: "close", 9: "mmap", 10: "mprotect", 12: "brk", 13: "rt_sigaction", 16: "ioctl",
         44: "sendto", 45: "recvfrom", 63: "uname", 73: "flock", 74: "fsync", 82: "rename", 87: "unlink",
         89: "readlink", 91: "fchmod", 202: "futex", 257: "openat", 262: "newfstatat", 263: "unlinkat",
         264: "renameat", 302: "prlimit64", 318: "getrandom", 231: "exit_group"}
LINE = re.compile(r"^\s*\S+\s+(\d+)/\d+\s+\[\d+\]\s+([\d.]+):\s+(\S+):\s*(.*)$")


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    n, specs = sys.argv[1], sys.argv[2:]
    helpers = {spec.split("=", 1)[1]: spec.split("=", 1)[0] for spec in specs}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        events = sum((["-e", e] for e in EVENTS), [])
        subprocess.run(["perf", "record", "-q", "-a", "-o", str(data), *events, "--", sys.executable,
                        str(Path(__file__).with_name("helper_ab.py")), "sock", n, *specs], check=True,
                       stdout=subprocess.DEVNULL)
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,event,trace"],
                                capture_output=True, text=True, check=True).stdout
    by_pid: dict[int, list[tuple[float, str, str]]] = collections.defaultdict(list)
    for line in script.splitlines():
        m = LINE.match(line)
        if m:
            by_pid[int(m.group(1))].append((float(m.group(2)) * 1e6, m.group(3), m.group(4)))
    totals: dict[str, dict[str, list[float]]] = {name: collections.defaultdict(list) for name in helpers.values()}
    for events in by_pid.values():
        execs = [e for e in events if e[1] == "sched:sched_process_exec"]
        exits = [e for e in events if e[1] == "sched:sched_process_exit"]
        if not execs or not exits:
            continue
        exe = re.search(r"filename=(\S+)", execs[0][2]).group(1)
        name = next((v for k, v in helpers.items() if Path(exe).name == f"helper-{v}"), None)
        if name is None:
            continue
        start, end = execs[0][0], exits[-1][0]
        spent: collections.Counter[str] = collections.Counter()
        entered, left, nr, first = None, start, None, True
        for t, event, rest in events:
            if t < start:
                continue
            if event == "raw_syscalls:sys_enter":
                nr = int(re.search(r"NR (\d+)", rest).group(1))
                spent["user, before the first system call" if first else "user, between system calls"] += t - left
                first, entered = False, t
            elif event == "raw_syscalls:sys_exit" and entered is not None:
                spent[f"sys {NAMES.get(nr, nr)}"] += t - entered
                left, entered = t, None
            elif event == "exceptions:page_fault_user":
                spent["page faults (count)"] += 1
        spent["total, exec to exit"] = end - start
        for key, value in spent.items():
            totals[name][key].append(value)
    for name, rows in totals.items():
        logins = len(rows.get("total, exec to exit", []))
        print(f"== {name}: {logins} logins, mean µs per login")
        for mean, key in sorted(((sum(v) / logins, k) for k, v in rows.items()), reverse=True):
            if mean >= 1:
                print(f"  {mean:8.1f}  {key}")


if __name__ == "__main__":
    main()
