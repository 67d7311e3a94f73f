"""Migration: `watchword import google-authenticator|oath` and `watchword export`.

Every fixture is known-good: google-authenticator files are made by the real
`google-authenticator` command, and each one that a test logs in with first is used
through the real pam_google_authenticator.so; pam_oath users files are written in
liboath's format and proven by logging in through the real pam_oath.so (both via
pam_wrapper + pamtester). After the import, logins go through the real pam_watchword.so
with codes from oathtool for the same secret."""
from __future__ import annotations

import base64
import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from conftest import run_pamtester, write_service
from ww import CLI, Watchword, oathtool_hotp, oathtool_totp

OWNER = "nobody"  # a real account that owns the imported files



# --- helpers -------------------------------------------------------------------------

def settle(margin: float = 6, period: int = 30) -> None:
    """Wait until at least `margin` seconds are left in the current time step, so a
    sequence of logins all happen in one step."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.2)


def google_authenticator(path: Path, *flags: str, owner: str | None = OWNER) -> dict:
    """Runs the real google-authenticator non-interactively; returns the file's parts."""
    argv = ["google-authenticator", "-f", "-q", "-C", "-s", str(path), *flags]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if owner:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return parse_ga(path)


def parse_ga(path: Path) -> dict:
    lines = path.read_text().splitlines()
    return {
        "secret": lines[0],
        "options": {l[2:].split()[0]: l[2:].split()[1:] for l in lines[1:] if l.startswith('" ')},
        "scratch": [l for l in lines[1:] if re.fullmatch(r"\d{8}", l)],
    }


def ga_login(service_dir: Path, path: Path, user: str, code: str):
    """A login through the real pam_google_authenticator.so with the file at `path`
    (root-owned while this runs: the module reads it as user=root)."""
    st = path.stat()
    os.chown(path, 0, 0)
    try:
        write_service(service_dir, "ga-test", [f"auth required pam_google_authenticator.so secret={path} user=root"])
        return run_pamtester(service_dir, "ga-test", user, code + "\n")
    finally:
        os.chown(path, st.st_uid, st.st_gid)


def oath_login(service_dir: Path, usersfile: Path, user: str, code: str, window: int = 5, extra: str = ""):
    """A login through the real pam_oath.so with `usersfile`."""
    write_service(service_dir, "oath-test", [f"auth required pam_oath.so usersfile={usersfile} window={window} {extra}"])
    return run_pamtester(service_dir, "oath-test", user, code + "\n")


def b32(hex_secret: str) -> str:
    return base64.b32encode(bytes.fromhex(hex_secret)).decode().rstrip("=")


def oathtool_totp_hex(hex_secret: str, at: float | None = None, *, digits=6, period=30) -> str:
    return oathtool_totp(b32(hex_secret), at, digits=digits, period=period)


def run_import(ww: Watchword, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return ww.cli("import", *args, check=check)


def login(ww: Watchword, run_pam, user: str, code: str) -> bool:
    res = run_pam(ww.args(), user, code + "\n")
    return res.rc == 0


# --- google-authenticator ------------------------------------------------------------

def test_ga_totp_file_imports_and_logs_in_with_the_same_app(ww, run_pam, tmp_path):
    path = tmp_path / "ga_totp"
    ga = google_authenticator(path, "-t", "-d", "-r", "3", "-R", "30", "-w", "3")
    assert ga["options"].keys() >= {"TOTP_AUTH", "DISALLOW_REUSE", "RATE_LIMIT", "WINDOW_SIZE"}
    proc = run_import(ww, "google-authenticator", str(path), check=True)
    assert f"Imported {OWNER} from {path} (TOTP, 6 digits, 30 s; 5 recovery codes)." in proc.stdout
    shown = ww.show(OWNER)
    assert (shown["method"], shown["digits"], shown["period"], shown["recovery_codes_left"]) == ("totp", 6, 30, 5)
    settle()
    code = oathtool_totp(ga["secret"])
    assert login(ww, run_pam, OWNER, code)
    assert not login(ww, run_pam, OWNER, code)  # replay
    # The state file keeps the secret, never the scratch codes in the clear.
    state = ww.user_file(OWNER).read_text()
    assert f"otp.secret {ga['secret']}" in state
    assert not any(s in state for s in ga["scratch"])


def test_ga_scratch_codes_work_once_as_recovery_codes(ww, run_pam_conv, tmp_path, service_dir):
    path = tmp_path / "ga"
    ga = google_authenticator(path, "-t", "-d", "-w", "3", "-u", "-e", "4", owner=None)
    # One scratch code is used up with google-authenticator itself before the move.
    used = ga["scratch"][0]
    assert ga_login(service_dir, path, OWNER, used).rc == 0
    assert used not in parse_ga(path)["scratch"]
    run_import(ww, "google-authenticator", "--user", OWNER, str(path), check=True)
    assert ww.show(OWNER)["recovery_codes_left"] == 3
    assert run_pam_conv(ww.args(), OWNER, [used]).pam_rc != 0
    for code in ga["scratch"][1:]:
        first = run_pam_conv(ww.args(), OWNER, [code])
        assert first.pam_rc == 0, first.output
        assert first.logged("accepted (recovery)")
        assert run_pam_conv(ww.args(), OWNER, [code]).pam_rc != 0
    assert ww.show(OWNER)["recovery_codes_left"] == 0


def test_ga_disallow_reuse_keeps_a_just_used_code_used(ww, run_pam, tmp_path, service_dir):
    path = tmp_path / "ga"
    ga = google_authenticator(path, "-t", "-d", "-w", "3", "-u", owner=None)
    settle()
    now = time.time()
    code = oathtool_totp(ga["secret"], now)
    assert ga_login(service_dir, path, OWNER, code).rc == 0
    assert parse_ga(path)["options"]["DISALLOW_REUSE"] == [str(int(now) // 30)]
    run_import(ww, "google-authenticator", "--user", OWNER, str(path), check=True)
    assert ww.user_file(OWNER).read_text().count(f"otp.last_step {int(now) // 30}\n") == 1
    assert not login(ww, run_pam, OWNER, code)
    assert login(ww, run_pam, OWNER, oathtool_totp(ga["secret"], now + 30))


def test_ga_hotp_file_goes_on_from_the_next_counter(ww, run_pam, tmp_path, service_dir):
    path = tmp_path / "ga_hotp"
    ga = google_authenticator(path, "-c", "-w", "3", "-r", "3", "-R", "30", owner=None)
    assert ga["options"]["HOTP_COUNTER"] == ["1"]
    # Counter 1 is used with google-authenticator; HOTP_COUNTER becomes 2.
    assert ga_login(service_dir, path, OWNER, oathtool_hotp(ga["secret"], 1)).rc == 0
    assert parse_ga(path)["options"]["HOTP_COUNTER"] == ["2"]
    pw = pwd.getpwnam(OWNER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    out = json.loads(run_import(ww, "google-authenticator", str(path), "--json", check=True).stdout)
    assert out["imported"] == [{"user": OWNER, "source": str(path), "method": "hotp", "digits": 6, "counter": 2,
                                "recovery_codes": 5, "replaced": False}]
    assert not login(ww, run_pam, OWNER, oathtool_hotp(ga["secret"], 1))
    assert login(ww, run_pam, OWNER, oathtool_hotp(ga["secret"], 2))
    assert ww.show(OWNER)["counter"] == 3


def test_ga_step_size_sixty(ww, run_pam, tmp_path):
    path = tmp_path / "ga60"
    ga = google_authenticator(path, "-t", "-D", "-u", "-W", "-S", "60", "-e", "0")
    assert ga["options"]["STEP_SIZE"] == ["60"] and ga["scratch"] == []
    proc = run_import(ww, "google-authenticator", str(path), check=True)
    assert "no recovery codes" in proc.stdout
    assert ww.show(OWNER)["period"] == 60
    settle(period=60)
    assert login(ww, run_pam, OWNER, oathtool_totp(ga["secret"], period=60))


def test_ga_several_files_one_user_each(ww, run_pam, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    google_authenticator(a, "-t", "-d", "-w", "3", "-u")
    google_authenticator(b, "-t", "-d", "-w", "3", "-u")
    proc = run_import(ww, "google-authenticator", str(a), str(b))
    assert proc.returncode != 0
    assert f"{b}: nobody is imported from {a} too" in proc.stderr
    assert not ww.state.exists()


def test_ga_root_owned_copy_needs_user(ww, tmp_path):
    path = tmp_path / "copy"
    google_authenticator(path, "-t", "-d", "-w", "3", "-u", owner=None)
    proc = run_import(ww, "google-authenticator", str(path))
    assert proc.returncode != 0
    assert f"{path}: owned by root" in proc.stderr and "--user" in proc.stderr
    assert not ww.state.exists()
    proc = run_import(ww, "google-authenticator", str(path), "--user", "alice", check=True)
    assert "Imported alice" in proc.stdout


def test_ga_user_option_takes_one_file(ww, tmp_path):
    proc = run_import(ww, "google-authenticator", "--user", "alice", str(tmp_path / "a"), str(tmp_path / "b"))
    assert proc.returncode != 0 and "--user names the owner of a single file" in proc.stderr


def test_ga_world_readable_file_is_imported_with_a_warning(ww, tmp_path):
    path = tmp_path / "ga"
    google_authenticator(path, "-t", "-d", "-w", "3", "-u")
    os.chmod(path, 0o644)
    proc = run_import(ww, "google-authenticator", str(path), check=True)
    assert "lets others read it" in proc.stderr


def test_ga_symlink_and_fifo_are_refused(ww, tmp_path):
    real = tmp_path / "real"
    google_authenticator(real, "-t", "-d", "-w", "3", "-u")
    link = tmp_path / "link"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, message in [(link, "symbolic link"), (fifo, "not a regular file"), (tmp_path / "none", "No such file")]:
        proc = run_import(ww, "google-authenticator", str(path))
        assert proc.returncode != 0 and f"{path}: " in proc.stderr and message in proc.stderr, proc.stderr
    assert not ww.state.exists()


# Malformed google-authenticator files: (lines to write, the line number blamed, text).
GOOD = ["JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", '" RATE_LIMIT 3 30', '" WINDOW_SIZE 3', '" DISALLOW_REUSE',
        '" TOTP_AUTH', "12345678", "87654321"]
GA_BROKEN = {
    "secret not base32": (["JBSWY3DP!HPK3PXP"] + GOOD[1:], 1, "not base32"),
    "secret too short": (["JBSWY3DPEHPK3"] + GOOD[1:], 1, "at least 10"),
    "empty first line": ([""] + GOOD[1:], 1, "no secret"),
    "garbage line": (GOOD[:3] + ["hello"] + GOOD[3:], 4, "neither an option"),
    "seven-digit scratch code": (GOOD + ["1234567"], 8, "8-digit scratch code"),
    "scratch code with a leading zero": (GOOD + ["01234567"], 8, "8-digit scratch code"),
    "bad window": (GOOD[:2] + ['" WINDOW_SIZE lots'] + GOOD[3:], 3, "WINDOW_SIZE must be one number"),
    "bad step size": (GOOD + ['" STEP_SIZE 0'], 8, "STEP_SIZE must be one number from 1 to 60"),
    "bad disallow list": (GOOD[:3] + ['" DISALLOW_REUSE 5 x'] + GOOD[4:], 4, "DISALLOW_REUSE must list"),
    "bad rate limit": (GOOD[:1] + ['" RATE_LIMIT 3'] + GOOD[2:], 2, "RATE_LIMIT must read"),
    "both kinds": (GOOD + ['" HOTP_COUNTER 4'], 8, "both TOTP_AUTH and HOTP_COUNTER"),
    "hotp counter zero": (GOOD[:4] + ['" HOTP_COUNTER 0'] + GOOD[5:], 5, "HOTP_COUNTER must be one number"),
    "option twice": (GOOD + ['" WINDOW_SIZE 5'], 8, "WINDOW_SIZE appears twice (also on line 3)"),
    "option without a space": (GOOD + ['"TOTP_AUTH'], 8, "an option line must read"),
    "totp auth with a value": (GOOD[:4] + ['" TOTP_AUTH yes'] + GOOD[5:], 5, "TOTP_AUTH takes no value"),
}


@pytest.mark.parametrize("case", list(GA_BROKEN))
def test_ga_malformed_file_is_rejected_with_its_line_and_changes_nothing(ww, tmp_path, case):
    ww.enroll("alice")
    good = tmp_path / "good"
    google_authenticator(good, "-t", "-d", "-w", "3", "-u")
    lines, number, text = GA_BROKEN[case]
    bad = tmp_path / "bad"
    bad.write_text("".join(l + "\n" for l in lines))
    os.chmod(bad, 0o600)
    os.chown(bad, pwd.getpwnam("daemon").pw_uid, 0)
    before = ww.snapshot()
    proc = run_import(ww, "google-authenticator", str(good), str(bad))
    assert proc.returncode == 1, proc.stdout
    assert f"watchword: {bad}:{number}: " in proc.stderr and text in proc.stderr, proc.stderr
    assert "nothing was imported" in proc.stderr
    assert proc.stdout == ""
    assert ww.snapshot() == before
    # Neither the secret nor a scratch code is ever quoted back.
    for secret in ["JBSWY3DP", "12345678", "87654321"]:
        assert secret not in proc.stderr


def test_ga_file_level_errors_name_the_file(ww, tmp_path):
    cases = {
        "notype": (["JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", '" WINDOW_SIZE 3'], "neither TOTP_AUTH nor HOTP_COUNTER"),
        "binary": (None, "not a text file"),
    }
    for name, (lines, text) in cases.items():
        path = tmp_path / name
        if lines is None:
            path.write_bytes(b"\xff\xfe\x00\x01")
        else:
            path.write_text("".join(l + "\n" for l in lines))
        proc = run_import(ww, "google-authenticator", "--user", "alice", str(path))
        assert proc.returncode == 1 and f"watchword: {path}: {text}" in proc.stderr, proc.stderr
    assert not ww.state.exists()


def test_ga_every_bad_line_is_reported_at_once(ww, tmp_path):
    path = tmp_path / "bad"
    path.write_text("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nxx\n\" STEP_SIZE 99\n1234\n")
    proc = run_import(ww, "google-authenticator", "--user", "alice", str(path), "--json")
    assert proc.returncode == 1
    for n in (3, 4, 5):
        assert f"{path}:{n}: " in proc.stderr
    out = json.loads(proc.stdout)
    assert out["imported"] == [] and [e["source"] for e in out["errors"]] == [f"{path}:{n}" for n in (3, 4, 5)]


def test_ga_unknown_option_and_time_skew_are_warnings(ww, tmp_path):
    path = tmp_path / "ga"
    path.write_text("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" FUTURE_THING 1\n\" TIME_SKEW -2\n")
    proc = run_import(ww, "google-authenticator", "--user", "alice", str(path), check=True)
    assert f"warning: {path}:3: unknown option 'FUTURE_THING' ignored" in proc.stderr
    assert f"warning: {path}:4: TIME_SKEW -2" in proc.stderr


# --- pam_oath ------------------------------------------------------------------------

SECRETS = {
    "hal": "3132333435363738393031323334353637383930",
    "tom": "00112233445566778899aabbccddeeff00112233",
    "eve": "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334",
    "sam": "ffeeddccbbaa99887766554433221100ffeeddcc",
    "pim": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
}


def usersfile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users.oath"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_oath_file_proven_with_pam_oath_then_imported(ww, run_pam, tmp_path, service_dir):
    path = usersfile(tmp_path, f"""\
# pam_oath users file
HOTP        hal - {SECRETS['hal']} 0
HOTP/T30    tom - {SECRETS['tom']}

HOTP/E/8    eve + {SECRETS['eve']} 7
HOTP/T60/8  sam - {SECRETS['sam']}
HOTP/T30    pim 4321 {SECRETS['pim']}
""")
    settle(margin=8)
    now = time.time()
    # The real pam_oath.so accepts these codes, and records what it accepted.
    hal0 = oathtool_hotp(b32(SECRETS["hal"]), 0)
    assert oath_login(service_dir, path, "hal", hal0).rc == 0
    assert oath_login(service_dir, path, "hal", hal0).rc != 0  # liboath: replay
    tom_now = oathtool_totp_hex(SECRETS["tom"], now)
    assert oath_login(service_dir, path, "tom", tom_now).rc == 0
    sam_code = oathtool_totp_hex(SECRETS["sam"], now, digits=8, period=60)
    assert oath_login(service_dir, path, "sam", sam_code).rc == 0
    # With a PIN, pam_oath wants the PIN and the code typed as one.
    pim_code = oathtool_totp_hex(SECRETS["pim"], now)
    assert oath_login(service_dir, path, "pim", "4321" + pim_code, extra="digits=6").rc == 0
    text = path.read_text()
    assert re.search(rf"^HOTP\thal\t-\t{SECRETS['hal']}\t0\t{hal0}\t\S+L$", text, re.M), text
    assert re.search(rf"^HOTP/T30\ttom\t-\t{SECRETS['tom']}\t\d+\t{tom_now}\t\S+L$", text, re.M), text
    # eve (counter 7, never used) is proven on a copy, which pam_oath then rewrites.
    (tmp_path / "copy").mkdir()
    copy = usersfile(tmp_path / "copy", text)
    assert oath_login(service_dir, copy, "eve", oathtool_hotp(b32(SECRETS["eve"]), 6, digits=8)).rc != 0
    assert oath_login(service_dir, copy, "eve", oathtool_hotp(b32(SECRETS["eve"]), 7, digits=8)).rc == 0

    proc = run_import(ww, "oath", str(path), "--json", check=True)
    out = json.loads(proc.stdout)
    got = {u["user"]: u for u in out["imported"]}
    assert set(got) == {"hal", "tom", "eve", "sam", "pim"}
    assert got["hal"] == {"user": "hal", "source": f"{path}:2", "method": "hotp", "digits": 6, "counter": 1,
                          "recovery_codes": 0, "replaced": False}
    assert (got["tom"]["method"], got["tom"]["period"], got["tom"]["digits"]) == ("totp", 30, 6)
    assert (got["eve"]["method"], got["eve"]["counter"], got["eve"]["digits"]) == ("hotp", 7, 8)
    assert (got["sam"]["period"], got["sam"]["digits"]) == (60, 8)
    assert [w["source"] for w in out["warnings"] if "PIN" in w["message"]] == [f"{path}:7"]
    assert "4321" not in proc.stderr + proc.stdout

    # HOTP: the code liboath already accepted stays used; the next one works.
    assert not login(ww, run_pam, "hal", hal0)
    assert login(ww, run_pam, "hal", oathtool_hotp(b32(SECRETS["hal"]), 1))
    # TOTP: the code just used with pam_oath is refused; the next step's code works.
    assert not login(ww, run_pam, "tom", tom_now)
    assert login(ww, run_pam, "tom", oathtool_totp_hex(SECRETS["tom"], now + 30))
    assert not login(ww, run_pam, "sam", sam_code)
    # A line never used: its own counter is the next code, 8 digits.
    assert not login(ww, run_pam, "eve", oathtool_hotp(b32(SECRETS["eve"]), 6, digits=8))
    assert login(ww, run_pam, "eve", oathtool_hotp(b32(SECRETS["eve"]), 7, digits=8))
    # The PIN is not asked for: the code alone logs in (the next one: pam_oath used this one).
    assert not login(ww, run_pam, "pim", pim_code)
    assert login(ww, run_pam, "pim", oathtool_totp_hex(SECRETS["pim"], now + 30))


def test_oath_text_output_and_no_recovery_codes(ww, tmp_path):
    path = usersfile(tmp_path, f"HOTP/T30 tom - {SECRETS['tom']}\n")
    proc = run_import(ww, "oath", str(path), check=True)
    assert proc.stdout.splitlines() == [
        f"Imported tom from {path}:1 (TOTP, 6 digits, 30 s; no recovery codes).",
        "Imported 1 user, skipped 0.",
    ]
    assert ww.show("tom")["recovery_codes_left"] == 0


OATH_BROKEN = {
    "unknown type": ("HOTP/T45 tom - {tom}\n", 1, "unknown token type 'HOTP/T45'"),
    "unknown digits": ("HOTP/E/9 tom - {tom}\n", 1, "unknown token type 'HOTP/E/9'"),
    "too few fields": ("HOTP tom -\n", 1, "expected 'TYPE USER PIN SECRET"),
    "too many fields": ("HOTP tom - {tom} 1 123456 2024-01-01T00:00:00L extra\n", 1, "at most 7"),
    "secret not hex": ("HOTP tom - {tom}zz\n", 1, "not hex"),
    "odd-length secret": ("HOTP tom - {tom}1\n", 1, "not hex"),
    "short secret": ("HOTP tom - 00\n", 1, "at least 10"),
    "bad counter": ("HOTP tom - {tom} 12a\n", 1, "counter is not a whole number"),
    "negative counter": ("HOTP tom - {tom} -1\n", 1, "counter is not a whole number"),
    "bad last otp": ("HOTP tom - {tom} 3 12x456\n", 1, "last OTP is not a code"),
    "bad time": ("HOTP tom - {tom} 3 123456 2024-01-01 00:00:00\n", 1, "at most 7"),
    "bad time format": ("HOTP tom - {tom} 3 123456 2024-13-01T00:00:00L\n", 1, "time is not"),
    "invalid user": ("HOTP ../root - {tom}\n", 1, "invalid user name '../root'"),
    "user twice": ("HOTP tom - {tom}\n# x\nHOTP/T30 tom - {tom}\n", 3, "tom already has a token on line 3"),
}


@pytest.mark.parametrize("case", list(OATH_BROKEN))
def test_oath_malformed_line_is_rejected_with_its_number_and_changes_nothing(ww, tmp_path, case):
    ww.enroll("alice")
    template, number, text = OATH_BROKEN[case]
    path = usersfile(tmp_path, f"# users\nHOTP/T30 good - {SECRETS['eve']}\n" + template.format(tom=SECRETS["tom"]))
    before = ww.snapshot()
    proc = run_import(ww, "oath", str(path))
    assert proc.returncode == 1
    assert f"watchword: {path}:{number + 2}: " in proc.stderr and text in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert ww.snapshot() == before
    assert SECRETS["tom"] not in proc.stderr and SECRETS["eve"] not in proc.stderr


def test_oath_file_without_tokens_is_an_error(ww, tmp_path):
    path = usersfile(tmp_path, "# nothing here\n\n")
    proc = run_import(ww, "oath", str(path))
    assert proc.returncode == 1 and f"{path}: holds no token lines" in proc.stderr


# --- dry run, --force, atomicity -----------------------------------------------------

def test_dry_run_changes_nothing(ww, tmp_path):
    ga = tmp_path / "ga"
    google_authenticator(ga, "-t", "-d", "-w", "3", "-u")
    oath = usersfile(tmp_path, f"HOTP hal - {SECRETS['hal']}\n")
    # No state directory yet: a dry run does not make one.
    proc = run_import(ww, "google-authenticator", str(ga), "--dry-run", check=True)
    assert f"Would import {OWNER} from {ga}" in proc.stdout and "nothing was changed" in proc.stdout
    assert not ww.state.exists()
    ww.enroll("hal")
    before = ww.snapshot()
    for args in (["oath", str(oath), "--dry-run"], ["oath", str(oath), "--dry-run", "--force"],
                 ["google-authenticator", str(ga), "--dry-run", "--json"]):
        proc = run_import(ww, *args, check=True)
        assert ww.snapshot() == before, args
    assert "Would skip hal" in run_import(ww, "oath", str(oath), "--dry-run").stdout
    out = json.loads(run_import(ww, "oath", str(oath), "--dry-run", "--force", "--json").stdout)
    assert out["dry_run"] is True and out["imported"][0]["replaced"] is True
    assert ga.read_text() and oath.read_text().startswith("HOTP hal")


def test_existing_enrollment_is_kept_without_force_and_replaced_with_it(ww, run_pam, tmp_path):
    old = ww.enroll("hal")
    path = usersfile(tmp_path, f"HOTP hal - {SECRETS['hal']}\nHOTP/T30 tom - {SECRETS['tom']}\n")
    before = ww.user_file("hal").read_bytes()
    out = json.loads(run_import(ww, "oath", str(path), "--json", check=True).stdout)
    assert [u["user"] for u in out["imported"]] == ["tom"]
    assert out["skipped"] == [{"user": "hal", "source": f"{path}:1",
                               "reason": "already enrolled (--force replaces the enrollment)"}]
    assert ww.user_file("hal").read_bytes() == before
    # Again: tom is enrolled now too, so both are skipped, and that is not an error.
    out = json.loads(run_import(ww, "oath", str(path), "--json", check=True).stdout)
    assert out["imported"] == [] and len(out["skipped"]) == 2

    proc = run_import(ww, "oath", str(path), "--force", check=True)
    assert f"Imported hal from {path}:1 (HOTP, 6 digits, next counter 0; no recovery codes), replacing the earlier enrollment." in proc.stdout
    settle()
    assert not login(ww, run_pam, "hal", oathtool_totp(old["secret"]))
    assert not login(ww, run_pam, "hal", old["recovery_codes"][0])  # they died with the old token
    assert login(ww, run_pam, "hal", oathtool_hotp(b32(SECRETS["hal"]), 0))


def test_force_clears_failures_and_lockout(ww, run_pam, tmp_path):
    ww.enroll("hal")
    ww.write_config("[policy]\nmax_failures = 2\n")
    for _ in range(2):
        assert not login(ww, run_pam, "hal", "000000")
    assert ww.show("hal")["locked"] is True
    run_import(ww, "oath", str(usersfile(tmp_path, f"HOTP hal - {SECRETS['hal']}\n")), "--force", check=True)
    shown = ww.show("hal")
    assert shown["failures"] == 0 and shown["locked"] is False
    assert login(ww, run_pam, "hal", oathtool_hotp(b32(SECRETS["hal"]), 0))


@pytest.fixture
def small_state(ww, tmp_path):
    """The state directory on a tiny tmpfs, so that a write can run out of space."""
    ww.state.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(ww.state)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        # Root without CAP_SYS_ADMIN (an unprivileged container); on CI (a VM) this fails.
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield ww
    finally:
        subprocess.run(["umount", str(ww.state)], check=True)


def test_a_failed_write_is_reported_and_a_rerun_finishes(small_state, run_pam, tmp_path):
    ww = small_state
    ww.enroll("alice")  # makes users/, locks/ and recovery.key
    # Fill the file system, leaving room for exactly one more user file.
    filler = ww.state / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096) == 4096:
                pass
        except OSError:
            pass
    os.truncate(filler, filler.stat().st_size - 4096)
    path = usersfile(tmp_path, "".join(f"HOTP {u} - {SECRETS[u]}\n" for u in ("hal", "tom", "eve")))
    proc = run_import(ww, "oath", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"writing tom ({path}:2) failed" in proc.stderr
    assert "imported before the failure, complete and usable: hal" in proc.stderr
    assert "not imported, state unchanged: tom eve" in proc.stderr
    assert "Imported hal" in proc.stdout
    assert ww.show("hal")["method"] == "hotp"
    assert not ww.user_file("tom").exists() and not ww.user_file("eve").exists()
    assert not [p for p in (ww.state / "users").iterdir() if p.name.startswith(".")]  # no temp file left
    os.unlink(filler)
    out = json.loads(run_import(ww, "oath", str(path), "--json", check=True).stdout)
    assert [u["user"] for u in out["imported"]] == ["tom", "eve"]
    assert [u["user"] for u in out["skipped"]] == ["hal"]
    assert login(ww, run_pam, "tom", oathtool_hotp(b32(SECRETS["tom"]), 0))


def test_import_needs_root(ww, tmp_path):
    path = usersfile(tmp_path, f"HOTP hal - {SECRETS['hal']}\n")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(CLI), "import", "oath",
                           str(path), "--state-dir", str(ww.state)], capture_output=True, text=True)
    assert proc.returncode != 0 and "must be run as root" in proc.stderr, proc.stderr


# --- export --------------------------------------------------------------------------

def uri_parts(uri: str) -> tuple[str, str, dict]:
    parsed = urlparse(uri)
    return parsed.netloc, unquote(parsed.path[1:]), {k: v[0] for k, v in parse_qs(parsed.query).items()}


def test_export_prints_a_uri_with_the_same_secret_that_logs_in(ww, run_pam):
    alice = ww.enroll("alice", "--issuer", "Example", "--algorithm", "sha256", "--digits", "8")
    proc = ww.cli("export", "alice", "--otpauth")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("otpauth://totp/")
    assert sum(1 for l in lines if "▀" in l or "▄" in l) > 10  # a QR code
    assert "secret" in proc.stderr and "warning" in proc.stderr
    kind, label, params = uri_parts(lines[0])
    assert (kind, label) == ("totp", "Example:alice")
    assert params["secret"] == alice["secret"]
    assert (params["algorithm"], params["digits"], params["period"]) == ("SHA256", "8", "30")
    settle()
    code = oathtool_totp(params["secret"], algorithm="sha256", digits=8)
    assert login(ww, run_pam, "alice", code)


def test_export_json_and_no_qr(ww):
    alice = ww.enroll("alice")
    out = json.loads(ww.cli("export", "alice", "--otpauth", "--json").stdout)
    assert set(out) == {"user", "method", "otpauth_uri"} and out["method"] == "totp"
    assert uri_parts(out["otpauth_uri"])[2]["secret"] == alice["secret"]
    plain = ww.cli("export", "alice", "--otpauth", "--no-qr")
    assert plain.stdout.splitlines() == [out["otpauth_uri"]]
    assert "warning" in plain.stderr


def test_export_of_an_imported_token_round_trips(ww, run_pam, tmp_path):
    path = tmp_path / "ga"
    ga = google_authenticator(path, "-t", "-d", "-w", "3", "-u")
    run_import(ww, "google-authenticator", str(path), check=True)
    uri = json.loads(ww.cli("export", OWNER, "--otpauth", "--json").stdout)["otpauth_uri"]
    assert uri_parts(uri)[2]["secret"] == ga["secret"]


def test_export_hotp_carries_the_next_counter(ww, run_pam, tmp_path):
    run_import(ww, "oath", str(usersfile(tmp_path, f"HOTP/E/8 eve - {SECRETS['eve']} 41\n")), check=True)
    uri = json.loads(ww.cli("export", "eve", "--otpauth", "--json").stdout)["otpauth_uri"]
    kind, _, params = uri_parts(uri)
    assert (kind, params["counter"], params["digits"]) == ("hotp", "41", "8")
    assert params["secret"] == b32(SECRETS["eve"])
    assert login(ww, run_pam, "eve", oathtool_hotp(params["secret"], 41, digits=8))


@pytest.mark.parametrize("args,message", [
    (["export", "alice"], "--otpauth"),
    (["export", "nobody-here", "--otpauth"], "nobody-here is not enrolled"),
    (["export", "../x", "--otpauth"], "invalid user name"),
])
def test_export_errors(ww, args, message):
    ww.enroll("alice")
    proc = ww.cli(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and proc.stdout == ""
