"""SMS codes through the real pam_watchword.so, helper and CLI, against stand-in providers.

Every provider is reached on 127.0.0.1 (sms_standins.py) or, for `command`, through a
script that records the text; nothing leaves the machine. The conversation is scripted
with pam_client.py; the code is typed by reading what the stand-in received
({"from_file": outbox, ...}), exactly as a user reads their phone.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_MAXTRIES, PAM_SUCCESS, run_pam_clients_at_once,
                      write_service)
from sms_standins import NomadoStandIn, TwilioStandIn, TwilioVerifyStandIn, sms_config
from ww import CLI, HELPER, Watchword, helper_binaries, is_static, secret_of, wrong_totp_codes
from ww import fresh_totp as ww_fresh_totp

PHONE = "+14155550123"
MASKED = "••••••0123"
SENT_PROMPT = f"Code sent to {MASKED}. Verification code: "
OFFER_PROMPT = "Verification code (press Enter to get one by SMS): "
GOLDEN = Path(__file__).parent / "golden"



@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "outbox.txt"


@pytest.fixture
def twilio(outbox):
    s = TwilioStandIn(outbox)
    yield s
    s.stop()


@pytest.fixture
def verify(outbox):
    s = TwilioVerifyStandIn(outbox)
    yield s
    s.stop()


@pytest.fixture
def nomado(outbox):
    s = NomadoStandIn(outbox)
    yield s
    s.stop()


@pytest.fixture
def recorder(tmp_path, outbox) -> Path:
    """A `command` provider program that appends 'PHONE<TAB>MESSAGE' to the outbox: the
    phone from its argv, the message from its stdin."""
    path = tmp_path / "send-sms"
    path.write_text(f'#!/bin/sh\nprintf "%s\\t%s\\n" "$1" "$(cat)" >> {outbox}\n')
    path.chmod(0o700)
    return path


def code_from(outbox: Path) -> dict:
    """The answer pam_client types: the code in the last text of the outbox."""
    return {"from_file": str(outbox), "pattern": r"is:? (\d{4,10})\b"}


def last_code(outbox: Path) -> str:
    return re.findall(r"is:? (\d{4,10})\b", outbox.read_text())[-1]


def texts(outbox: Path) -> list[str]:
    return outbox.read_text().splitlines() if outbox.exists() else []


def prompts(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == 1]


def errors(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == 3]


def infos(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == 4]


def enroll_sms(ww: Watchword, user: str = "alice", *extra: str, phone: str = PHONE) -> dict:
    return json.loads(ww.cli("enroll", user, "--sms", phone, *extra, "--json").stdout)


def fresh_totp(secret: str) -> str:
    return ww_fresh_totp(secret)


def assert_nothing_secret(res, *secrets: str):
    """No code, credential or full phone number in the log or the user's messages."""
    shown = res.log_text() + "\n" + "\n".join(m["msg"] for m in res.messages)
    for secret in (PHONE, *secrets):
        assert secret not in shown, (secret, shown)


def set_state_key(ww: Watchword, user: str, key: str, value: str):
    """Rewrites one key of a user's state file as root would, keeping its mode."""
    path = ww.user_file(user)
    lines = path.read_text().splitlines()
    lines = [f"{key} {value}" if l.startswith(key + " ") else l for l in lines]
    tmp = path.with_name("." + path.name + ".edit")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


# --- codes texted and checked, each provider ----------------------------------------------

def test_command_provider_texts_the_code_and_accepts_it(ww, run_pam_conv, recorder, outbox):
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{recorder}", "{{phone}}"]\n'))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [SENT_PROMPT]
    [line] = texts(outbox)
    phone, message = line.split("\t")
    assert phone == PHONE
    code = last_code(outbox)
    assert re.fullmatch(r"Your login code for .+ is \d{6}\. It expires in 5 minutes\.", message), message
    assert res.logged("user alice: SMS code sent to ••••••0123 (command)"), res.log_text()
    assert res.logged("user alice: accepted (sms)")
    assert_nothing_secret(res, code)
    state = ww.user_file("alice").read_text()
    assert code not in state and re.search(r"^sms\.last_sent \d+$", state, re.M)
    assert not re.search(r"^sms\.code ", state, re.M)  # used: gone


def test_twilio_texts_the_code_with_the_messages_api(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    [req] = twilio.requests
    assert req.path == f"/2010-04-01/Accounts/{twilio.sid}/Messages.json"
    assert req.auth == f"{twilio.sid}:{twilio.token}"
    assert req.content_type == "application/x-www-form-urlencoded"
    assert set(req.form) == {"To", "From", "Body"}
    assert req.form["To"] == PHONE and req.form["From"] == "+15550000000"
    assert last_code(outbox) in req.form["Body"]
    assert_nothing_secret(res, last_code(outbox), twilio.token)


def test_twilio_verify_makes_sends_and_checks_the_code(ww, run_pam_conv, verify, outbox):
    ww.write_config(verify.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [SENT_PROMPT]
    start, check = verify.requests
    assert start.path == f"/v2/Services/{verify.service}/Verifications"
    assert start.form == {"To": PHONE, "Channel": "sms"}
    assert check.path == f"/v2/Services/{verify.service}/VerificationCheck"
    assert check.form == {"To": PHONE, "Code": last_code(outbox)}
    assert all(r.auth == f"{verify.sid}:{verify.token}" for r in verify.requests)
    # The service made the code: no hash of it is kept.
    assert "sms.code" not in ww.user_file("alice").read_text()
    assert_nothing_secret(res, last_code(outbox), verify.token)


def test_twilio_verify_wrong_code_is_counted(ww, run_pam_conv, verify, outbox):
    ww.write_config(verify.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", ["000000"])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert verify.requests[-1].form == {"To": PHONE, "Code": "000000"}
    assert ww.show("alice")["failures"] == 1
    # The service still holds the code; the next login (within the resend interval) takes it.
    again = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert again.pam_rc == PAM_SUCCESS, again.output
    assert len(texts(outbox)) == 1


def test_nomado_makes_sends_and_checks_the_code(ww, run_pam_conv, nomado, outbox):
    ww.write_config(nomado.config(code_digits=8, code_ttl_seconds=120))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    create, check = nomado.requests
    assert create.path == "/2fa/create" and create.content_type == "application/json"
    assert set(create.json) == {"to", "template", "type", "length", "expiry"}
    assert create.json["to"] == PHONE and create.json["type"] == "NUMERIC"
    assert create.json["length"] == 8 and create.json["expiry"] == 120
    assert "{{CODE}}" in create.json["template"] and "2 minutes" in create.json["template"]
    assert check.path == "/2fa/verify" and check.json == {"number": PHONE, "token": last_code(outbox)}
    assert len(last_code(outbox)) == 8
    assert all(r.auth == f"{nomado.user}:{nomado.password}" for r in nomado.requests)
    assert_nothing_secret(res, last_code(outbox), nomado.password)


def test_nomado_wrong_code_is_refused(ww, run_pam_conv, nomado):
    ww.write_config(nomado.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", ["12345678"])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert nomado.requests[-1].json == {"number": PHONE, "token": "12345678"}


# --- the code's life: wrong, reused, expired, three tries ---------------------------------

def test_wrong_code_is_rejected_and_counted(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", ["000000"])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged("wrong, reused or expired code (failure 1 of 5)"), res.log_text()
    assert ww.show("alice")["failures"] == 1
    assert_nothing_secret(res, last_code(outbox))


def test_code_is_accepted_once(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    assert run_pam_conv(ww.args(), "alice", [code_from(outbox)]).pam_rc == PAM_SUCCESS
    used = last_code(outbox)
    again = run_pam_conv(ww.args(), "alice", [used])
    assert again.pam_rc == PAM_AUTH_ERR, again.output
    # Within the resend interval, with no live code: nothing new is sent, the user is told to wait.
    assert len(twilio.requests) == 1
    assert any(e.startswith("No new code can be sent yet: please wait") for e in errors(again)), again.messages
    assert prompts(again) == ["Recovery code: "]


def test_fourth_try_on_the_same_code_is_rejected(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    for i in range(3):
        res = run_pam_conv(ww.args(), "alice", [f"00000{i}"])
        assert res.pam_rc == PAM_AUTH_ERR, res.output
        if i:
            assert prompts(res) == [SENT_PROMPT]
            assert infos(res) and "is still valid" in infos(res)[0]
    assert len(twilio.requests) == 1
    # The right code, on the fourth try: the code is dead.
    res = run_pam_conv(ww.args("debug"), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert ww.show("alice")["failures"] == 4
    assert len(twilio.requests) == 1


def test_right_code_on_the_third_try_is_accepted(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    for wrong in ("000000", "000001"):
        assert run_pam_conv(ww.args(), "alice", [wrong]).pam_rc == PAM_AUTH_ERR
    assert run_pam_conv(ww.args(), "alice", [code_from(outbox)]).pam_rc == PAM_SUCCESS


def test_expired_code_is_rejected(ww, run_pam_conv, twilio, outbox):
    """The code is real; only the stored expiry time is moved into the past (as if its
    code_ttl_seconds had passed), which is all the helper looks at."""
    ww.write_config(twilio.config(code_ttl_seconds=30, resend_interval_seconds=600))
    enroll_sms(ww)
    first = run_pam_conv(ww.args(), "alice", [None])  # texted, then the user hangs up
    assert len(texts(outbox)) == 1, first.output
    state = ww.user_file("alice").read_text()
    expires = int(re.search(r"^sms\.expires (\d+)$", state, re.M).group(1))
    sent = int(re.search(r"^sms\.last_sent (\d+)$", state, re.M).group(1))
    assert expires == sent + 30
    set_state_key(ww, "alice", "sms.expires", str(int(time.time()) - 1))
    res = run_pam_conv(ww.args("debug"), "alice", [code_from(outbox)])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged("the SMS code had expired"), res.log_text()
    assert len(texts(outbox)) == 1


# --- provider-checked codes: every wrong answer counted, every code accepted once -------

CHECKERS = {"twilio-verify": "verify", "nomado": "nomado"}


def checks(standin) -> list:
    """The requests that asked the stand-in to check a code."""
    return [r for r in standin.requests if r.path.endswith(("/VerificationCheck", "/2fa/verify"))]


@pytest.mark.parametrize("provider", list(CHECKERS))
def test_wrong_answers_are_counted_when_the_provider_cannot_check(ww, run_pam_conv, request, provider):
    """A provider that answers 503 to every check does not make guesses free: each wrong
    answer is counted before the provider is asked, and max_failures of them lock the
    user out (DESIGN: a wrong answer is counted as a failure even when the check fails)."""
    standin = request.getfixturevalue(CHECKERS[provider])
    # A new text at every login, so every wrong answer meets a live code and goes to the provider.
    ww.write_config(standin.config(resend_interval_seconds=0, max_per_hour=100))
    alice = ww.enroll("alice", "--sms", PHONE)
    standin.check_fail = 503
    guesses = wrong_totp_codes(alice["secret"], 5)
    for n in (1, 2):
        res = run_pam_conv(ww.args(), "alice", ["", guesses[2 * n - 2], guesses[2 * n - 1]])
        assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
        assert prompts(res) == [OFFER_PROMPT, SENT_PROMPT, "Verification code: "]
        assert "The code could not be checked; try again later." in errors(res)
        assert res.logged(f"SMS code not checked ({provider}): {provider}: HTTP 503"), res.log_text()
        assert len(checks(standin)) == 2 * n
        assert ww.show("alice")["failures"] == 2 * n
    # The fifth wrong answer (max_failures = 5) locks the user out, whatever the provider said.
    res = run_pam_conv(ww.args(), "alice", ["", guesses[4]])
    assert res.pam_rc == PAM_MAXTRIES, res.output
    assert len(checks(standin)) == 5
    assert res.logged("(failure 5 of 5); locked out for 30 seconds"), res.log_text()
    shown = ww.show("alice")
    assert shown["failures"] == 5 and shown["locked"] is True
    # The next login is refused at once: no prompt, no text, no check.
    before = len(standin.requests)
    res = run_pam_conv(ww.args(), "alice", ["", guesses[0]])
    assert res.pam_rc == PAM_MAXTRIES, res.output
    assert prompts(res) == []
    assert len(standin.requests) == before
    assert ww.show("alice")["failures"] == 5


@pytest.mark.parametrize("provider", ["twilio", *CHECKERS])
def test_16_concurrent_logins_with_one_texted_code_succeed_exactly_once(
        ww, run_pam_conv, service_dir, pam_module, request, outbox, tmp_path, provider):
    """Single use does not rest on the provider: a stand-in that approves the right code
    every time it is asked still lets exactly one of 16 logins in. (twilio: watchword made
    and checks the code; the same must hold.)"""
    standin = request.getfixturevalue(CHECKERS.get(provider, provider))
    standin.approve_repeatedly = True
    # A high failure limit, so that the 15 losers do not lock the account during the race.
    ww.write_config("[policy]\nmax_failures = 1000\n\n"
                    + standin.config(resend_interval_seconds=600, code_ttl_seconds=600))
    enroll_sms(ww)
    first = run_pam_conv(ww.args(), "alice", [None])  # the code is texted; the user hangs up
    assert len(texts(outbox)) == 1, first.output
    write_service(service_dir, "race", [f"auth required {pam_module} {ww.args()}"])
    results = run_pam_clients_at_once(service_dir, ["race"] * 16, "alice", code_from(outbox), tmp_path / "barrier")
    assert all(any(m["msg"] == SENT_PROMPT for m in r["messages"]) for r in results)
    codes = sorted(r["rc"] for r in results)
    assert codes.count(PAM_SUCCESS) == 1, codes
    assert codes.count(PAM_AUTH_ERR) == 15, codes
    assert len(texts(outbox)) == 1  # all 16 answered the one code
    if provider in CHECKERS:
        # The code's three tries bound what reaches the provider.
        assert 1 <= len(checks(standin)) <= 3
    state = ww.user_file("alice").read_text()
    assert not re.search(r"^sms\.(expires|code|id) ", state, re.M), state
    # Used: the same code is refused afterwards, even though the provider would approve it.
    again = run_pam_conv(ww.args(), "alice", [code_from(outbox)])
    assert again.pam_rc == PAM_AUTH_ERR, again.output


# --- limits ---------------------------------------------------------------------------

def test_resend_interval_reuses_a_live_code_and_makes_a_user_wait(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config(resend_interval_seconds=120))
    alice = ww.enroll("alice")
    enroll_sms(ww)
    first = run_pam_conv(ww.args(), "alice", ["", None])
    assert prompts(first) == [OFFER_PROMPT, SENT_PROMPT], first.output
    # Enter again within the interval: no new text; the one sent is still good.
    second = run_pam_conv(ww.args(), "alice", ["", code_from(outbox)])
    assert second.pam_rc == PAM_SUCCESS, second.output
    assert infos(second) and infos(second)[0].startswith(f"A code was sent to {MASKED}")
    # Enter once more: that code is used and the interval is not over: wait, nothing sent.
    third = run_pam_conv(ww.args(), "alice", ["", fresh_totp(alice["secret"])])
    assert third.pam_rc == PAM_SUCCESS, third.output
    assert prompts(third) == [OFFER_PROMPT, "Verification code: "]
    [wait] = errors(third)
    assert re.fullmatch(r"No new code can be sent yet: please wait (\d+ seconds|2 minutes)\.", wait), wait
    assert third.logged("no SMS sent: sms.resend_interval_seconds not yet over")
    assert len(twilio.requests) == 1


def test_hourly_cap_per_user(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config(max_per_hour=2, resend_interval_seconds=0))
    enroll_sms(ww)
    for _ in range(2):
        assert run_pam_conv(ww.args(), "alice", [code_from(outbox)]).pam_rc == PAM_SUCCESS
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert len(twilio.requests) == 2
    wait = errors(res)[0]
    assert re.fullmatch(r"No new code can be sent yet: please wait \d+ (seconds|minutes)\.", wait), wait
    assert res.logged("no SMS sent: sms.max_per_hour reached for this user"), res.log_text()
    assert ww.show("alice")["sms_sent_last_hour"] == 2


def test_hourly_cap_for_all_users(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config(max_per_hour_total=1))
    enroll_sms(ww, "alice")
    enroll_sms(ww, "bob", phone="+32470123456")
    assert run_pam_conv(ww.args(), "alice", [code_from(outbox)]).pam_rc == PAM_SUCCESS
    res = run_pam_conv(ww.args(), "bob", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert len(twilio.requests) == 1
    assert res.logged("sms.max_per_hour_total reached for all users"), res.log_text()
    st = (ww.state / "sms-global").stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600)
    assert re.fullmatch(r"watchword-sms 1\nsent \d+:1\nend\n", (ww.state / "sms-global").read_text())


# --- both methods -------------------------------------------------------------------

def test_both_methods_enter_texts_a_code(ww, run_pam_conv, twilio, outbox):
    ww.write_config(twilio.config())
    ww.enroll("alice")
    out = enroll_sms(ww)
    assert out["recovery_codes"] == []  # kept
    res = run_pam_conv(ww.args(), "alice", ["", code_from(outbox)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [OFFER_PROMPT, SENT_PROMPT]
    assert res.logged("accepted (sms)")


def test_both_methods_totp_directly_sends_nothing(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config())
    alice = ww.enroll("alice", "--sms", PHONE)
    assert alice["phone"] == PHONE
    res = run_pam_conv(ww.args(), "alice", [fresh_totp(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [OFFER_PROMPT]
    assert twilio.requests == []
    assert res.logged("accepted (totp)")


def test_recovery_code_at_the_sms_prompt(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config())
    alice = enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [alice["recovery_codes"][0]])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [SENT_PROMPT]
    assert res.logged("accepted (recovery)")


# --- a provider that fails ------------------------------------------------------------

FAILURES = {
    "500": (500, "HTTP 500"),
    "503": (503, "HTTP 503"),
    "429": (429, "HTTP 429 (rate limited by the provider)"),
    "400": (400, "HTTP 400"),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_provider_error_is_one_sentence_and_a_log_line(ww, run_pam_conv, twilio, name):
    status, logged = FAILURES[name]
    ww.write_config(twilio.config())
    alice = enroll_sms(ww)
    twilio.fail = status
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res)[0] == "The text message could not be sent; enter a recovery code or try again later."
    assert prompts(res) == ["Recovery code: "]
    assert res.logged(f"user alice: SMS to {MASKED} not sent (twilio): twilio: {logged}"), res.log_text()
    assert_nothing_secret(res, twilio.token)
    # The login may still be made with a recovery code.
    ok = run_pam_conv(ww.args(), "alice", [alice["recovery_codes"][1]])
    assert ok.pam_rc == PAM_SUCCESS, ok.output


def test_bad_credentials(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config().replace(twilio.token, "wrong-token-9"))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert twilio.requests[0].auth == f"{twilio.sid}:wrong-token-9"
    assert res.logged("HTTP 401 (credentials refused: check the account and token in the config): code 20003"), \
        res.log_text()
    assert_nothing_secret(res, "wrong-token-9")


def test_provider_that_hangs_is_given_up_after_timeout_seconds(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config(timeout_seconds=2))
    enroll_sms(ww, "alice")
    twilio.fail = "hang"
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert 2 <= res.elapsed < 2 + 10, res.elapsed  # the stand-in never answers
    assert res.logged("not sent (twilio): no answer within 2 seconds"), res.log_text()
    assert not res.logged("helper timed out")


def test_unreachable_provider(ww, run_pam_conv, outbox):
    ww.write_config(sms_config("twilio", '[sms.twilio]\naccount_sid = "AC1"\nauth_token = "t0ken-x"\n'
                                         'from = "+15550000000"\napi_base = "http://127.0.0.1:1"\n'))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged("cannot reach the provider"), res.log_text()
    assert_nothing_secret(res, "t0ken-x")


def test_dns_failure_is_bounded(ww, run_pam_conv):
    ww.write_config(sms_config("twilio", '[sms.twilio]\naccount_sid = "AC1"\nauth_token = "t0ken-x"\n'
                                         'from = "+15550000000"\napi_base = "https://watchword-test.invalid"\n',
                               timeout_seconds=3))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.elapsed < 3 + 10, res.elapsed
    assert res.logged("not sent (twilio)"), res.log_text()
    assert errors(res)[0] == "The text message could not be sent; enter a recovery code or try again later."



def test_module_timeout_below_sms_timeout_still_denies(ww, run_pam_conv, twilio):
    """timeout= must exceed sms.timeout_seconds; when it does not, the module kills the
    helper and denies — never fails open."""
    ww.write_config(twilio.config(timeout_seconds=10))
    enroll_sms(ww)
    twilio.fail = "hang"
    res = run_pam_conv(ww.args("timeout=2"), "alice", [""])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert res.logged("helper timed out"), res.log_text()
    assert res.elapsed < 2 + 10


def test_both_methods_failed_send_then_totp(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config())
    alice = ww.enroll("alice", "--sms", PHONE)
    twilio.fail = 500
    res = run_pam_conv(ww.args(), "alice", ["", fresh_totp(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert prompts(res) == [OFFER_PROMPT, "Verification code: "]
    assert errors(res) == ["The text message could not be sent; use your authenticator app or a recovery code."]


def test_both_methods_failed_send_then_nothing_is_denied(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config())
    ww.enroll("alice", "--sms", PHONE)
    twilio.fail = 503
    res = run_pam_conv(ww.args(), "alice", ["", "000000"])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    # An empty answer at the fallback prompt does not send again, and a failed send counts
    # toward the limits: within the resend interval the next Enter is told to wait.
    res = run_pam_conv(ww.args(), "alice", ["", ""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res)[0].startswith("No new code can be sent yet")
    assert len(twilio.requests) == 1


def test_verification_service_down_at_check(ww, run_pam_conv, verify, outbox):
    ww.write_config(verify.config())
    alice = ww.enroll("alice", "--sms", PHONE)
    first = run_pam_conv(ww.args(), "alice", ["", None])
    assert prompts(first) == [OFFER_PROMPT, SENT_PROMPT]
    verify.fail = 500
    res = run_pam_conv(ww.args(), "alice", ["", code_from(outbox), fresh_totp(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert "The code could not be checked; try again later." in errors(res)
    assert res.logged("SMS code not checked (twilio-verify): twilio-verify: HTTP 500")
    assert ww.show("alice")["failures"] == 0


def test_command_that_fails_or_hangs(ww, run_pam_conv, tmp_path):
    failing = tmp_path / "fail-sms"
    failing.write_text("#!/bin/sh\necho \"modem error for $(cat)\" >&2\nexit 3\n")
    failing.chmod(0o700)
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{failing}", "{{phone}}"]\n'))
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged(f"not sent (command): command {failing} exited with status 3"), res.log_text()
    assert "modem error" not in res.output  # the program's output (with the code) goes nowhere

    hanging = tmp_path / "hang-sms"
    hanging.write_text("#!/bin/sh\nsleep 60\n")
    hanging.chmod(0o700)
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{hanging}", "{{phone}}"]\n',
                               timeout_seconds=2, resend_interval_seconds=0))
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert 2 <= res.elapsed < 2 + 10, res.elapsed  # the stand-in never answers
    assert res.logged(f"command {hanging} did not finish within 2 seconds; killed"), res.log_text()
    assert subprocess.run(["pgrep", "-f", str(hanging)], capture_output=True).returncode != 0


# --- the command provider: the code is never on a command line ----------------------

# Another local user watching the process table: every /proc/PID/cmdline (readable by all)
# and every /proc/PID/environ it may read, polled without pause until its stdin closes.
POLLER = r"""
import json, os, select, sys
cmdlines, environs, passes = set(), set(), 0
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name, seen in (("cmdline", cmdlines), ("environ", environs)):
            try:
                with open("/proc/%s/%s" % (pid, name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data:
                seen.add(data.replace(b"\0", b" ").decode("utf-8", "replace"))
    passes += 1
print(json.dumps({"uid": os.getuid(), "passes": passes,
                  "cmdlines": sorted(cmdlines), "environs": sorted(environs)}))
"""


class Poller:
    """POLLER running as nobody (uid 65534, no groups) for the length of a `with`."""

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", POLLER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"})
        assert self.proc.stdout.readline() == "ready\n"
        return self

    def __exit__(self, *exc):
        out, _ = self.proc.communicate(timeout=30)  # closes its stdin: it stops
        self.seen = json.loads(out)
        return False


@pytest.fixture
def spy_sender(tmp_path) -> tuple[Path, Path]:
    """A root-owned `command` program that records its argv and its stdin, as one JSON
    line, in a root-only file, after taking 0.3 s (a modem is not instant; a watcher has
    time to see it running)."""
    record = tmp_path / "received.jsonl"
    path = tmp_path / "spy-sms"
    path.write_text(f"""#!/usr/bin/python3
import json, os, sys, time
text = sys.stdin.read()
time.sleep(0.3)
fd = os.open({str(record)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.write(fd, (json.dumps({{"argv": sys.argv[1:], "stdin": text}}) + "\\n").encode())
os.close(fd)
""")
    os.chown(path, 0, 0)
    path.chmod(0o700)
    return path, record


def test_command_provider_code_is_invisible_to_other_users(ww, run_pam_conv, spy_sender):
    """While the code is texted, another user reading every /proc/PID/cmdline (and trying
    every environ) sees the sending program, with the phone number, but never the code:
    the program got the text on its stdin, and that code logs in."""
    sender, record = spy_sender
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{sender}", "{{phone}}"]\n'))
    enroll_sms(ww)
    with Poller() as poller:
        res = run_pam_conv(ww.args(), "alice", [{"from_file": str(record), "pattern": r"is:? (\d{4,10})\b"}])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert res.logged("user alice: accepted (sms)"), res.log_text()
    [received] = [json.loads(line) for line in record.read_text().splitlines()]
    # The code that logged in, wherever the program got it.
    code = re.search(r"is (\d{6})\.", " ".join([received["stdin"], *received["argv"]])).group(1)
    seen = poller.seen
    assert seen["uid"] == 65534 and seen["passes"] > 10, seen["passes"]
    # The watcher was able to see the program while it ran (else this test could not fail).
    assert any(str(sender) in c and PHONE in c for c in seen["cmdlines"]), [c for c in seen["cmdlines"] if "spy" in c]
    word = re.compile(rf"(?<!\d){code}(?!\d)")
    leaked = [c for c in seen["cmdlines"] + seen["environs"] if word.search(c) or "login code" in c]
    assert leaked == [], leaked
    # It came on stdin, exactly the text; argv had the phone only.
    assert received["argv"] == [PHONE]
    assert re.fullmatch(r"Your login code for .+ is \d{6}\. It expires in 5 minutes\.", received["stdin"]), received
    assert stat_mode(record) == 0o600 and record.stat().st_uid == 0


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@pytest.mark.parametrize("word", ["{message}", "--text={code}"])
def test_command_argv_with_the_code_denies_before_anything_runs(ww, run_pam_conv, spy_sender, word):
    sender, record = spy_sender
    enroll_sms(ww)
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{sender}", "{{phone}}", "{word}"]\n'))
    before = ww.snapshot()
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    placeholder = "{message}" if "message" in word else "{code}"
    assert res.logged(f"line 5: sms.command.argv contains {placeholder}"), res.log_text()
    assert prompts(res) == []  # denied before any prompt: nothing offered, nothing sent
    assert not record.exists()  # the program never ran
    assert ww.snapshot() == before
    # Every command that reads the config says so too, and sends nothing.
    proc = ww.cli("sms-test", "alice", check=False)
    assert proc.returncode != 0 and f"sms.command.argv contains {placeholder}" in proc.stderr, proc.stderr
    assert not record.exists()


@pytest.mark.parametrize("digits", [4, 5])
def test_code_digits_below_six_is_a_config_error(ww, run_pam_conv, recorder, outbox, digits):
    enroll_sms(ww)
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{recorder}", "{{phone}}"]\n',
                               code_digits=digits))
    res = run_pam_conv(ww.args(), "alice", [""])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert res.logged(f"sms.code_digits = {digits} is out of range (6 to 10)"), res.log_text()
    assert texts(outbox) == []
    proc = ww.cli("sms-test", "alice", check=False)
    assert proc.returncode != 0 and f"sms.code_digits = {digits} is out of range (6 to 10)" in proc.stderr
    assert texts(outbox) == []


# --- the TOTP path stays as it was ---------------------------------------------------

def test_helper_does_not_link_libcurl():
    """libcurl is dlopen()ed when a text is sent, so TOTP logins never load it (the static
    helper links nothing and hands SMS logins to the dynamic one)."""
    for binary in helper_binaries():
        needed = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
        assert is_static(binary) or ("NEEDED" in needed and "curl" not in needed), (binary, needed)


def test_totp_user_with_provider_configured_makes_no_request(ww, run_pam_conv, twilio):
    ww.write_config(twilio.config())
    alice = ww.enroll("alice")
    res = run_pam_conv(ww.args(), "alice", [fresh_totp(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS and prompts(res) == ["Verification code: "]
    assert twilio.requests == []


# --- CLI --------------------------------------------------------------------------------

def test_enroll_sms_alone(ww):
    out = enroll_sms(ww)
    assert set(out) == {"user", "method", "phone", "recovery_codes", "recovery_codes_replaced"}
    assert out["method"] == "sms" and out["phone"] == PHONE and len(out["recovery_codes"]) == 10
    assert re.search(r"^phone \+14155550123$", ww.user_file("alice").read_text(), re.M)
    text = ww.cli("enroll", "bob", "--sms", "+32470123456").stdout
    assert "Enrolled bob for SMS codes to +32470123456." in text
    assert "Recovery codes" in text


def test_enroll_totp_and_sms_together(ww):
    out = json.loads(ww.cli("enroll", "alice", "--totp", "--sms", PHONE, "--json").stdout)
    assert set(out) == {"user", "method", "otpauth_uri", "phone", "recovery_codes", "recovery_codes_replaced"}
    assert out["method"] == "totp" and out["phone"] == PHONE


def test_adding_a_phone_keeps_the_token_and_recovery_codes(ww, run_pam):
    alice = ww.enroll("alice")
    before = ww.user_file("alice").read_text()
    out = enroll_sms(ww)
    assert out["recovery_codes"] == []
    after = ww.user_file("alice").read_text()
    assert after.replace(f"phone {PHONE}\n", "") == before
    assert run_pam(ww.args(), "alice", alice["recovery_codes"][0] + "\n").rc == 0


def test_replacing_a_phone_needs_force(ww):
    enroll_sms(ww)
    before = ww.snapshot()
    proc = ww.cli("enroll", "alice", "--sms", "+32470123456", check=False)
    assert proc.returncode != 0 and "already has the phone number ••••••0123; use --force" in proc.stderr
    assert ww.snapshot() == before
    assert enroll_sms(ww, "alice", "--force", phone="+32470123456")["phone"] == "+32470123456"
    assert ww.show("alice")["phone"] == "••••••3456"


@pytest.mark.parametrize("number,message", [
    ("+0123", "never starts with 0"),
    ("12345", "must start with '+'"),
    ("+1 555", "only digits"),
    ("+1-415-555-0123", "only digits"),
    ("+1415555CALL", "only digits"),
    ("phone", "only digits"),
    ("+1234567890123456", "16 digits"),
    ("+12345678901234567890", "20 digits"),
    ("+123456", "6 digits"),
])
def test_bad_numbers_are_refused_and_change_nothing(ww, number, message):
    ww.enroll("alice")
    before = ww.snapshot()
    for user in ("alice", "newuser"):
        proc = ww.cli("enroll", user, "--sms", number, check=False)
        assert proc.returncode != 0
        assert f"--sms {number}: " in proc.stderr and message in proc.stderr, proc.stderr
        assert "E.164" in proc.stderr
        assert proc.stdout == ""
        assert ww.snapshot() == before


def test_enroll_sms_alone_refuses_token_options(ww):
    proc = ww.cli("enroll", "alice", "--sms", PHONE, "--digits", "8", check=False)
    assert proc.returncode != 0 and "need --totp or --hotp" in proc.stderr
    proc = ww.cli("enroll", "alice", "--totp", "--hotp", "--sms", PHONE, check=False)
    assert proc.returncode != 0 and "at most one of --totp or --hotp" in proc.stderr


def test_show_and_list_mask_the_number(ww):
    ww.enroll("alice", "--sms", PHONE)
    enroll_sms(ww, "bob", phone="+32470123456")
    ww.enroll("carol")
    for args in (["show", "alice"], ["show", "alice", "--json"], ["list"], ["list", "--json"]):
        out = ww.cli(*args).stdout
        assert PHONE not in out and "4155550123" not in out, out
    shown = ww.show("alice")
    assert shown["phone"] == MASKED and shown["method"] == "totp" and shown["sms_sent_last_hour"] == 0
    assert ww.show("bob")["method"] == "sms"
    assert ww.show("carol")["phone"] is None
    assert f"phone:                {MASKED}" in ww.cli("show", "alice").stdout
    rows = [l.split() for l in ww.cli("list").stdout.splitlines()]
    assert rows[0][:3] == ["USER", "METHOD", "PHONE"]
    assert [r[:3] for r in rows[1:]] == [["alice", "totp+sms", MASKED], ["bob", "sms", "••••••3456"],
                                         ["carol", "totp", "-"]]


def test_enroll_warns_when_no_provider_is_set(ww):
    proc = ww.cli("enroll", "alice", "--sms", PHONE)
    assert 'sms.provider is "none"' in proc.stderr


def test_sms_test_through_twilio(ww, twilio, outbox):
    ww.write_config(twilio.config())
    enroll_sms(ww)
    out = ww.cli("sms-test", "alice").stdout
    assert out.strip() == f"Sent a test message to {MASKED} through twilio."
    [req] = twilio.requests
    assert req.form["To"] == PHONE and "test message from watchword" in req.form["Body"]
    assert ww.show("alice")["sms_sent_last_hour"] == 1


def test_sms_test_through_nomado_and_command(ww, nomado, recorder, outbox):
    ww.write_config(nomado.config())
    enroll_sms(ww)
    ww.cli("sms-test", "alice")
    assert "{{CODE}}" in nomado.requests[0].json["template"]
    ww.write_config(sms_config("command", f'[sms.command]\nargv = ["{recorder}", "{{phone}}"]\n'))
    ww.cli("sms-test", "alice")
    assert texts(outbox)[-1].startswith(PHONE + "\tThis is a test message from watchword")


def test_sms_test_errors(ww, twilio):
    enroll_sms(ww)
    proc = ww.cli("sms-test", "alice", check=False)
    assert proc.returncode != 0 and 'sms.provider is "none"' in proc.stderr
    ww.write_config(twilio.config(max_per_hour=1))
    ww.enroll("carol")
    proc = ww.cli("sms-test", "carol", check=False)
    assert proc.returncode != 0 and "carol has no phone number" in proc.stderr
    twilio.fail = 500
    proc = ww.cli("sms-test", "alice", check=False)
    assert proc.returncode != 0
    assert "not sent to ••••••0123 through twilio: twilio: HTTP 500" in proc.stderr, proc.stderr
    assert twilio.token not in proc.stderr
    proc = ww.cli("sms-test", "alice", check=False)
    assert proc.returncode != 0 and "sms.max_per_hour reached" in proc.stderr
    assert len(twilio.requests) == 1


def test_sms_test_help_matches_golden():
    proc = subprocess.run([str(CLI), "sms-test", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "100", "PATH": os.environ["PATH"]})
    assert proc.returncode == 0
    golden = GOLDEN / "help-sms-test.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(proc.stdout)
    assert proc.stdout == golden.read_text()
