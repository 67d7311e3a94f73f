"""The audit trail (DIR/audit.log) written by the real helper and the real CLI, `watchword
log` and `watchword status`."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from conftest import PAM_MAXTRIES, PAM_SUCCESS
from ww import Watchword, fresh_totp, fresh_totp as fresh_code, wrong_of



def logins(ww):
    return [e for e in ww.audit() if e["event"] == "login"]


FIELDS = ["time", "event", "user", "service", "rhost", "method", "outcome", "reason", "host", "actor",
          "actor_source"]


def test_login_outcomes_are_audited_without_codes(ww, run_pam, run_pam_conv):
    alice = ww.enroll("alice")
    used = []
    right = fresh_code(alice["secret"])
    used.append(right)
    res = run_pam(ww.args(), "alice", right + "\n", items={"rhost": "192.0.2.7"})
    assert res.rc == 0, res.output
    wrong = wrong_of(fresh_code(alice["secret"]))
    used.append(wrong)
    assert run_pam(ww.args(), "alice", wrong + "\n").rc == 1
    assert run_pam(ww.args(), "nobody1", "123456\n").rc != 0
    recovery = alice["recovery_codes"][0]
    used.append(recovery)
    assert run_pam_conv(ww.args(), "alice", [recovery]).pam_rc == PAM_SUCCESS

    lines = logins(ww)
    assert [e["outcome"] for e in lines] == ["success", "auth_err", "not_enrolled", "success"], lines
    first = lines[0]
    assert list(first) == FIELDS
    assert first["user"] == "alice" and first["rhost"] == "192.0.2.7" and first["service"] == "watchword-test"
    assert first["method"] == "totp" and first["reason"] == "accepted (totp)"
    assert abs(first["time"] - time.time()) < 60
    assert lines[1]["method"] is None and "wrong, reused or expired code" in lines[1]["reason"]
    assert lines[2]["user"] == "nobody1" and lines[2]["reason"] == "not enrolled"
    assert lines[3]["method"] == "recovery"

    raw = (ww.state / "audit.log").read_text()
    for code in used:
        assert code not in raw, code
    assert alice["secret"] not in raw
    st = os.stat(ww.state / "audit.log")
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600


def test_lockout_and_unavailable_are_audited(ww, run_pam, run_pam_conv):
    alice = ww.enroll("alice")
    ww.write_config("[policy]\nmax_failures = 2\nlockout_seconds = 120\n")
    for wrong in ("000000", "999999"):
        assert run_pam(ww.args(), "alice", wrong + "\n").rc == 1
    locked = run_pam_conv(ww.args(), "alice", [fresh_code(alice["secret"])])
    assert locked.pam_rc == PAM_MAXTRIES, locked.output
    ww.write_config("[policy]\nwindow = 1\nmax_failure = 3\n")
    assert run_pam(ww.args(), "alice", "123456\n").rc == 1
    lines = logins(ww)
    assert [e["outcome"] for e in lines] == ["auth_err", "auth_err", "maxtries", "unavailable"], lines
    assert "locked out for 120 seconds" in lines[1]["reason"]
    assert "locked out for" in lines[2]["reason"]
    assert "unknown key 'policy.max_failure'" in lines[3]["reason"]
    raw = (ww.state / "audit.log").read_text()
    assert "000000" not in raw and "999999" not in raw and "123456" not in raw


def test_unwritable_audit_log_changes_no_outcome(ww, run_pam):
    alice = ww.enroll("alice")
    log = ww.state / "audit.log"
    log.unlink()
    log.write_text("")
    os.chmod(log, 0o644)
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert res.rc == 0, res.output
    assert res.logged("audit log not written"), res.log_text()
    assert run_pam(ww.args(), "alice", "000000\n").rc == 1
    os.chmod(log, 0o600)
    target = ww.base / "elsewhere"
    log.unlink()
    os.symlink(target, log)
    assert run_pam(ww.args(), "alice", "000000\n").rc == 1
    assert not target.exists()


def test_admin_actions_are_audited(ww):
    alice = ww.enroll("alice")
    ww.cli("unlock", "alice")
    rc = json.loads(ww.cli("recovery-codes", "alice", "--json").stdout)["recovery_codes"]
    assert ww.cli("unlock", "bob", check=False).returncode == 4  # not enrolled
    ww.cli("remove", "alice")
    entries = ww.audit()
    assert [(e["event"], e["user"], e["outcome"]) for e in entries] == [
        ("enroll", "alice", "ok"), ("unlock", "alice", "ok"), ("recovery-codes", "alice", "ok"),
        ("unlock", "bob", "error"), ("remove", "alice", "ok"),
    ], entries
    assert entries[3]["reason"] == "bob is not enrolled"
    raw = (ww.state / "audit.log").read_text()
    for secret in [alice["secret"], *alice["recovery_codes"], *rc]:
        assert secret not in raw


def test_import_and_sms_test_are_audited(ww, tmp_path):
    ww.enroll("alice")
    users = tmp_path / "users.oath"
    users.write_text("HOTP/T30 carol - 3132333435363738393031323334353637383930\n")
    os.chmod(users, 0o600)
    ww.cli("import", "oath", str(users))
    assert ww.cli("sms-test", "alice", check=False).returncode == 1
    entries = ww.audit()
    assert [(e["event"], e["outcome"]) for e in entries][1:] == [("import", "ok"), ("sms-test", "error")], entries
    assert entries[1]["reason"] == "oath"
    assert "3132333435363738393031323334353637383930" not in (ww.state / "audit.log").read_text()


def filler_line(reason: str) -> str:
    return json.dumps({"time": 1_700_000_000, "event": "unlock", "user": "filler", "service": None, "rhost": None,
                       "method": None, "outcome": "ok", "reason": reason}, separators=(",", ":")) + "\n"


def prefill(ww, size: int) -> None:
    """Valid lines up to exactly `size` bytes."""
    log = ww.state / "audit.log"
    line = filler_line("")
    room = size - log.stat().st_size
    count = room // len(line) - 1
    last = filler_line("x" * (room - count * len(line) - len(line)))
    with open(log, "a") as f:
        f.write(line * count + last)
    assert log.stat().st_size == size


def test_rotation_keeps_two_files(ww, run_pam):
    alice = ww.enroll("alice")
    log, old = ww.state / "audit.log", ww.state / "audit.log.1"
    prefill(ww, (1 << 20) - 50)
    assert log.stat().st_size <= 1 << 20
    assert run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n").rc == 0
    assert old.exists() and not log.exists()
    assert old.stat().st_size > 1 << 20
    assert old.read_text().splitlines()[-1].startswith('{"time":')
    assert json.loads(old.read_text().splitlines()[-1])["event"] == "login"
    ww.cli("unlock", "alice")
    assert [e["event"] for e in ww.audit()] == ["unlock"]
    # Both files are read by `watchword log`.
    events = json.loads(ww.cli("log", "alice", "--json").stdout)
    assert [e["event"] for e in events] == ["enroll", "login", "unlock"]
    # The second rotation replaces audit.log.1: at most two files.
    prefill(ww, (1 << 20) + 10)
    ww.cli("unlock", "alice")
    assert sorted(p.name for p in ww.state.iterdir() if p.name.startswith("audit")) == ["audit.log.1"]
    assert json.loads(old.read_text().splitlines()[-1])["event"] == "unlock"
    assert "filler" in old.read_text().splitlines()[1]
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_log_filters_and_formats(ww, run_pam):
    alice = ww.enroll("alice")
    ww.enroll("bob")
    log = ww.state / "audit.log"
    with open(log, "a") as f:
        f.write('{"time":1000,"event":"login","user":"alice","service":"sshd","rhost":"198.51.100.1",'
                '"method":"totp","outcome":"success","reason":"accepted (totp)"}\n')
        f.write("not json at all\n")
        f.write('{"time":"x"}\n')
    assert run_pam(ww.args(), "alice", "000000\n", items={"rhost": "192.0.2.9"}).rc == 1

    proc = ww.cli("log")
    assert "skipped 2 corrupt lines" in proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].split() == ["TIME", "HOST", "USER", "EVENT", "ACTOR", "SERVICE", "RHOST", "METHOD", "OUTCOME",
                              "REASON"]
    assert len(out) == 1 + 4
    assert "1970-01-01 00:16:40 UTC" in out[3] and "198.51.100.1" in out[3] and "accepted (totp)" in out[3]
    assert "192.0.2.9" in out[4] and "auth_err" in out[4] and "watchword-test" in out[4]

    only_bob = json.loads(ww.cli("log", "bob", "--json").stdout)
    assert [(e["event"], e["user"]) for e in only_bob] == [("enroll", "bob")]
    recent = json.loads(ww.cli("log", "alice", "--since", "1h", "--json").stdout)
    assert [e["event"] for e in recent] == ["enroll", "login"]
    assert recent[1]["outcome"] == "auth_err" and list(recent[1]) == FIELDS
    since_unix = json.loads(ww.cli("log", "--since", "999", "--json").stdout)
    assert len(since_unix) == 4
    assert json.loads(ww.cli("log", "--since", "2000", "--json").stdout)[0]["user"] == "alice"
    assert ww.cli("log", "--since", "soon", check=False).returncode != 0
    assert ww.cli("log", "carol").stdout.strip() == "No audit entries."


def test_log_without_state_dir(ww):
    assert ww.cli("log").stdout.strip() == "No audit entries."
    assert ww.cli("log", "--json").stdout.strip() == "[]"


def test_status_text_and_json(ww, run_pam):
    alice = ww.enroll("alice")
    ww.enroll("bob", "--hotp")
    ww.write_config("[policy]\nmax_failures = 2\nlockout_seconds = 600\n")
    assert run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n").rc == 0
    for _ in range(2):
        assert run_pam(ww.args(), "bob", "000000\n").rc == 1
    # An old failure is outside the 24 hours.
    with open(ww.state / "audit.log", "a") as f:
        f.write(json.dumps({"time": int(time.time()) - 90000, "event": "login", "user": "alice", "service": "sshd",
                            "rhost": None, "method": None, "outcome": "auth_err", "reason": "x"}) + "\n")
    data = json.loads(ww.cli("status", "--json").stdout)
    assert data["users"] == 2
    assert data["enrolled"] == {"totp": 1, "hotp": 1, "sms": 0, "recovery_only": 0}
    assert data["locked"] == ["bob"]
    assert data["failures_24h"] == 2 and data["failures_24h_by_user"] == {"bob": 2}
    assert data["sms_sent_last_hour"] == 0
    assert isinstance(data["last_success"]["alice"], int) and data["last_success"]["bob"] is None

    out = ww.cli("status").stdout
    assert "Users enrolled:         2 (totp 1, hotp 1, sms 0, recovery-only 0)" in out
    assert "Locked out now:         bob" in out
    assert "Failed logins (24 h):   2 (bob 2)" in out
    assert "SMS sent (last hour):   0" in out
    assert "never" in out and "UTC" in out


def test_status_without_state_dir(ww):
    data = json.loads(ww.cli("status", "--json").stdout)
    assert data["users"] == 0 and data["locked"] == [] and data["failures_24h"] == 0
