"""pam_watchword.so against fake helpers, through real libpam.

Each test runs the real module under pam_wrapper (pamtester, or pam_client.py
where pamtester's conversation cannot do what the test needs) against a small
fake helper from fake_helpers/ that behaves in one particular way, and checks
what the module did: the PAM result, what the user saw, what was logged and
what the helper received. The contract is docs/helper-protocol.md.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (FAKE_HELPERS_DIR, MODULE_PATH, PAM_AUTH_ERR,
                      PAM_AUTHINFO_UNAVAIL, PAM_CONV_ERR, PAM_SUCCESS,
                      install_helper, make_root_dir)
from mountns import private_mounts

GOOD_HELPER = FAKE_HELPERS_DIR / "good_helper.py"
SCRIPTED_HELPER = FAKE_HELPERS_DIR / "scripted_helper.py"

CODE = "123456"
PAM_SILENT = 0x8000

MSG_SUCCESS = "pamtester: successfully authenticated"
MSG_AUTH_ERR = "Authentication failure"
MSG_UNAVAIL = "Authentication service cannot retrieve authentication info"
MSG_MAXTRIES = "Have exhausted maximum number of retries for service"
MSG_CONV_ERR = "Conversation error"


# ---- helpers -------------------------------------------------------------

def read_record(helper_dir: Path) -> dict | None:
    path = helper_dir / "record.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def process_gone(pid: int) -> bool:
    """True once pid no longer runs (absent, or a zombie nobody reaped yet)."""
    deadline = time.monotonic() + 2
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def assert_denied(res, pam_message: str, reason: str):
    assert res.rc == 1, res.output
    assert pam_message in res.output, res.output
    assert MSG_SUCCESS not in res.output
    assert res.logged(reason), res.log_text()


@pytest.fixture
def good_helper(helper_dir) -> Path:
    return install_helper(GOOD_HELPER, helper_dir)


@pytest.fixture
def scripted(helper_dir):
    """scripted(steps) -> helper path; steps as in scripted_helper.py."""

    def _install(steps):
        (helper_dir / "scenario.json").write_text(json.dumps(steps))
        return install_helper(SCRIPTED_HELPER, helper_dir)

    return _install


def result_steps(outcome: str, status: int, nonce: str = "{nonce}"):
    return [["header"], ["send", f"result {nonce} {outcome}"], ["exit", status]]


# ---- the normal flow -----------------------------------------------------

def test_correct_code_succeeds_and_header_is_exact(run_pam, good_helper,
                                                    helper_dir):
    res = run_pam(f"helper={good_helper} timeout=10", "alice", CODE + "\n",
                  items={"rhost": "client.example.org", "tty": "ssh"})
    assert res.rc == 0, res.output
    assert MSG_SUCCESS in res.output
    # the helper's info line and prompt reached the user
    assert "Hello from the fake helper" in res.stdout
    assert "Verification code: " in res.stderr
    rec = read_record(helper_dir)
    assert rec["errors"] == []
    lines = rec["header_lines"]
    assert lines[0] == "WATCHWORD 1"
    assert re.fullmatch(r"nonce [0-9a-f]{32}", lines[1])
    assert lines[2:] == [
        "user alice",
        "service watchword-test",
        "rhost client.example.org",
        "state_dir /var/lib/watchword",
        "config /etc/watchword/config.toml",
        "account ",  # the module's own lookup: no such account
        "config_required 0",
        "debug 0",
        "timeout 10",
        "end",
    ]
    assert rec["reply"] == "answer" and rec["answer_len"] == len(CODE)
    assert res.logged("user=alice service=watchword-test "
                      "rhost=client.example.org outcome=success "
                      "result=PAM_SUCCESS")


def test_options_reach_the_header_and_nonce_is_fresh(run_pam, good_helper,
                                                     helper_dir):
    args = (f"helper={good_helper} timeout=10 debug "
            "state_dir=/srv/watchword config=/etc/ww/other.toml")
    res1 = run_pam(args, "bob", CODE + "\n")
    assert res1.rc == 0, res1.output
    first = read_record(helper_dir)["header"]
    assert first["rhost"] == "" and "tty" not in first  # nothing reads it: not sent
    assert first["state_dir"] == "/srv/watchword"
    assert first["config"] == "/etc/ww/other.toml"
    assert first["config_required"] == "1"  # named on the module line: it must exist
    assert first["debug"] == "1"
    assert first["timeout"] == "10"
    assert first["account"] == ""  # bob has no account here
    # debug adds detail to the log
    assert res1.logged("started helper")
    res2 = run_pam(args, "bob", CODE + "\n")
    assert res2.rc == 0, res2.output
    second = read_record(helper_dir)["header"]
    assert first["nonce"] != second["nonce"]


def test_the_module_names_the_account_it_looked_up(run_pam, good_helper, helper_dir):
    """The module looks the user up (NSS works in the PAM process; the static helper must
    not call it) and sends the user database's own name, or an empty value for none."""
    res = run_pam(f"helper={good_helper}", "root", CODE + "\n")
    assert res.rc == 0, res.output
    assert read_record(helper_dir)["header"]["account"] == "root"
    res = run_pam(f"helper={good_helper}", "nosuchuser-ww", CODE + "\n")
    assert res.rc == 0, res.output
    assert read_record(helper_dir)["header"]["account"] == ""


def test_header_replaces_control_bytes(run_pam, good_helper, helper_dir):
    res = run_pam(f"helper={good_helper}", "alice", CODE + "\n",
                  items={"rhost": "evil\x01host\x7f", "tty": "a\tb"})
    assert res.rc == 0, res.output
    header = read_record(helper_dir)["header"]
    assert header["rhost"] == "evil?host?"


def test_wrong_code_is_auth_err_and_code_never_logged(run_pam, good_helper,
                                                      helper_dir):
    res = run_pam(f"helper={good_helper} debug", "alice", "987654\n")
    assert_denied(res, MSG_AUTH_ERR, "outcome=auth_err result=PAM_AUTH_ERR")
    assert read_record(helper_dir)["outcome"] == "auth_err"
    assert "987654" not in res.stderr and "987654" not in res.stdout
    # nor a right one
    ok = run_pam(f"helper={good_helper} debug", "alice", CODE + "\n")
    assert ok.rc == 0, ok.output
    assert CODE not in ok.stderr


def test_empty_input_is_a_conversation_error(run_pam, good_helper, helper_dir):
    # misc_conv gives no response at end of input: the helper gets conv-error
    res = run_pam(f"helper={good_helper}", "alice", "")
    assert_denied(res, MSG_CONV_ERR, "outcome=conv_err result=PAM_CONV_ERR")
    assert read_record(helper_dir)["reply"] == "conv-error"


@pytest.mark.parametrize("user, why", [
    ("", "empty"),
    ("a" * 257, "too long"),
    ("ali\x01ce", "control byte"),
])
def test_invalid_user_names_are_refused(run_pam, good_helper, helper_dir,
                                        user, why):
    res = run_pam(f"helper={good_helper}", user, CODE + "\n")
    assert_denied(res, MSG_AUTH_ERR, "refusing an invalid user name")
    assert res.logged("result=PAM_AUTH_ERR")
    assert read_record(helper_dir) is None, "helper must not run"


def test_longest_user_name_is_accepted(run_pam, good_helper, helper_dir):
    res = run_pam(f"helper={good_helper}", "u" * 256, CODE + "\n")
    assert res.rc == 0, res.output
    assert read_record(helper_dir)["header"]["user"] == "u" * 256


# ---- outcomes ------------------------------------------------------------

@pytest.mark.parametrize("outcome, status, message, pam_name", [
    ("auth_err", 10, MSG_AUTH_ERR, "PAM_AUTH_ERR"),
    ("not_enrolled", 11, MSG_AUTH_ERR, "PAM_AUTH_ERR"),
    ("maxtries", 12, MSG_MAXTRIES, "PAM_MAXTRIES"),
    ("unavailable", 13, MSG_UNAVAIL, "PAM_AUTHINFO_UNAVAIL"),
    ("conv_err", 14, MSG_CONV_ERR, "PAM_CONV_ERR"),
])
def test_outcome_mapping(run_pam, scripted, outcome, status, message,
                         pam_name):
    helper = scripted(result_steps(outcome, status))
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, message, f"outcome={outcome} result={pam_name}")


def test_not_enrolled_with_nullok_is_ignored(run_pam, scripted):
    helper = scripted(result_steps("not_enrolled", 11))
    permit = ["auth required pam_permit.so"]
    # nullok: PAM_IGNORE, so the rest of the stack decides (here: permit)
    res = run_pam(f"helper={helper} nullok", "alice", extra_lines=permit)
    assert res.rc == 0, res.output
    assert MSG_SUCCESS in res.output
    assert res.logged("outcome=not_enrolled result=PAM_IGNORE")
    # without nullok the same stack fails
    res = run_pam(f"helper={helper}", "alice", extra_lines=permit)
    assert_denied(res, MSG_AUTH_ERR,
                  "outcome=not_enrolled result=PAM_AUTH_ERR")


def test_nullok_does_not_soften_other_outcomes(run_pam, scripted):
    helper = scripted(result_steps("auth_err", 10))
    res = run_pam(f"helper={helper} nullok", "alice",
                  extra_lines=["auth required pam_permit.so"])
    assert_denied(res, MSG_AUTH_ERR, "result=PAM_AUTH_ERR")


# ---- a result counts only when everything matches ------------------------

def test_success_with_wrong_nonce_is_denied(run_pam, scripted):
    helper = scripted(result_steps("success", 0,
                                   nonce="0123456789abcdef0123456789abcdef"))
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, "helper result carries a wrong nonce")
    assert res.logged("result=PAM_AUTHINFO_UNAVAIL")


@pytest.mark.parametrize("outcome, status", [
    ("success", 1),
    ("success", 10),
    ("auth_err", 0),
    ("maxtries", 10),
])
def test_result_must_match_exit_status(run_pam, scripted, outcome, status):
    helper = scripted(result_steps(outcome, status))
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL,
                  "helper exit status does not match its result")
    assert res.logged(f"helper result {outcome} but helper exited with "
                      f"status {status}")


def test_exit_zero_without_result_is_denied(run_pam, scripted):
    helper = scripted([["header"], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL,
                  "helper closed the connection without a result")


def test_success_then_killed_by_signal_is_denied(run_pam, scripted,
                                                 helper_dir):
    helper = scripted([["header"], ["send", "result {nonce} success"],
                       ["signal", signal.SIGKILL]])
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL,
                  "helper result success but helper killed by signal 9")


def test_helper_killed_before_result_is_denied(run_pam, scripted):
    helper = scripted([["header"], ["send", "prompt Code: "], ["reply"],
                       ["signal", signal.SIGSEGV]])
    res = run_pam(f"helper={helper} debug", "alice", CODE + "\n")
    assert_denied(res, MSG_UNAVAIL,
                  "helper closed the connection without a result")
    assert res.logged("killed by signal 11")


@pytest.mark.parametrize("steps, reason", [
    ([["header"], ["send", "hello world"], ["exit", 0]],
     "helper sent an unknown message"),
    ([["header"], ["send", "PROMPT Code: "], ["exit", 0]],
     "helper sent an unknown message"),
    ([["header"], ["send", "result {nonce} succeeded"], ["exit", 0]],
     "helper sent an unknown outcome"),
    ([["header"], ["send", "result {nonce}"], ["exit", 0]],
     "helper sent a malformed result"),
    ([["header"], ["send_raw", "info a\u0000b\n"], ["exit", 0]],
     "helper sent a NUL byte"),
    ([["header"], ["send_raw", "result {nonce} success"], ["exit", 0]],
     "helper sent an unterminated line"),
    ([["header"], ["send", "result {nonce} success"],
      ["send", "info more"], ["exit", 0]],
     "helper sent data after its result"),
    ([["header"], ["send", "result {nonce} success"],
      ["send", "result {nonce} success"], ["exit", 0]],
     "helper sent data after its result"),
], ids=["garbage", "verb-case", "bad-outcome", "no-outcome", "nul-byte",
        "unterminated", "info-after-result", "second-result"])
def test_garbage_is_denied(run_pam, scripted, steps, reason):
    helper = scripted(steps)
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, reason)
    assert res.logged("result=PAM_AUTHINFO_UNAVAIL")


def test_line_length_limit(run_pam, scripted):
    # 1024 bytes including the newline is the longest allowed message
    ok_line = "info " + "x" * (1024 - len("info ") - 1)
    helper = scripted([["header"], ["send", ok_line],
                       ["send", "result {nonce} success"], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert res.rc == 0, res.output
    assert "x" * 1018 in res.stdout

    helper = scripted([["header"], ["send", ok_line + "x"],
                       ["send", "result {nonce} success"], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, "helper sent a line longer than 1024 bytes")

    helper = scripted([["header"], ["send_repeat", "A", 100000], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, "helper sent a line longer than 1024 bytes")


def test_message_count_limit(run_pam, scripted):
    # 127 info lines + the result = 128 messages: allowed
    infos = [["send", f"info line {i}"] for i in range(127)]
    helper = scripted([["header"], *infos,
                       ["send", "result {nonce} success"], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert res.rc == 0, res.output
    # one more is too many
    helper = scripted([["header"], *infos, ["send", "info one too many"],
                       ["send", "result {nonce} success"], ["exit", 0]])
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, "helper sent more than 128 messages")


# ---- timeouts ------------------------------------------------------------

def test_hanging_helper_is_killed_with_its_group(run_pam, scripted,
                                                 helper_dir):
    helper = scripted([["header"], ["spawn_sleeper", 60], ["sleep", 60]])
    res = run_pam(f"helper={helper} timeout=2", "alice", timeout=30)
    assert_denied(res, MSG_UNAVAIL, "helper timed out")
    assert res.logged("result=PAM_AUTHINFO_UNAVAIL")
    assert 1.8 <= res.elapsed < 2 + 10, res.elapsed  # timeout=2, not the helper's 60 s
    rec = read_record(helper_dir)
    assert process_gone(rec["pid"]), "helper still running"
    assert process_gone(rec["sleeper_pid"]), "helper's child still running"


def test_helper_that_closes_socket_and_hangs_times_out(run_pam, scripted,
                                                       helper_dir):
    helper = scripted([["header"], ["close"], ["sleep", 60]])
    res = run_pam(f"helper={helper} timeout=2", "alice", timeout=30)
    assert_denied(res, MSG_UNAVAIL, "helper timed out")
    assert res.elapsed < 2 + 10, res.elapsed  # timeout=2, not the helper's 60 s
    assert process_gone(read_record(helper_dir)["pid"])


def test_typing_time_is_not_counted(run_pam_conv, scripted, helper_dir):
    helper = scripted([["header"], ["send", "prompt Code: "], ["reply"],
                       ["send", "result {nonce} success"], ["exit", 0]])
    res = run_pam_conv(f"helper={helper} timeout=1", "alice",
                       [{"delay": 2.5, "answer": CODE}])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert res.elapsed >= 2.5
    assert read_record(helper_dir)["replies"] == [
        {"reply": "answer 6", "length": 6, "answer": CODE}]


# ---- replies to prompts --------------------------------------------------

def test_oversized_answer_is_sent_as_too_long(run_pam_conv, scripted,
                                              helper_dir):
    steps = [["header"], ["send", "prompt Code: "], ["reply"],
             ["send", "prompt Code: "], ["reply"],
             ["send", "prompt Code: "], ["reply"],
             ["send", "result {nonce} auth_err"], ["exit", 10]]
    helper = scripted(steps)
    res = run_pam_conv(f"helper={helper}", "alice", [
        {"repeat": "9", "count": 10 * 1024},
        {"repeat": "7", "count": 4096},
        "",
    ])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    replies = read_record(helper_dir)["replies"]
    assert replies[0] == {"reply": "too-long"}
    assert replies[1]["reply"] == "answer 4096"
    assert replies[1]["answer"] == "7" * 4096
    assert replies[2] == {"reply": "answer 0", "length": 0, "answer": ""}


def test_failed_conversation_is_sent_as_conv_error(run_pam_conv, scripted,
                                                   helper_dir):
    helper = scripted([["header"], ["send", "prompt Code: "], ["reply"],
                       ["send", "result {nonce} conv_err"], ["exit", 14]])
    res = run_pam_conv(f"helper={helper}", "alice", [None])
    assert res.pam_rc == PAM_CONV_ERR, res.output
    assert read_record(helper_dir)["replies"] == [{"reply": "conv-error"}]


def test_pam_silent_suppresses_only_info_and_error(run_pam_conv, scripted):
    steps = [["header"], ["send", "error Something to say"],
             ["send", "info Something else"], ["send", "prompt Code: "],
             ["reply"], ["send", "result {nonce} success"], ["exit", 0]]
    helper = scripted(steps)
    res = run_pam_conv(f"helper={helper}", "alice", [CODE])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert res.messages == [
        {"style": 3, "msg": "Something to say"},  # PAM_ERROR_MSG
        {"style": 4, "msg": "Something else"},  # PAM_TEXT_INFO
        {"style": 1, "msg": "Code: "},  # PAM_PROMPT_ECHO_OFF
    ]
    res = run_pam_conv(f"helper={helper}", "alice", [CODE], flags=PAM_SILENT)
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert res.messages == [{"style": 1, "msg": "Code: "}]


# ---- how the helper is started -------------------------------------------

def test_helper_argv_environment_fds_and_signals(run_pam, inspect_helper,
                                                 helper_dir, tmp_path):
    def disturb():
        # what a careless caller might leave behind for the helper
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})

    stray = os.open(tmp_path / "stray", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        res = run_pam(f"helper={inspect_helper}", "alice", preexec_fn=disturb,
                      pass_fds=[stray],
                      env_extra={"SECRET_FROM_CALLER": "leak"})
    finally:
        os.close(stray)
    assert res.rc == 0, res.output
    rec = read_record(helper_dir)
    assert rec["argv"] == ["watchword-helper", "--pam"]
    assert rec["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert sorted(rec["fds"], key=int) == ["0", "1", "2"], rec["fds"]
    assert rec["fds"]["0"].startswith("socket:")
    assert rec["fd01_same_socket"] is True
    assert rec["fds"]["2"] == "/dev/null"
    assert rec["sid"] == rec["pid"] == rec["pgid"], "setsid() not called"
    assert int(rec["sigblk"], 16) == 0, rec["sigblk"]
    assert int(rec["sigign"], 16) == 0, rec["sigign"]


def test_unexecutable_helper_exits_127_and_is_denied(run_pam, helper_dir):
    script = helper_dir / "src"
    script.write_text("#!/nonexistent/interpreter\n")
    helper = install_helper(script, helper_dir)
    res = run_pam(f"helper={helper}", "alice")
    assert_denied(res, MSG_UNAVAIL, "could not be executed (exit status 127)")


def _missing(helper):
    helper.unlink()


def _not_executable(helper):
    helper.chmod(0o644)


def _symlink(helper):
    real = helper.with_name("real-helper")
    helper.rename(real)
    helper.symlink_to(real)


def _group_writable(helper):
    helper.chmod(0o775)


def _other_writable(helper):
    helper.chmod(0o757)


def _not_root_owned(helper):
    nobody = pwd.getpwnam("nobody")
    os.chown(helper, nobody.pw_uid, nobody.pw_gid)
    helper.chmod(0o755)


def _dir_group_writable(helper):
    helper.parent.chmod(0o775)


def _dir_not_root_owned(helper):
    nobody = pwd.getpwnam("nobody")
    os.chown(helper.parent, nobody.pw_uid, nobody.pw_gid)


def _a_directory(helper):
    helper.unlink()
    make_root_dir(helper)


@pytest.mark.parametrize("spoil, reason", [
    (_missing, "helper missing"),
    (_not_executable, "helper is not executable"),
    (_symlink, "helper path has a symlink"),
    (_a_directory, "helper is not a regular file"),
    (_group_writable, "helper is writable by group or other"),
    (_other_writable, "helper is writable by group or other"),
    (_not_root_owned, "helper is not owned by root"),
    (_dir_group_writable, "helper directory is writable by group or other"),
    (_dir_not_root_owned, "helper directory is not owned by root"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_unsafe_helper_is_not_run(run_pam, good_helper, helper_dir, spoil,
                                  reason):
    spoil(good_helper)
    res = run_pam(f"helper={good_helper}", "alice", CODE + "\n")
    assert_denied(res, MSG_UNAVAIL, reason)
    assert res.logged("result=PAM_AUTHINFO_UNAVAIL")
    assert read_record(helper_dir) is None, "helper must not run"


# ---- options -------------------------------------------------------------

@pytest.mark.parametrize("bad, logged", [
    ("frobnicate", 'unknown option "frobnicate"'),
    ("nullok=1", 'unknown option "nullok=1"'),
    ("timeout=0", "invalid option timeout=0"),
    ("timeout=601", "invalid option timeout=601"),
    ("timeout=abc", "invalid option timeout=abc"),
    ("timeout=", "invalid option timeout="),
    ("timeout=-5", "invalid option timeout=-5"),
    ("state_dir=var/lib/watchword", "invalid option state_dir="),
    ("config=config.toml", "invalid option config="),
    ("helper=watchword-helper", "invalid option helper="),
])
def test_bad_option_denies(run_pam, good_helper, helper_dir, bad, logged):
    res = run_pam(f"helper={good_helper} {bad}", "alice", CODE + "\n")
    assert_denied(res, MSG_UNAVAIL, logged)
    assert res.logged('reason="invalid module options"')
    assert read_record(helper_dir) is None, "helper must not run"


def test_timeout_bounds_are_accepted(run_pam, good_helper):
    for value in ("1", "600"):
        res = run_pam(f"helper={good_helper} timeout={value}", "alice",
                      CODE + "\n")
        assert res.rc == 0, res.output
        assert MSG_SUCCESS in res.output
        assert res.logged("outcome=success result=PAM_SUCCESS")


def test_default_helper_path_is_used(run_pam, tmp_path):
    """Without helper=, the module runs /usr/libexec/watchword/watchword-helper (where the
    Debian package puts it). Whatever this machine has installed there, the test sees an
    empty directory (a private mount namespace), so the module must say it cannot find the
    helper at that path."""
    default = Path("/usr/libexec/watchword/watchword-helper")
    if default.parent.exists():
        # Installed here (or by an earlier test): hide it behind an empty directory.
        empty = tmp_path / "empty"
        empty.mkdir(mode=0o755)
        enter = private_mounts(binds={str(default.parent): empty})
        missing = default
    else:
        enter = None
        missing = next(p for p in [*reversed(default.parents), default] if not p.exists())
    res = run_pam("", "alice", CODE + "\n", preexec_fn=enter)
    assert_denied(res, MSG_UNAVAIL, f"cannot open {missing}: No such file or directory")


# ---- the shared object ---------------------------------------------------

def test_only_pam_entry_points_are_exported(pam_module):
    out = subprocess.run(["nm", "-D", "--defined-only", str(MODULE_PATH)],
                         check=True, capture_output=True, text=True).stdout
    symbols = sorted(line.split()[-1] for line in out.splitlines()
                     if line.strip())
    assert symbols == ["pam_sm_authenticate", "pam_sm_setcred"]
