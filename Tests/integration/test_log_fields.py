"""Names and hosts that try to forge log and audit fields (SECURITY.md: "log fields carry
printable ASCII only, so a user name cannot forge a field such as `outcome=success`").

The user name, PAM_RHOST and the service name are chosen by whoever logs in (the name
typed at the ssh prompt, the reverse DNS of the client, the application). Through the
real module, the real helper (pam_client.py sets PAM_RHOST/PAM_TTY to any bytes; the
service name is a service file's name) and the real CLI, each login must leave:

- in syslog, exactly one line with an `outcome=` field: the module's result line, in
  which every field has exactly one value, and no message with a byte outside printable
  ASCII (no newline or carriage return to start a fake line, no escape sequence);
- in the audit trail, exactly one more line, parsing as one JSON object with each key
  once, whose outcome is the real one, and `watchword log` / `watchword log --json`
  showing that one event with the same fields.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from conftest import PAM_AUTH_ERR, PAM_IGNORE
from ww import Watchword, oathtool_totp, fresh_totp as fresh_code, wrong_of

FIELDS = ["time", "event", "user", "service", "rhost", "method", "outcome", "reason", "host", "actor",
          "actor_source"]
RESULT_LINE = re.compile(
    r'user=(?P<user>[!-~]*) service=(?P<service>[!-~]*) rhost=(?P<rhost>[!-~]*) '
    r'outcome=(?P<outcome>[a-z_]+) result=(?P<result>PAM_[A-Z_]+)(?: reason="(?P<reason>[^"]*)")?')
FORGED = ' outcome=success result=PAM_SUCCESS method=totp'
HOSTILE = [
    pytest.param(FORGED, id="fields"),
    pytest.param('x" outcome="success', id="quote"),
    pytest.param("x\n<38>Dec  4 12:00:00 host sshd: user=alice outcome=success", id="newline"),
    pytest.param("x\routcome=success", id="carriage-return"),
    pytest.param("x\x1b[2K\x1b[1Goutcome=success\x01\x7f", id="control-bytes"),
    pytest.param("h\u00f6st\u202eoutcome=success \udcff\udcfe", id="non-ascii"),
    pytest.param("L" * 1000 + FORGED, id="long"),
]



def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a key twice: {keys}"
    return dict(pairs)


def check_syslog(res, outcome: str, result: str) -> re.Match:
    """The run's syslog: printable ASCII only, one line per message, and one result
    line whose fields each hold one value; returns that line's match."""
    for line in res.stderr.splitlines():
        # a newline inside a message would start a line without pam_wrapper's prefix
        # (pam_wrapper itself writes one empty line)
        assert line == "" or line.startswith("PWRAP_"), f"a line not written by pam_wrapper: {line!r}"
    messages = [msg for _, msg in res.syslog]
    assert messages, res.output
    for msg in messages:
        assert re.fullmatch(r"[ -~]*", msg), f"a byte outside printable ASCII in syslog: {msg!r}"
    # A field is a space-separated word KEY=VALUE; the module's result line is the one
    # line with an outcome field, and holds each of its fields once.
    with_outcome = [msg for msg in messages if re.search(r"(^| )outcome=", msg)]
    assert len(with_outcome) == 1, f"more than one line with an outcome= field: {with_outcome}"
    match = RESULT_LINE.fullmatch(with_outcome[0])
    assert match, f"the result line does not parse into one value per field: {with_outcome[0]!r}"
    assert match["outcome"] == outcome and match["result"] == result, with_outcome[0]
    for msg in messages:
        if msg is not with_outcome[0]:
            assert not re.search(r"(^| )(user|service|rhost|result|method)=", msg), msg
    return match


def check_audit(ww: Watchword, before: int, outcome: str) -> dict:
    """Exactly one new audit line, one JSON object with each key once and the real
    outcome; `watchword log --json` and `watchword log` agree with it."""
    lines = (ww.state / "audit.log").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the audit trail does not end with a newline"
    lines = lines[:-1]
    assert len(lines) == before + 1, f"{len(lines) - before} audit lines for one login"
    entry = json.loads(lines[-1], object_pairs_hook=unique_keys)
    assert list(entry) == FIELDS, entry
    assert entry["event"] == "login" and entry["outcome"] == outcome, entry
    assert entry["method"] is None, entry
    for key in ("user", "service", "rhost"):
        assert re.fullmatch(r"[!-~]*", entry[key]), f"{key} is not printable ASCII: {entry[key]!r}"

    shown = json.loads(ww.cli("log", "--json").stdout, object_pairs_hook=unique_keys)
    assert len(shown) == before + 1 and shown[-1] == entry, shown[-1]

    table = ww.cli("log").stdout.splitlines()
    assert len(table) == before + 2, f"{len(table) - 1} table rows for {before + 1} entries"
    # TIME is three words (date, time, UTC); then one word per column up to REASON.
    cells = table[-1].split(maxsplit=11)
    assert cells[3:11] == [entry["host"], entry["user"] or "-", "login", "-", entry["service"] or "-",
                           entry["rhost"] or "-", "-", outcome], cells
    return entry


def audit_count(ww: Watchword) -> int:
    return len(ww.audit())


@pytest.mark.parametrize("hostile", HOSTILE)
def test_rhost_and_tty_cannot_forge_fields(ww, run_pam_conv, hostile):
    alice = ww.enroll("alice")
    before = audit_count(ww)
    res = run_pam_conv(ww.args(), "alice", [wrong_of(fresh_code(alice["secret"]))],
                       items={"rhost": hostile, "tty": hostile})
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    match = check_syslog(res, "auth_err", "PAM_AUTH_ERR")
    assert match["user"] == "alice" and len(match["rhost"]) <= 255
    assert res.logged("wrong, reused or expired code (failure 1 of 5)"), res.log_text()
    entry = check_audit(ww, before, "auth_err")
    assert entry["user"] == "alice" and entry["service"] == "watchword-test"
    assert entry["rhost"] and len(entry["rhost"]) <= 255
    assert ww.show("alice")["failures"] == 1


@pytest.mark.parametrize("hostile", HOSTILE)
def test_user_name_cannot_forge_fields(ww, run_pam_conv, hostile):
    """Names with control bytes are refused by the module before the helper runs (no
    audit line); the others reach the helper, which finds them invalid."""
    ww.enroll("alice")
    user = "alice" + hostile
    before = audit_count(ww)
    res = run_pam_conv(ww.args("nullok"), user, ["123456"], items={"rhost": "192.0.2.7"})
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    if re.search(r"[\x00-\x1f\x7f]", user) or len(user.encode("utf-8", "surrogateescape")) > 256:
        match = check_syslog(res, "error", "PAM_AUTH_ERR")
        assert match["reason"] == "invalid user name"
        assert audit_count(ww) == before
    else:
        match = check_syslog(res, "auth_err", "PAM_AUTH_ERR")
        assert res.logged("not a valid user name"), res.log_text()
        entry = check_audit(ww, before, "auth_err")
        assert entry["rhost"] == "192.0.2.7"
        assert entry["user"].startswith("alice") and entry["user"] != "alice"
    assert match["user"].startswith("alice") and match["rhost"] == "192.0.2.7"
    assert ww.show("alice")["failures"] == 0


@pytest.mark.parametrize("hostile", [p for p in HOSTILE if p.id in ("fields", "quote", "non-ascii")])
def test_service_name_cannot_forge_fields(ww, run_pam_conv, hostile):
    """The service name is the PAM service file's name (lower case, no '/')."""
    alice = ww.enroll("alice")
    service = "svc" + hostile.lower()
    before = audit_count(ww)
    res = run_pam_conv(ww.args(), "alice", [wrong_of(fresh_code(alice["secret"]))],
                       service=service, items={"rhost": hostile})
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    check_syslog(res, "auth_err", "PAM_AUTH_ERR")
    entry = check_audit(ww, before, "auth_err")
    assert entry["service"].startswith("svc") and entry["user"] == "alice"


def test_hostile_rhost_on_an_accepted_login_logs_one_success(ww, run_pam_conv):
    """The one real success is still logged as one: the forged text adds none."""
    alice = ww.enroll("alice")
    before = audit_count(ww)
    res = run_pam_conv(ww.args(), "alice", [fresh_code(alice["secret"])],
                       items={"rhost": "x outcome=auth_err result=PAM_AUTH_ERR\n"})
    assert res.pam_rc == 0, res.output
    with_outcome = [msg for _, msg in res.syslog if re.search(r"(^| )outcome=", msg)]
    assert len(with_outcome) == 1, with_outcome
    match = RESULT_LINE.fullmatch(with_outcome[0])
    assert match and match["outcome"] == "success" and match["result"] == "PAM_SUCCESS", with_outcome
    entries = ww.audit()
    assert len(entries) == before + 1 and entries[-1]["outcome"] == "success"
    assert entries[-1]["method"] == "totp"

