"""The real `watchword` CLI against a private state directory."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ww import CLI, Watchword, oathtool_totp

GOLDEN = Path(__file__).parent / "golden"



def test_enroll_prints_uri_qr_and_recovery_codes(ww):
    out = ww.cli("enroll", "alice", "--totp", "--issuer", "Example Host").stdout
    lines = out.splitlines()
    uris = [l for l in lines if l.startswith("otpauth://")]
    assert uris == [l for l in lines if "otpauth://" in l]  # on a line of its own
    assert re.fullmatch(r"otpauth://totp/Example%20Host:alice\?secret=[A-Z2-7]{32}&issuer=Example%20Host"
                        r"&algorithm=SHA1&digits=6&period=30", uris[0]), uris[0]
    assert sum(1 for l in lines if "▀" in l or "▄" in l) > 10  # a QR code of half blocks
    codes = [l.strip() for l in lines if re.fullmatch(r"  \d{10}", l)]
    assert len(codes) == 10 and len(set(codes)) == 10


def test_enroll_json_shape(ww):
    out = json.loads(ww.cli("enroll", "alice", "--totp", "--json").stdout)
    assert set(out) == {"user", "method", "otpauth_uri", "recovery_codes", "recovery_codes_replaced"}
    assert out["user"] == "alice" and out["method"] == "totp"
    assert out["otpauth_uri"].startswith("otpauth://totp/")
    assert len(out["recovery_codes"]) == 10
    assert all(re.fullmatch(r"\d{10}", c) for c in out["recovery_codes"])


def test_state_files_are_root_only(ww):
    ww.enroll("alice")
    for path in [ww.state, ww.state / "users", ww.state / "locks"]:
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700), path
    for path in [ww.user_file("alice"), ww.state / "recovery.key", ww.state / "locks" / "alice"]:
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600), path
    # Recovery codes are stored only as keyed hashes.
    text = ww.user_file("alice").read_text()
    assert not any(code in text for code in json.loads(ww.cli("recovery-codes", "alice", "--json").stdout)["recovery_codes"])


def test_enroll_refuses_to_replace_without_force(ww, run_pam):
    first = ww.enroll("alice")
    before = ww.snapshot()
    proc = ww.cli("enroll", "alice", "--totp", check=False)
    assert proc.returncode != 0
    assert "already enrolled; use --force" in proc.stderr
    assert ww.snapshot() == before
    second = ww.enroll("alice", "--force")
    assert second["secret"] != first["secret"]
    # The old recovery codes died with the old enrollment.
    assert run_pam(ww.args(), "alice", first["recovery_codes"][0] + "\n").rc == 1
    assert run_pam(ww.args(), "alice", second["recovery_codes"][0] + "\n").rc == 0


def test_enroll_imports_an_existing_secret(ww, run_pam):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    out = ww.enroll("alice", "--secret", secret.lower())
    assert out["secret"] == secret
    assert run_pam(ww.args(), "alice", oathtool_totp(secret) + "\n").rc == 0


@pytest.mark.parametrize("args,message", [
    (["enroll", "../root", "--totp"], "invalid user name"),
    (["enroll", "-rf", "--totp"], ""),
    (["enroll", "a" * 65, "--totp"], "invalid user name"),
    (["enroll", "bob\u0430", "--totp"], "invalid user name"),
    (["enroll", "bob"], "exactly one of --totp or --hotp"),
    (["enroll", "bob", "--totp", "--hotp"], "exactly one of --totp or --hotp"),
    (["enroll", "bob", "--totp", "--digits", "9"], "--digits must be 6, 7 or 8"),
    (["enroll", "bob", "--totp", "--period", "0"], "--period must be 1 to 3600"),
    (["enroll", "bob", "--totp", "--algorithm", "md5"], "algorithm"),
    (["enroll", "bob", "--totp", "--secret", "not base32!"], "--secret"),
    (["enroll", "bob", "--totp", "--secret", "JBSWY3DP"], "at least 10"),
    (["enroll", "bob", "--totp", "--issuer", "a:b"], "--issuer"),
    (["show", "nobody-here"], "nobody-here is not enrolled"),
    (["remove", "nobody-here"], "nobody-here is not enrolled"),
    (["unlock", "nobody-here"], "nobody-here is not enrolled"),
    (["recovery-codes", "nobody-here"], "nobody-here is not enrolled"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(ww, args, message):
    ww.enroll("alice")
    before = ww.snapshot()
    proc = ww.cli(*args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert ww.snapshot() == before


def test_list_text_and_json(ww):
    ww.cli("recovery-codes", "nobody-yet", check=False)  # makes nothing; the state dir stays missing
    missing = ww.cli("list", check=False)
    assert missing.returncode == 1 and "no state directory at" in missing.stderr  # a wrong --state-dir
    ww.enroll("carol")
    ww.cli("remove", "carol")
    assert ww.cli("list").stdout.strip() == "No users enrolled."
    assert json.loads(ww.cli("list", "--json").stdout) == []
    ww.enroll("bob")
    ww.enroll("alice", "--hotp")
    text = ww.cli("list").stdout.splitlines()
    assert text[0].split() == ["USER", "METHOD", "PHONE", "RECOVERY", "FAILURES", "LOCKED", "LAST", "LOGIN"]
    assert [l.split()[:6] for l in text[1:]] == [["alice", "hotp", "-", "10", "0", "no"],
                                                 ["bob", "totp", "-", "10", "0", "no"]]
    listed = json.loads(ww.cli("list", "--json").stdout)
    assert [u["user"] for u in listed] == ["alice", "bob"]
    assert listed[1]["method"] == "totp" and listed[1]["period"] == 30


def test_show_never_prints_the_secret(ww):
    alice = ww.enroll("alice")
    for args in (["show", "alice"], ["show", "alice", "--json"], ["list"], ["list", "--json"]):
        out = ww.cli(*args).stdout
        assert alice["secret"] not in out and alice["secret"].lower() not in out
        assert not any(code in out for code in alice["recovery_codes"])
    shown = ww.show("alice")
    assert shown["user"] == "alice" and shown["method"] == "totp" and shown["digits"] == 6
    assert shown["recovery_codes_left"] == 10 and shown["failures"] == 0 and shown["locked"] is False
    assert "method:" in ww.cli("show", "alice").stdout


def test_recovery_codes_are_stored_only_as_keyed_hashes(ww):
    alice = ww.enroll("alice")
    files = ww.snapshot()
    assert "users/alice" in files and "recovery.key" in files
    for code in alice["recovery_codes"]:
        for name, data in files.items():
            assert code.encode() not in data, (code, name)
    record = files["users/alice"].decode()
    hashes = re.findall(r"\b[0-9a-f]{64}\b", record)
    assert len(hashes) == 10, record  # one HMAC-SHA256 per code, under recovery.key


def test_remove(ww, run_pam):
    alice = ww.enroll("alice")
    assert ww.cli("remove", "alice").stdout.strip() == "Removed alice."
    assert not ww.user_file("alice").exists()
    assert run_pam(ww.args(), "alice", oathtool_totp(alice["secret"]) + "\n").rc == 1
    assert ww.cli("remove", "alice", check=False).returncode != 0


def test_refuses_an_insecure_state_directory_without_fixing_it(ww):
    ww.enroll("alice")
    os.chmod(ww.state, 0o755)
    proc = ww.cli("list", check=False)
    assert proc.returncode != 0
    assert "mode 0755 gives group or other access" in proc.stderr
    assert ww.state.stat().st_mode & 0o7777 == 0o755


def test_refuses_a_bad_config(ww):
    ww.write_config("[policy]\nmax_failures = -1\n")
    proc = ww.cli("list", check=False)
    assert proc.returncode != 0
    assert "line 2: policy.max_failures = -1 is out of range" in proc.stderr


def test_must_run_as_root(ww):
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(CLI), "list",
                           "--state-dir", str(ww.state)], capture_output=True, text=True)
    assert proc.returncode != 0 and "must be run as root" in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["", "enroll", "list", "show", "remove", "unlock", "recovery-codes",
                                     "enable", "disable", "doctor"])
def test_help_matches_golden(command):
    args = [command] if command else []
    proc = subprocess.run([str(CLI), *args, "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "100", "PATH": os.environ["PATH"]})
    assert proc.returncode == 0
    golden = GOLDEN / f"help-{command or 'watchword'}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(proc.stdout)
    assert proc.stdout == golden.read_text()
