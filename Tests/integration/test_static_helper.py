"""The two helpers the package installs (docs/helper-protocol.md, "Two builds").

`watchword-helper`, which the module runs, is linked fully statically so that it starts
like a C program. It cannot load libcurl, libpq or libqrencode, nor call the user and group
databases (glibc's NSS modules are loaded with dlopen; from a static program a lookup can
crash it), so before it asks anything it hands a login that may need them to
`watchword-helper-dynamic` in its own directory, which gets the header on fd 3 and goes on
over the same socket. These tests run the installed pair (Tests/run.sh points
WATCHWORD_HELPER at the package's); a plain build's helper is not static and is skipped.
"""
from __future__ import annotations

import os

import pytest

from conftest import DYNAMIC_HELPER, PAM_AUTHINFO_UNAVAIL, PAM_SUCCESS
from test_sms import PHONE, code_from, enroll_sms, recorder, outbox  # noqa: F401 (fixtures)
from sms_standins import sms_config
from ww import HELPER, fresh_totp, is_static

pytestmark = pytest.mark.skipif(not is_static(HELPER), reason="the helper under test is not the static build")

HANDED = "handed to watchword-helper-dynamic"


def test_the_helper_the_module_runs_is_static_and_its_sibling_is_not(ww):
    assert is_static(ww.helper)
    assert (ww.helper.parent / DYNAMIC_HELPER).is_file()
    assert not is_static(ww.helper.parent / DYNAMIC_HELPER)


def test_a_totp_login_stays_in_the_static_helper(ww, run_pam_conv):
    alice = ww.enroll("alice")
    res = run_pam_conv(ww.args("debug"), "alice", [fresh_totp(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert not res.logged(HANDED), res.log_text()
    assert res.logged("user alice: accepted (totp)"), res.log_text()


def test_an_unknown_user_is_answered_without_a_lookup_in_the_static_helper(ww, run_pam_conv):
    """The module names the account (here: none); the static helper never calls NSS, which
    from a static program can crash in a dlopen()ed module such as libnss_systemd."""
    ww.enroll("alice")
    res = run_pam_conv(ww.args("debug nullok"), "nosuchuser-ww", ["123456"])
    assert res.logged("user nosuchuser-ww: not enrolled"), res.log_text()
    assert res.logged("outcome=not_enrolled result=PAM_IGNORE"), res.log_text()
    assert not res.logged(HANDED), res.log_text()


def test_an_sms_login_is_handed_over_and_completes(ww, run_pam_conv, recorder, outbox):  # noqa: F811
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{recorder}", "{{phone}}"]\n'))
    enroll_sms(ww)
    res = run_pam_conv(ww.args("debug"), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert res.logged(f"user alice: {HANDED}: SMS"), res.log_text()
    assert res.logged("user alice: accepted (sms)"), res.log_text()
    # The audit line is written once, by the helper that ended the login.
    assert [e["outcome"] for e in ww.audit() if e["event"] == "login"] == ["success"]


def test_a_pending_enrollment_is_handed_over_for_its_qr_code(ww, run_pam_conv):
    ww.cli("enroll", "alice", "--totp", "--at-next-login", "--allow-unknown-user")
    res = run_pam_conv(ww.args("debug"), "alice", [""])  # no code: the token stays pending
    assert res.logged(f"user alice: {HANDED}: an enrollment waits for its first code (QR code)"), res.log_text()
    shown = "\n".join(m["msg"] for m in res.messages)
    assert "otpauth://totp/" in shown, shown
    assert len([m for m in res.messages if "█" in m["msg"] or "▀" in m["msg"]]) >= 10, shown  # the QR code


@pytest.mark.parametrize("damage", ["missing", "group-writable", "symlink", "not root's"])
def test_a_dynamic_helper_that_cannot_be_trusted_denies_the_login(ww, run_pam_conv, recorder, outbox, tmp_path,  # noqa: F811
                                                                  damage):
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{recorder}", "{{phone}}"]\n'))
    enroll_sms(ww)
    dynamic = ww.helper.parent / DYNAMIC_HELPER
    if damage == "missing":
        dynamic.unlink()
    elif damage == "group-writable":
        os.chmod(dynamic, 0o775)
    elif damage == "symlink":
        elsewhere = ww.helper.parent / "elsewhere"
        dynamic.rename(elsewhere)
        dynamic.symlink_to(elsewhere)
    else:
        os.chown(dynamic, 65534, 0)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert res.logged(f"user alice: denied: {dynamic}"), res.log_text()
    assert not outbox.exists()  # nothing was sent
    assert [e["outcome"] for e in ww.audit() if e["event"] == "login"] == ["unavailable"]
