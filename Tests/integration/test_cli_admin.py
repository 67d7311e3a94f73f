"""An admin CLI that is hard to misuse and easy to script (issue 15.5): unknown accounts
refused, warnings before the secret, recovery codes replaced out loud, --if-missing and
exit statuses scripts can tell apart, list on a missing or damaged state, the fleet-wide
issuer, --no-qr."""
from __future__ import annotations

import json
import os
import re

import pexpect
import pytest

from ww import secret_of

ALREADY_ENROLLED, NOT_ENROLLED = 3, 4


def test_enroll_refuses_a_name_with_no_system_account(ww):
    res = ww.cli("enroll", "wwalice", "--totp", strict=True, check=False)
    assert res.returncode == 1, res
    assert "no system account named 'wwalice' on this host: a typo?" in res.stderr, res.stderr
    assert "otpauth://" not in res.stdout
    assert not ww.user_file("wwalice").exists()
    # A real account needs no flag; an unknown one enrolls with it.
    assert ww.cli("enroll", "nobody", "--totp", strict=True).returncode == 0
    assert ww.cli("enroll", "--allow-unknown-user", "wwalice", "--totp", strict=True).returncode == 0


def test_warnings_come_before_the_secret(ww):
    child = pexpect.spawn(str(ww.cli_path), ["enroll", "--allow-unknown-user", "alice", "--totp", "--sms",
                                             "+14155550123", "--state-dir", str(ww.state), "--config",
                                             str(ww.config)], encoding="utf-8", timeout=30,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    child.expect(pexpect.EOF)
    out = child.before
    warning = out.index('warning: sms.provider is "none"')
    assert warning < out.index("otpauth://") < out.index("Recovery codes"), out


def test_adding_a_token_to_an_sms_only_user_says_the_recovery_codes_are_replaced(ww):
    first = json.loads(ww.cli("enroll", "bob", "--sms", "+14155550123", "--json").stdout)
    assert first["recovery_codes_replaced"] is False and len(first["recovery_codes"]) == 10
    res = ww.cli("enroll", "bob", "--totp")
    assert "bob's previous recovery codes no longer work: these replace them." in res.stdout, res.stdout
    out = json.loads(ww.cli("enroll", "carol", "--sms", "+14155550124", "--json").stdout)
    again = json.loads(ww.cli("enroll", "carol", "--totp", "--json").stdout)
    assert out["recovery_codes_replaced"] is False and again["recovery_codes_replaced"] is True


def test_if_missing_changes_nothing_for_an_enrolled_user_and_enrolls_the_others(ww):
    ww.enroll("alice")
    before = ww.user_file("alice").read_bytes()
    res = ww.cli("enroll", "alice", "--totp", "--if-missing")
    assert res.returncode == 0 and "alice is already enrolled; nothing changed (--if-missing)." in res.stdout
    assert json.loads(ww.cli("enroll", "alice", "--totp", "--if-missing", "--json").stdout) == {
        "user": "alice", "changed": False}
    assert ww.user_file("alice").read_bytes() == before
    made = json.loads(ww.cli("enroll", "bob", "--totp", "--if-missing", "--json").stdout)
    assert made["otpauth_uri"] and ww.show("bob")["method"] == "totp"
    bad = ww.cli("enroll", "bob", "--totp", "--if-missing", "--force", check=False)
    assert bad.returncode == 64 and "at most one of --if-missing and --force" in bad.stderr


def test_already_enrolled_and_not_enrolled_have_their_own_exit_statuses(ww):
    ww.enroll("alice")
    res = ww.cli("enroll", "alice", "--totp", check=False)
    assert res.returncode == ALREADY_ENROLLED and "already enrolled" in res.stderr, res
    res = ww.cli("enroll", "alice", "--totp", "--at-next-login", check=False)
    assert res.returncode == ALREADY_ENROLLED, res
    ww.cli("enroll", "bob", "--sms", "+14155550123")
    res = ww.cli("enroll", "bob", "--sms", "+14155550999", check=False)
    assert res.returncode == ALREADY_ENROLLED and "already has the phone number" in res.stderr, res
    for command in (["show", "ghost"], ["remove", "ghost"], ["unlock", "ghost"], ["recovery-codes", "ghost"],
                    ["export", "ghost", "--otpauth"]):
        res = ww.cli(*command, check=False)
        assert res.returncode == NOT_ENROLLED and "ghost is not enrolled" in res.stderr, (command, res)
    # Other errors stay 1.
    ww.write_config("[policy]\nwindow = 99\n")
    assert ww.cli("show", "alice", check=False).returncode == 1


def test_list_of_a_state_directory_that_does_not_exist_is_an_error(ww, tmp_path):
    res = ww.cli("list", "--state-dir", str(tmp_path / "nope"), state=False, check=False)
    assert res.returncode == 1 and "no state directory at" in res.stderr, res
    assert "No users enrolled" not in res.stdout


def test_one_unreadable_user_file_is_reported_and_the_others_listed(ww):
    ww.enroll("alice")
    ww.enroll("bob")
    ww.enroll("carol")
    ww.user_file("bob").write_text("watchword-user 1\nuser bob\ngarbage\n")
    res = ww.cli("list", check=False)
    assert res.returncode == 1, res
    rows = {l.split()[0]: l.split()[1] for l in res.stdout.splitlines()[1:]}
    assert rows == {"alice": "totp", "bob": "UNREADABLE", "carol": "totp"}, res.stdout
    assert "watchword: bob: cannot be read:" in res.stderr
    listed = json.loads(ww.cli("list", "--json", check=False).stdout)
    assert [e["user"] for e in listed] == ["alice", "carol", "bob"] and "error" in listed[2], listed


def test_the_issuer_comes_from_the_config_unless_given(ww):
    ww.write_config('[enrollment]\nissuer = "Example Corp"\n')
    uri = ww.enroll("alice")["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Example%20Corp:alice?") and "issuer=Example%20Corp" in uri, uri
    assert ww.show("alice")["issuer"] == "Example Corp"
    uri = ww.enroll("bob", "--issuer", "Other")["otpauth_uri"]
    assert "issuer=Other" in uri
    for bad in ('issuer = ""', 'issuer = "a:b"', 'issuer = 5', 'isuer = "x"'):
        ww.write_config(f"[enrollment]\n{bad}\n")
        res = ww.cli("enroll", "carol", "--totp", check=False)
        assert res.returncode == 1 and "enrollment." in res.stderr, (bad, res.stderr)
        assert not ww.user_file("carol").exists()


def test_no_qr_prints_the_uri_and_secret_only(ww):
    out = ww.cli("enroll", "alice", "--totp", "--no-qr").stdout
    assert "otpauth://" in out and "Secret (base32):" in out
    assert not re.search("[█▀▄]", out), out
    assert re.search("[█▀▄]", ww.cli("enroll", "bob", "--totp").stdout)
