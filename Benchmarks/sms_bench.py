#!/usr/bin/python3
"""Start-to-prompt time of an SMS login, with a loopback Twilio stand-in that answers in
0 ms and in 200 ms, next to a TOTP login's start-to-prompt (the same helper, no text).

    python3 Benchmarks/sms_bench.py [N]

pamtester runs in a pty under pam_wrapper; the clock runs from its start to the moment the
prompt appears. Overhead = SMS start-to-prompt minus the provider's own latency.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pam_bench import bench_root  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "integration"))
from sms_standins import TwilioStandIn  # noqa: E402

MODULE = REPO / "pam" / "pam_watchword.so"
BUILD = Path(os.environ.get("WATCHWORD_BUILD", REPO / ".build" / "release"))


class SlowTwilio(TwilioStandIn):
    delay = 0.0

    def answer(self, req):
        time.sleep(self.delay)
        return super().answer(req)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    base = Path(tempfile.mkdtemp(prefix="ww-smsbench-", dir=bench_root()))
    os.chmod(base, 0o700)
    libexec = base / "libexec"
    libexec.mkdir()
    os.chmod(libexec, 0o755)
    helper = libexec / "watchword-helper"
    shutil.copy(BUILD / "watchword-helper", helper)
    os.chmod(helper, 0o755)
    # The package's static helper hands an SMS login to its dynamic sibling.
    if (BUILD / "watchword-helper-dynamic").exists():
        shutil.copy(BUILD / "watchword-helper-dynamic", libexec / "watchword-helper-dynamic")
        os.chmod(libexec / "watchword-helper-dynamic", 0o755)
    state, etc = base / "state", base / "etc"
    etc.mkdir(mode=0o700)
    config = etc / "config.toml"
    outbox = base / "outbox"
    twilio = SlowTwilio(outbox)
    config.write_text(twilio.config(resend_interval_seconds=0, max_per_hour=1000, max_per_hour_total=1000))
    os.chmod(config, 0o600)
    cli = [str(BUILD / "watchword"), "--state-dir", str(state), "--config", str(config)]
    for i in range(3 * n):
        subprocess.run([cli[0], "enroll", "--allow-unknown-user", f"s{i}", "--sms", f"+1415555{i:04d}", *cli[1:]], check=True,
                       capture_output=True)
    subprocess.run([cli[0], "enroll", "--allow-unknown-user", "t0", "--totp", *cli[1:]], check=True, capture_output=True)
    services = base / "pam.d"
    services.mkdir()
    (services / "bench").write_text(f"auth required {MODULE} helper={helper} state_dir={state} config={config}\n")
    env = {"PATH": os.environ["PATH"], "LD_PRELOAD": "libpam_wrapper.so", "PAM_WRAPPER": "1",
           "PAM_WRAPPER_SERVICE_DIR": str(services)}

    def to_prompt(user: str) -> float:
        t = time.perf_counter()
        child = pexpect.spawn("pamtester", ["bench", user, "authenticate"], env=env, timeout=30)
        child.expect("Verification code: ")
        ms = (time.perf_counter() - t) * 1000
        child.sendline("000000" if user.startswith("s") else "000000")
        child.expect(pexpect.EOF)
        child.close()
        return ms

    results = {}
    k = 0
    for label, delay in (("sms, provider 0 ms", 0.0), ("sms, provider 200 ms", 0.2)):
        twilio.delay = delay
        times = []
        for _ in range(n):
            times.append(to_prompt(f"s{k}"))
            k += 1
        results[label] = times
    subprocess.run([cli[0], "unlock", "t0", *cli[1:]], capture_output=True)
    results["totp (no text)"] = []
    for _ in range(n):
        results["totp (no text)"].append(to_prompt("t0"))
        subprocess.run([cli[0], "unlock", "t0", *cli[1:]], capture_output=True)
    twilio.stop()
    assert len(twilio.texts) == 2 * n, len(twilio.texts)
    print(f"{'path':24} {'median ms':>10} {'p99 ms':>8}")
    for label, times in results.items():
        s = sorted(times)
        print(f"{label:24} {statistics.median(s):10.1f} {s[int(0.99 * (len(s) - 1))]:8.1f}")
    m0 = statistics.median(results["sms, provider 0 ms"])
    m200 = statistics.median(results["sms, provider 200 ms"])
    mt = statistics.median(results["totp (no text)"])
    print(f"overhead over the provider's latency: {m200 - 200:.1f} ms at 200 ms, {m0:.1f} ms at 0 ms; "
          f"of which the text itself (sms at 0 ms minus totp): {m0 - mt:.1f} ms")
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
