#!/usr/bin/python3
"""A/B of helper builds (and modules), login by login, in one run.

    python3 Benchmarks/helper_ab.py MODE N NAME=HELPER[@MODULE] ...

MODE is one of
  start   exec to exit of a helper refused at its argv check (start-up alone),
  sock    a whole correct-code login over a socket pair, as pam_watchword.so drives it
          but without PAM (the "helper, a whole login over the socket" row of pam_bench.py),
  pam     a correct-code login through pamtester under pam_wrapper, next to pam_permit and
          google-authenticator (MODULE defaults to this checkout's pam/pam_watchword.so).

Every round runs each contender once, each with a fresh user, and the order rotates from
round to round (the first process of a round runs a little slower here), so noise and
position hit every contender alike. Prints medians; compare them within one run.
Needs root, the same packages as pam_bench.py, and a built CLI (WATCHWORD_BUILD).
"""
from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pam_bench  # noqa: E402


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in ("start", "sock", "pam"):
        sys.exit(__doc__)
    mode, n = sys.argv[1], int(sys.argv[2])
    contenders = {}
    for arg in sys.argv[3:]:
        name, spec = arg.split("=", 1)
        helper, _, module = spec.partition("@")
        contenders[name] = (Path(helper), Path(module) if module else pam_bench.MODULE)
    users = n * (len(contenders) + 2) + 2
    with tempfile.TemporaryDirectory(prefix="ww-ab-", dir=pam_bench.bench_root()) as tmp:
        s = pam_bench.Setup(Path(tmp), users, pam_bench.build_dir())
        for name, (helper, module) in contenders.items():
            copy = s.helper.parent / f"helper-{name}"
            shutil.copy(helper, copy)
            os.chmod(copy, 0o755)
            s.service(f"ab-{name}", f"auth required {module} helper={copy} state_dir={s.state} config={s.config}")
        os.sync()
        names = (["permit", "google-authenticator"] if mode == "pam" else []) + list(contenders)
        times: dict[str, list[float]] = {name: [] for name in names}
        user = 0
        for i in range(n):
            code = pam_bench.stable_code()
            for name in names[i % len(names):] + names[:i % len(names)]:
                u = f"u{user}"
                user += 1
                if mode == "start":
                    t = time.perf_counter()
                    subprocess.run([s.helper.parent / f"helper-{name}"], capture_output=True)
                    ms = (time.perf_counter() - t) * 1000
                elif mode == "sock":
                    ms = sock_login(s, s.helper.parent / f"helper-{name}", u, code)
                else:
                    service = name if name in ("permit", "google-authenticator") else f"ab-{name}"
                    ms, rc = s.login(service, u, code)
                    assert rc == 0, (name, u)
                times[name].append(ms)
    for name in names:
        v = sorted(times[name])
        print(f"{name:22} median {statistics.median(v):7.2f} ms   p10 {v[len(v) // 10]:7.2f}   p90 {v[len(v) * 9 // 10]:7.2f}")
    if mode == "pam":
        ga = statistics.median(times["google-authenticator"])
        for name in contenders:
            print(f"{name} / google-authenticator: {statistics.median(times[name]) / ga:.3f}")


def sock_login(s: pam_bench.Setup, helper: Path, user: str, code: str) -> float:
    a, b = socket.socketpair()
    t = time.perf_counter()
    p = subprocess.Popen([helper, "--pam"], stdin=b, stdout=b, stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
    b.close()
    pam_bench.helper_conversation(a, s, user, code)
    rc = p.wait()
    ms = (time.perf_counter() - t) * 1000
    a.close()
    assert rc == 0, (helper, user, rc)
    return ms


if __name__ == "__main__":
    main()
