"""Logins through the real pam_watchword.so, real libpam (pam_wrapper + pamtester) and the
real helper, against a private state directory; codes come from oathtool."""
from __future__ import annotations

import fcntl
import os
import time

import pytest

from conftest import PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_IGNORE, PAM_MAXTRIES, PAM_SUCCESS
from ww import (Watchword, fresh_totp, oathtool_hotp, oathtool_totp, wait_for_step_margin, fresh_totp as fresh_code)

AUTH_FAILURE = "Authentication failure"
UNAVAILABLE = "Authentication service cannot retrieve authentication info"
MAXTRIES = "Have exhausted maximum number of retries for service"



def test_right_code_is_accepted_and_logged(ww, run_pam):
    alice = ww.enroll("alice")
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n", items={"rhost": "192.0.2.7"})
    assert res.rc == 0, res.output
    assert "successfully authenticated" in res.output
    assert res.logged("user alice from 192.0.2.7: accepted (totp)"), res.log_text()
    assert ww.show("alice")["last_success"] is not None


def test_prompt_is_verification_code(ww, run_pam_conv):
    alice = ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert [m["msg"] for m in res.messages if m["style"] == 1] == ["Verification code: "]


def test_wrong_code_is_refused_and_counted(ww, run_pam):
    alice = ww.enroll("alice")
    right = fresh_code(alice["secret"])
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    res = run_pam(ww.args(), "alice", wrong + "\n")
    assert res.rc == 1 and AUTH_FAILURE in res.output, res.output
    assert res.logged("wrong, reused or expired code (failure 1 of 5)"), res.log_text()
    assert wrong not in res.log_text()
    assert ww.show("alice")["failures"] == 1


def test_code_is_accepted_only_once(ww, run_pam):
    alice = ww.enroll("alice")
    code = fresh_code(alice["secret"])
    assert run_pam(ww.args(), "alice", code + "\n").rc == 0
    again = run_pam(ww.args(), "alice", code + "\n")
    assert again.rc == 1 and AUTH_FAILURE in again.output, again.output


def test_codes_outside_the_window_are_refused(ww, run_pam):
    alice = ww.enroll("alice")
    now = time.time()
    for offset in (-300, -90, 90, 300):
        res = run_pam(ww.args(), "alice", oathtool_totp(alice["secret"], now + offset) + "\n")
        assert res.rc == 1, (offset, res.output)
    # The previous step is inside window = 1 (a code typed as it rolls over). With time for
    # the login before the step ends: after it, that code would be two steps old.
    now = wait_for_step_margin(10)
    prev = run_pam(ww.args(), "alice", oathtool_totp(alice["secret"], now - 30) + "\n")
    assert prev.rc == 0, prev.output
    assert int(time.time()) // 30 == int(now) // 30, "the step ended during the login: too slow to judge"


def test_window_from_config(ww, run_pam):
    alice = ww.enroll("alice")
    ww.write_config("[policy]\nwindow = 0\n")
    res = run_pam(ww.args(), "alice", oathtool_totp(alice["secret"], time.time() - 30) + "\n")
    assert res.rc == 1, res.output


def test_sha256_eight_digit_sixty_second_token(ww, run_pam):
    bob = ww.enroll("bob", "--algorithm", "sha256", "--digits", "8", "--period", "60")
    code = oathtool_totp(bob["secret"], algorithm="sha256", digits=8, period=60)
    assert len(code) == 8
    assert run_pam(ww.args(), "bob", code + "\n").rc == 0


def test_hotp_with_lookahead(ww, run_pam):
    h = ww.enroll("hal", "--hotp")
    assert run_pam(ww.args(), "hal", oathtool_hotp(h["secret"], 0) + "\n").rc == 0
    assert run_pam(ww.args(), "hal", oathtool_hotp(h["secret"], 0) + "\n").rc == 1
    # The token was pressed a few times without logging in.
    assert run_pam(ww.args(), "hal", oathtool_hotp(h["secret"], 4) + "\n").rc == 0
    assert ww.show("hal")["counter"] == 5
    assert run_pam(ww.args(), "hal", oathtool_hotp(h["secret"], 3) + "\n").rc == 1


def test_lockout_after_max_failures_and_unlock(ww, run_pam, run_pam_conv):
    alice = ww.enroll("alice")
    ww.write_config("[policy]\nmax_failures = 3\nlockout_seconds = 120\n")
    for i in range(3):
        res = run_pam(ww.args(), "alice", "000000\n" if i % 2 else "999999\n")
        assert res.rc == 1, res.output
    assert res.logged("locked out for 120 seconds"), res.log_text()
    # Locked: the right code is not even asked for.
    locked = run_pam_conv(ww.args(), "alice", [fresh_code(alice["secret"])])
    assert locked.pam_rc == PAM_MAXTRIES, locked.output
    assert not [m for m in locked.messages if m["style"] == 1], locked.messages
    assert any("Too many failed codes" in m["msg"] for m in locked.messages)
    assert locked.logged("locked out for")
    assert ww.show("alice")["locked"] is True
    out = ww.cli("unlock", "alice").stdout
    assert "Unlocked alice (had 3 failures)" in out
    assert run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n").rc == 0


def test_recovery_code_works_once(ww, run_pam_conv):
    alice = ww.enroll("alice")
    code = alice["recovery_codes"][3]
    first = run_pam_conv(ww.args(), "alice", [code])
    assert first.pam_rc == PAM_SUCCESS, first.output
    assert any("cannot be used again" in m["msg"] for m in first.messages)
    assert first.logged("accepted (recovery)")
    assert ww.show("alice")["recovery_codes_left"] == 9
    second = run_pam_conv(ww.args(), "alice", [code])
    assert second.pam_rc == PAM_AUTH_ERR


def test_regenerated_recovery_codes_replace_old_ones(ww, run_pam):
    alice = ww.enroll("alice")
    import json
    new = json.loads(ww.cli("recovery-codes", "alice", "--json").stdout)["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(alice["recovery_codes"])
    assert run_pam(ww.args(), "alice", alice["recovery_codes"][0] + "\n").rc == 1
    assert run_pam(ww.args(), "alice", new[0] + "\n").rc == 0


def test_surrounding_whitespace_is_trimmed(ww, run_pam_conv):
    alice = ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", ["  " + fresh_code(alice["secret"]) + "\t "])
    assert res.pam_rc == PAM_SUCCESS, res.output


@pytest.mark.parametrize("answer", ["", "12  34 56", "abcdef", "１２３４５６", "١٢٣٤٥٦", "12345\x1b[2J", "9" * 65])
def test_non_codes_are_refused_without_counting(ww, run_pam_conv, answer):
    ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", [answer])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert ww.show("alice")["failures"] == 0


def test_unenrolled_user_is_refused_or_ignored_with_nullok(ww, run_pam_conv):
    ww.enroll("alice")
    plain = run_pam_conv(ww.args(), "bob", [])
    assert plain.pam_rc == PAM_AUTH_ERR, plain.output
    assert plain.logged("user bob: not enrolled")
    assert not plain.messages  # no prompt for someone with nothing to type
    ignored = run_pam_conv(ww.args("nullok"), "bob", [])
    assert ignored.logged("outcome=not_enrolled result=PAM_IGNORE"), ignored.log_text()
    assert plain.logged("outcome=not_enrolled result=PAM_AUTH_ERR"), plain.log_text()


def test_nullok_lets_unenrolled_users_through_to_the_rest_of_the_stack(ww, run_pam):
    ww.enroll("alice")
    res = run_pam(ww.args("nullok"), "bob", "", extra_lines=["auth required pam_permit.so"])
    assert res.rc == 0, res.output
    # ...but nullok never lets an enrolled user skip the code.
    res = run_pam(ww.args("nullok"), "alice", "123\n", extra_lines=["auth required pam_permit.so"])
    assert res.rc == 1, res.output


def test_invalid_user_names_are_refused_before_any_path_is_built(ww, run_pam):
    ww.enroll("alice")
    for name in ["../alice", "-alice", "al/ice", "a" * 65]:
        res = run_pam(ww.args("nullok"), name, "000000\n", extra_lines=["auth required pam_permit.so"])
        assert res.rc == 1, (name, res.output)


# --- tampering: each denies (AUTHINFO_UNAVAIL) and changes nothing ----------------

def tamper_cases():
    return {
        "state dir world-writable": lambda w: os.chmod(w.state, 0o777),
        "state dir group-readable": lambda w: os.chmod(w.state, 0o750),
        "state dir not root's": lambda w: os.chown(w.state, 1000, 1000),
        "users dir mode 0755": lambda w: os.chmod(w.state / "users", 0o755),
        "user file mode 0644": lambda w: os.chmod(w.user_file("alice"), 0o644),
        "user file not root's": lambda w: os.chown(w.user_file("alice"), 1000, 1000),
        "user file a symlink": _symlink_user_file,
        "user file a FIFO": _fifo_user_file,
        "user file hard-linked": lambda w: os.link(w.user_file("alice"), w.state / "users" / ".extra"),
        "user file corrupt": lambda w: w.user_file("alice").write_bytes(b"watchword-user 1\nuser alice\n"),
        "user file of another user": _swap_user_file,
        "config group-readable": lambda w: w.write_config("[policy]\n", mode=0o640),
        "config a symlink": _symlink_config,
        "config with an unknown key": lambda w: w.write_config("[policy]\nwindw = 3\n"),
        "recovery key missing": lambda w: os.unlink(w.state / "recovery.key"),
    }


def _symlink_user_file(w):
    real = w.state / "users" / "alice.real"
    os.rename(w.user_file("alice"), real)
    os.symlink(real, w.user_file("alice"))


def _fifo_user_file(w):
    os.unlink(w.user_file("alice"))
    os.mkfifo(w.user_file("alice"), 0o600)


def _swap_user_file(w):
    w.enroll("mallory")
    os.replace(w.user_file("mallory"), w.user_file("alice"))


def _symlink_config(w):
    real = w.etc / "real.toml"
    real.write_text("[policy]\n")
    os.chmod(real, 0o600)
    w.config.unlink()
    os.symlink(real, w.config)


@pytest.mark.parametrize("case", list(tamper_cases()))
def test_tampered_state_or_config_denies(ww, run_pam, case):
    alice = ww.enroll("alice")
    tamper_cases()[case](ww)
    before = ww.snapshot()
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n", timeout=20)
    assert res.rc == 1, (case, res.output)
    assert UNAVAILABLE in res.output, (case, res.output)
    assert res.logged("denied"), (case, res.log_text())
    assert ww.snapshot() == before, case


def test_config_error_names_the_key(ww, run_pam):
    alice = ww.enroll("alice")
    ww.write_config("[policy]\nwindow = 1\nmax_failure = 3\n")
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert UNAVAILABLE in res.output
    assert res.logged("line 3: unknown key 'policy.max_failure'"), res.log_text()


def test_an_empty_config_means_defaults(ww, run_pam):
    alice = ww.enroll("alice")
    assert ww.config.read_bytes() == b""
    assert run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n").rc == 0


def test_missing_state_dir_denies(ww, run_pam, tmp_path):
    ww.enroll("alice")
    res = run_pam(f"helper={ww.helper} state_dir={tmp_path}/nowhere config={ww.config}", "alice", "123456\n")
    assert res.rc == 1 and UNAVAILABLE in res.output, res.output


def test_missing_helper_denies(ww, run_pam):
    alice = ww.enroll("alice")
    os.unlink(ww.helper)
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert res.rc == 1 and UNAVAILABLE in res.output, res.output


def test_helper_stuck_on_a_held_lock_times_out_and_denies(ww, run_pam):
    alice = ww.enroll("alice")
    lock = open(ww.state / "locks" / "alice", "r+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        res = run_pam(ww.args("timeout=2"), "alice", fresh_code(alice["secret"]) + "\n", timeout=30)
    finally:
        lock.close()
    assert res.rc == 1 and UNAVAILABLE in res.output, res.output
    assert res.elapsed < 2 + 10  # timeout=2, with room for a loaded machine; the lock is held for good
    assert res.logged("timed out"), res.log_text()


def test_helper_refuses_to_run_by_hand(ww):
    import subprocess
    proc = subprocess.run([str(ww.helper), "--pam"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 13 and "socket" in proc.stderr
    proc = subprocess.run([str(ww.helper)], capture_output=True, text=True)
    assert proc.returncode == 13 and "not by hand" in proc.stderr
