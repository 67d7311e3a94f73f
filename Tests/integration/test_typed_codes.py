"""Codes as people type them: `123 456` and `123-456` as apps display them, an empty
answer named as such, and an SMS-only user told when no text can be sent (issue 15.7)."""
from __future__ import annotations

import pytest

from conftest import PAM_AUTH_ERR, PAM_SUCCESS
from ww import fresh_totp

PAM_ERROR_MSG = 3


def errors(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == PAM_ERROR_MSG]


def prompts(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] in (1, 2)]


@pytest.mark.parametrize("form", ["{a} {b}", "{a}-{b}", " {a} {b} ", "{a[0]} {a[1]} {a[2]} {b[0]} {b[1]} {b[2]}"])
def test_a_code_with_a_space_or_hyphen_in_it_is_accepted(ww, run_pam_conv, form):
    secret = ww.enroll("alice")["secret"]
    code = fresh_totp(secret)
    res = run_pam_conv(ww.args(), "alice", [form.format(a=code[:3], b=code[3:])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    # ...and once: the same code typed the plain way is a replay.
    assert run_pam_conv(ww.args(), "alice", [code]).pam_rc == PAM_AUTH_ERR


@pytest.mark.parametrize("answer", ["123  456", "123--456", "-123456", "123456-", "123 -456", "12_3456", "123.456"])
def test_other_separators_are_not_codes_and_are_not_counted(ww, run_pam_conv, answer):
    ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", [answer])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res) == ["The code must be digits only."], res.messages
    assert ww.show("alice")["failures"] == 0


@pytest.mark.parametrize("answer", ["", "   "])
def test_an_empty_answer_says_no_code_was_entered(ww, run_pam_conv, answer):
    ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", [answer])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res) == ["No code was entered."], res.messages
    assert ww.show("alice")["failures"] == 0


def test_an_sms_only_user_without_a_provider_is_told_and_asked_for_a_recovery_code(ww, run_pam_conv):
    codes = ww.cli("enroll", "bob", "--sms", "+14155550123", "--json")
    import json
    recovery = json.loads(codes.stdout)["recovery_codes"]
    res = run_pam_conv(ww.args(), "bob", [recovery[0]])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert errors(res) == ["Codes cannot be sent by text message now; enter one of your recovery codes."], res.messages
    assert prompts(res) == ["Recovery code: "]
