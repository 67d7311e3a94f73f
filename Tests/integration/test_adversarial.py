"""Hostile input, races, crashes and guessing, through the real module, helper and CLI.

Each hostile case must end in a clear refusal, no crash, and every other user's state
byte-for-byte unchanged. Figures (cases, races, kills, guesses) are printed; run with
`-s` to see them.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from collections import Counter
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import PAM_AUTH_ERR, PAM_SUCCESS, run_pamtester, write_service
from ww import CLI, Watchword, oathtool_hotp, oathtool_totp

AUTH_FAILURE = "Authentication failure"


@pytest.fixture
def ww(tmp_path, helper_dir, pam_module) -> Watchword:
    return Watchword(tmp_path / "ww", helper_dir)


def fresh_code(secret: str, margin: float = 5) -> str:
    """A code with at least `margin` seconds left in its step."""
    if 30 - time.time() % 30 < margin:
        time.sleep(30 - time.time() % 30 + 0.1)
    return oathtool_totp(secret)


def no_core_dumps(path: Path) -> bool:
    return not any(p.name.startswith("core") for p in path.rglob("*"))


# --- hostile input --------------------------------------------------------------

HOSTILE_CODES = {
    "empty": "",
    "spaces": "      ",
    "letters": "abcdef",
    "too short": "123",
    "too long": "1234567",
    "64 digits": "1" * 64,
    "100 kB": {"repeat": "7", "count": 100_000},
    "4096 bytes": {"repeat": "8", "count": 4096},
    "4097 bytes": {"repeat": "8", "count": 4097},
    "Arabic-Indic digits": "١٢٣٤٥٦",
    "fullwidth digits": "１２３４５６",
    "superscript digits": "¹²³⁴⁵⁶",
    "embedded NUL": "123\x00456",
    "CR inside": "123\r456",
    "escape sequence": "\x1b[2J\x1b[31m123456",
    "format string": "%s%s%n%x",
    "shell": "$(reboot);`id`",
    "signed": "-123456",
    "plus": "+123456",
    "hex": "0x1e240",
    "decimal point": "123456.0",
    "newline in middle": "123\n456",
    "unicode line separator": "123\u2028456",
    "RTL override": "\u202e654321",
}


def test_hostile_codes_are_refused_and_change_only_the_failure_count(ww, run_pam_conv, capsys):
    alice = ww.enroll("alice")
    ww.enroll("bob")
    ww.write_config("[policy]\nmax_failures = 1000\n")
    bob_before = ww.user_file("bob").read_bytes()
    count = 0
    for name, answer in HOSTILE_CODES.items():
        res = run_pam_conv(ww.args(), "alice", [answer], timeout=30)
        assert res.pam_rc == PAM_AUTH_ERR, (name, res.output)
        assert res.logged("outcome=auth_err"), (name, res.log_text())
        count += 1
    # Not one of them was a valid guess, so none may have been taken as a code ...
    shown = ww.show("alice")
    assert shown["last_success"] is None
    # ... the digit strings count as guesses ("123\0456" reaches PAM as "123"), the rest
    # are not codes and do not.
    assert shown["failures"] == 4, shown
    assert ww.user_file("bob").read_bytes() == bob_before
    # And the account still works.
    assert run_pam_conv(ww.args(), "alice", [fresh_code(alice["secret"])]).pam_rc == PAM_SUCCESS
    with capsys.disabled():
        print(f"\n  hostile codes: {count} cases refused")


HOSTILE_USERS = [
    b"..", b".", b"../alice", b"alice/..", b"/etc/passwd", b"-alice", b"--help", b".alice",
    b"a" * 300, b"a" * 65, b"al ice", b"alice\n", b"alice\r", b"al\tice", b"alice\x1b[31m",
    b"\xff\xfe", b"alic\xc3", b"\xd0\xb0lice",  # Cyrillic a
    "ａｌｉｃｅ".encode(), "alice\u200b".encode(), b"alice ", b" alice", b"*", b"alice*",
    b"%s%n", b"$(id)", b"alice;id", b"`id`", b"~root",
]


def test_hostile_user_names_are_refused_and_change_nothing(ww, service_dir, pam_module, capsys):
    alice = ww.enroll("alice")
    before = ww.snapshot()
    write_service(service_dir, "hostile", [f"auth required {pam_module} {ww.args('nullok')}",
                                           "auth required pam_permit.so"])
    count = 0
    for name in HOSTILE_USERS:
        res = run_pamtester(service_dir, "hostile", name, fresh_code(alice["secret"]) + "\n", timeout=30)
        assert res.rc == 1, (name, res.output)
        count += 1
        # The CLI refuses them too, with a clear message.
        proc = subprocess.run([CLI, "enroll", "--totp", "--state-dir", ww.state, "--config", ww.config, "--", name],
                              capture_output=True)
        assert proc.returncode != 0 and proc.stdout == b"", name
        assert b"invalid user name" in proc.stderr or b"Error" in proc.stderr, (name, proc.stderr)
        count += 1
    assert ww.snapshot() == before
    assert no_core_dumps(ww.base)
    with capsys.disabled():
        print(f"\n  hostile user names: {count} cases refused (module and CLI)")


HOSTILE_CONFIGS = {
    "wrong type": ("[policy]\nwindow = \"1\"\n", "policy.window must be an integer"),
    "negative": ("[policy]\nmax_failures = -5\n", "policy.max_failures = -5 is out of range"),
    "huge": ("[policy]\nlockout_seconds = 99999999999999999999\n", "out of range"),
    "float": ("[policy]\nwindow = 1.5\n", "floats"),
    "unknown provider": ("[sms]\nprovider = \"carrier-pigeon\"\n", "sms.provider = \"carrier-pigeon\" is not one of"),
    "unknown key": ("[policy]\nwindow = 1\nmax_tries = 3\n", "unknown key 'policy.max_tries'"),
    "unknown table": ("[polcy]\nwindow = 1\n", "unknown"),
    "duplicate key": ("[policy]\nwindow = 1\nwindow = 2\n", "defined twice"),
    "not toml": ("this is not toml\n", "line 1"),
    "binary": ("\x00\x01\x02\xff", "line 1"),
    "plain http to a remote host": ("[sms.twilio]\napi_base = \"http://example.com\"\n", "sms.twilio.api_base"),
    "postgres without conninfo": ("[store]\nbackend = \"postgres\"\n", "store.postgres.conninfo"),
}


@pytest.mark.parametrize("case", list(HOSTILE_CONFIGS))
def test_hostile_configs_deny_logins_and_name_the_problem(ww, run_pam, case):
    text, message = HOSTILE_CONFIGS[case]
    alice = ww.enroll("alice")
    ww.write_config("")
    ww.config.write_bytes(text.encode("latin-1"))
    before = ww.snapshot()
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert res.rc == 1 and res.logged("outcome=unavailable"), res.output
    assert message in res.log_text(), res.log_text()
    proc = ww.cli("list", check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert ww.snapshot() == before


def test_a_100_MB_state_file_is_refused_quickly(ww, run_pam):
    alice = ww.enroll("alice")
    ww.enroll("bob")
    bob_before = ww.user_file("bob").read_bytes()
    with open(ww.user_file("alice"), "r+b") as f:
        f.truncate(100 * 1024 * 1024)
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert res.rc == 1 and res.logged("larger than the limit"), res.log_text()
    assert res.elapsed < 5
    assert ww.user_file("bob").read_bytes() == bob_before
    assert run_pam(ww.args(), "bob", "000000\n").rc == 1  # bob still works normally (wrong code)


def test_every_truncation_of_a_state_file_is_refused(ww, run_pam):
    ww.enroll("alice")
    good = ww.user_file("alice").read_bytes()
    for cut in sorted(set([0, 1, 10, len(good) // 2, len(good) - 5, len(good) - 1] + random.sample(range(len(good)), 10))):
        ww.user_file("alice").write_bytes(good[:cut])
        res = run_pam(ww.args(), "alice", "123456\n")
        assert res.rc == 1 and res.logged("outcome=unavailable"), (cut, res.log_text())


# --- races --------------------------------------------------------------------------

def test_32_concurrent_logins_with_one_code_succeed_exactly_once(ww, service_dir, pam_module, capsys):
    # A high failure limit, so the 31 replays do not lock the account during the race.
    ww.write_config("[policy]\nmax_failures = 1000\n")
    write_service(service_dir, "race", [f"auth required {pam_module} {ww.args()}"])
    rounds, total_ok = 4, 0
    for n in range(rounds):
        user = f"racer{n}"
        secret = ww.enroll(user)["secret"]
        code = fresh_code(secret, margin=10)
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda _: run_pamtester(service_dir, "race", user, code + "\n"), range(32)))
        ok = sum(1 for r in results if r.rc == 0)
        outcomes = Counter(r.log_text().splitlines()[-1] if r.syslog else r.output[-200:] for r in results)
        assert ok == 1, outcomes
        assert ww.show(user)["failures"] == 31
        total_ok += ok
    with capsys.disabled():
        print(f"\n  races: {rounds} rounds x 32 concurrent logins with one code -> {total_ok} successes")


def test_concurrent_wrong_codes_are_counted_exactly(ww, service_dir, pam_module):
    ww.enroll("alice")
    ww.write_config("[policy]\nmax_failures = 1000\n")
    write_service(service_dir, "race", [f"auth required {pam_module} {ww.args()}"])
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda i: run_pamtester(service_dir, "race", "alice", f"{i:06d}\n"), range(48)))
    assert all(r.rc == 1 for r in results)
    assert ww.show("alice")["failures"] == 48


def test_concurrent_admin_commands_and_logins_never_tear_or_lose(ww, service_dir, pam_module):
    alice = ww.enroll("alice")
    write_service(service_dir, "race", [f"auth required {pam_module} {ww.args()}"])
    stop = time.monotonic() + 8
    errors: list[str] = []

    def admin(kind: int):
        while time.monotonic() < stop:
            cmd = [("unlock", "alice"), ("show", "alice", "--json"), ("recovery-codes", "alice", "--json"),
                   ("list", "--json")][kind % 4]
            proc = ww.cli(*cmd, check=False)
            if proc.returncode != 0:
                errors.append(f"{cmd}: {proc.stderr}")

    def logins():
        while time.monotonic() < stop:
            res = run_pamtester(service_dir, "race", "alice", "000000\n")
            if not res.logged("outcome=auth_err") and not res.logged("outcome=maxtries"):
                errors.append(res.log_text())

    threads = [threading.Thread(target=admin, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=logins) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    shown = ww.show("alice")  # still parses
    assert shown["recovery_codes_left"] == 10
    assert not list((ww.state / "users").glob(".*.tmp"))
    ww.cli("unlock", "alice")
    assert ww.cli("remove", "alice").returncode == 0


# --- crashes ---------------------------------------------------------------------------

def kill_helpers(helper: Path) -> bool:
    """SIGKILLs the running copies of this test's helper (found by executable path, so
    other test runs' helpers on the machine are left alone)."""
    killed = False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") == str(helper):
                os.kill(int(pid), signal.SIGKILL)
                killed = True
        except OSError:
            pass
    return killed


def test_sigkill_at_random_moments_never_tears_state_or_rewinds_counters(ww, service_dir, pam_module, capsys):
    hal = ww.enroll("hal", "--hotp")
    ww.enroll("alice")
    ww.write_config("[policy]\nmax_failures = 1000\nhotp_lookahead = 50\n")
    write_service(service_dir, "crash", [f"auth required {pam_module} {ww.args('timeout=10')}"])
    env = {"LD_PRELOAD": "libpam_wrapper.so", "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": str(service_dir),
           "PATH": os.environ["PATH"]}
    counter, kills, logins, last_counter = 0, 0, 0, 0
    rng = random.Random(1234)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and logins < 300:
        code = oathtool_hotp(hal["secret"], counter)
        proc = subprocess.Popen(["pamtester", "crash", "hal", "authenticate"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        proc.stdin.write((code + "\n").encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0, 0.012))
        killed = kill_helpers(ww.helper)
        kills += killed
        # Also kill CLI writers mid-write now and then.
        if rng.random() < 0.3:
            cli = subprocess.Popen([CLI, "recovery-codes", "alice", "--state-dir", ww.state, "--config", ww.config],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 0.01))
            cli.send_signal(signal.SIGKILL)
            cli.wait()
            kills += 1
        proc.wait(timeout=30)
        logins += 1
        shown = ww.show("hal")  # parses after every kill
        assert shown["counter"] >= last_counter, "HOTP counter went backwards"
        last_counter = shown["counter"]
        if shown["counter"] > counter:
            counter = shown["counter"]
        else:
            counter += 0  # the kill came before the write: the same code stays valid
        assert json.loads(ww.cli("show", "alice", "--json").stdout)["user"] == "alice"
        leftovers = list((ww.state / "users").glob(".*.tmp"))
        assert len(leftovers) <= 2, leftovers  # at most one per user, replaced by the next write
    assert no_core_dumps(ww.base)
    with capsys.disabled():
        print(f"\n  crashes: {logins} logins, {kills} SIGKILLs, counter reached {last_counter}, state always parsed")


# --- brute force ------------------------------------------------------------------------

def test_brute_force_is_bounded_by_lockout(ww, service_dir, pam_module, capsys):
    ww.enroll("alice")  # default policy: 5 failures, 30 s lockout doubling to an hour
    write_service(service_dir, "guess", [f"auth required {pam_module} {ww.args()}"])
    duration = 8.0
    made = checked = 0
    rng = random.Random(99)
    end = time.monotonic() + duration
    lock = threading.Lock()

    def guesser():
        nonlocal made, checked
        while time.monotonic() < end:
            res = run_pamtester(service_dir, "guess", "alice", f"{rng.randrange(10**6):06d}\n")
            with lock:
                made += 1
                checked += res.logged("outcome=auth_err")
            assert res.rc == 1

    threads = [threading.Thread(target=guesser) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert checked == 5, (made, checked)  # the rest met the lockout, unchecked
    # Over a day at any rate: 5 checked guesses, then one per lockout, each lockout twice
    # as long as the last up to an hour: 30+60+...+1920 s, then 3600 s each.
    lock_s, t, per_day = 30, 0, 5
    while t < 86400:
        t += lock_s
        per_day += 1
        lock_s = min(lock_s * 2, 3600)
    p_day = per_day * 3 / 10**6  # 3 codes valid at once with window = 1
    with capsys.disabled():
        print(f"\n  brute force: {made} guesses in {duration:.0f} s, {checked} checked; at most {per_day} "
              f"checked guesses/day -> P(success/day) <= {p_day:.1e} (NIST SP 800-63B allows 100 failures)")
    assert per_day < 100


# --- fail closed on a full or read-only filesystem ------------------------------------------

def _in_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_full_or_read_only_state_filesystem_denies_and_loses_nothing(ww, service_dir, pam_module, kind):
    h = ww.enroll("hal", "--hotp")
    write_service(service_dir, "fs", [f"auth required {pam_module} {ww.args()}"])
    os.chmod(ww.base, 0o700)
    before = ww.user_file("hal").read_bytes()
    code = oathtool_hotp(h["secret"], 0)
    fill = f"dd if=/dev/zero of={ww.state}/filler bs=4k 2>/dev/null || true" if kind == "full" else \
        f"mount -o remount,ro {ww.state}"
    size = "size=256k" if kind == "full" else "size=1m"
    script = f"""
        mkdir -p /tmp/ww-fs-copy && cp -a {ww.state}/. /tmp/ww-fs-copy/
        mount -t tmpfs -o {size},mode=0700,uid=0,gid=0 tmpfs {ww.state}
        cp -a /tmp/ww-fs-copy/. {ww.state}/ && rm -rf /tmp/ww-fs-copy
        {fill}
        LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR={service_dir} PAM_WRAPPER_DEBUGLEVEL=2 \
            pamtester fs hal authenticate <<EOF || echo DENIED
{code}
EOF
        cat {ww.state}/users/hal > /tmp/ww-fs-after
    """
    res = _in_namespace(script)
    assert "DENIED" in res.stdout, res.stdout + res.stderr
    assert "outcome=unavailable" in res.stderr, res.stderr
    assert ("No space left" in res.stderr) or ("Read-only" in res.stderr), res.stderr
    assert Path("/tmp/ww-fs-after").read_bytes() == before  # nothing lost or torn
    os.unlink("/tmp/ww-fs-after")
