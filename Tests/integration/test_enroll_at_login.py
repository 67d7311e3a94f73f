"""Enrollment at login (SECURITY.md, "Enrollment at login"): `enroll USER --totp
--at-next-login` and the module's `enroll_at_login`.

Through the real module and helper (pam_wrapper + the scripted pam_client): the client
reads the otpauth:// URI the module shows as info text and answers with that token's
current code, as a user's app would; the state file is read only to check what changed.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PAM_AUTH_ERR, PAM_CONV_ERR, PAM_SUCCESS, make_root_dir
from mountns import private_mounts
from ww import oathtool_totp, secret_of, wait_for_step_margin

PAM_TEXT_INFO = 4
RIGHT = {"code_from_shown_uri": True}
WRONG = {"code_from_shown_uri": True, "wrong": True}


def infos(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == PAM_TEXT_INFO]


def prompts(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] in (1, 2)]


def shown_uri(res) -> str | None:
    uris = [m for m in infos(res) if m.startswith("otpauth://")]
    assert len(uris) <= 1, uris
    return uris[0] if uris else None


def shown_recovery_codes(res) -> list[str]:
    text = infos(res)
    start = next(i for i, m in enumerate(text) if m.startswith("Your token is set up."))
    return [code for line in text[start + 1:] for code in re.findall(r"\b\d{10}\b", line)]


def state_lines(ww, user) -> list[str]:
    return ww.user_file(user).read_text().splitlines()


def test_a_pending_token_is_shown_confirmed_by_its_first_code_and_then_asked_for(ww, run_pam_conv):
    out = ww.cli("enroll", "alice", "--totp", "--at-next-login", "--json")
    made = json.loads(out.stdout)
    assert made["pending"] is True and made["method"] == "totp" and "otpauth_uri" not in made, made
    assert made["expires"] - time.time() == pytest.approx(7 * 86400, abs=120)
    assert ww.show("alice")["pending"] == "totp" and ww.show("alice")["method"] is None
    assert "totp (pending)" in ww.cli("list").stdout

    # A wrong code: denied, counted, and the same token is offered next time.
    first = run_pam_conv(ww.args(), "alice", [WRONG])
    assert first.pam_rc == PAM_AUTH_ERR, first.output
    uri = shown_uri(first)
    assert uri and uri.startswith("otpauth://totp/") and "secret=" in uri, infos(first)
    assert len([m for m in infos(first) if "█" in m or "▀" in m]) >= 10, infos(first)  # the QR code
    assert not any("\x1b" in m for m in infos(first))  # no escape sequences through PAM
    assert prompts(first) == ["Verification code: "]
    assert first.logged("user alice: denied: wrong code for the pending token (failure 1 of 5)"), first.log_text()
    assert ww.show("alice")["failures"] == 1 and ww.show("alice")["pending"] == "totp"

    wait_for_step_margin(8)
    second = run_pam_conv(ww.args(), "alice", [RIGHT, ""])
    assert second.pam_rc == PAM_SUCCESS, second.output
    assert shown_uri(second) == uri  # the user may already have scanned it
    codes = shown_recovery_codes(second)
    assert len(codes) == 10 and len(set(codes)) == 10, infos(second)
    assert prompts(second) == ["Verification code: ", "Press Enter once you have saved them: "]
    shown = ww.show("alice")
    assert (shown["method"], shown["pending"], shown["failures"], shown["recovery_codes_left"]) == ("totp", None, 0, 10)
    assert not any(l.startswith("pending") for l in state_lines(ww, "alice"))
    assert ww.audit()[-1]["outcome"] == "success" and ww.audit()[-1]["method"] == "totp"

    # Enrolled now: only the code is asked; the confirming code is not accepted again.
    again = run_pam_conv(ww.args(), "alice", [oathtool_totp(secret_of(uri))])
    assert again.pam_rc == PAM_AUTH_ERR, again.output
    assert shown_uri(again) is None and prompts(again) == ["Verification code: "]
    # A recovery code shown at enrollment works, once.
    assert run_pam_conv(ww.args(), "alice", [codes[3]]).pam_rc == PAM_SUCCESS
    assert run_pam_conv(ww.args(), "alice", [codes[3]]).pam_rc == PAM_AUTH_ERR


def test_an_expired_pending_token_leaves_the_user_not_enrolled(ww, run_pam_conv):
    ww.cli("enroll", "bob", "--totp", "--at-next-login", "--expires", "1m")
    path = ww.user_file("bob")
    text = path.read_text()
    path.write_text(re.sub(r"pending\.expires \d+", f"pending.expires {int(time.time()) - 1}", text))
    res = run_pam_conv(ww.args(), "bob", [RIGHT])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert shown_uri(res) is None and prompts(res) == []
    assert res.logged("user bob: not enrolled"), res.log_text()
    ignored = run_pam_conv(ww.args("nullok"), "bob", [])
    assert ignored.logged("outcome=not_enrolled result=PAM_IGNORE"), ignored.log_text()
    assert "hotp" not in ww.cli("list").stdout and "(pending, expired)" in ww.cli("list").stdout
    assert ww.show("bob")["pending_expired"] is True


def test_a_failed_conversation_keeps_the_token_pending(ww, run_pam_conv):
    ww.cli("enroll", "carol", "--hotp", "--at-next-login")
    res = run_pam_conv(ww.args(), "carol", [None])
    assert res.pam_rc == PAM_CONV_ERR, res.output
    uri = shown_uri(res)
    assert uri.startswith("otpauth://hotp/") and "counter=0" in uri
    res = run_pam_conv(ww.args(), "carol", [RIGHT, ""])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert shown_uri(res) == uri
    assert ww.show("carol")["method"] == "hotp" and ww.show("carol")["counter"] == 1


def test_at_next_login_refuses_an_enrolled_user_without_force_and_force_replaces_everything(ww, run_pam_conv):
    ww.enroll("dave")
    before = ww.user_file("dave").read_bytes()
    res = ww.cli("enroll", "dave", "--totp", "--at-next-login", check=False)
    assert res.returncode != 0 and "already enrolled" in res.stderr, res.stderr
    assert ww.user_file("dave").read_bytes() == before
    res = ww.cli("enroll", "dave", "--totp", "--at-next-login", "--force")
    assert "Removed dave's token, recovery codes and phone number" in res.stdout, res.stdout
    shown = ww.show("dave")
    assert (shown["method"], shown["pending"], shown["recovery_codes_left"]) == (None, "totp", 0)
    assert run_pam_conv(ww.args(), "dave", [RIGHT, ""]).pam_rc == PAM_SUCCESS


@pytest.mark.parametrize("args,message", [
    (["--at-next-login"], "give exactly one of --totp or --hotp"),
    (["--totp", "--at-next-login", "--sms", "+14155550123"], "takes neither --sms nor --secret"),
    (["--totp", "--at-next-login", "--secret", "JBSWY3DPEHPK3PXPJBSWY3DP"], "takes neither --sms nor --secret"),
    (["--totp", "--expires", "7d"], "--expires applies to --at-next-login only"),
    (["--totp", "--at-next-login", "--expires", "91d"], "from 1m to 90d"),
    (["--totp", "--at-next-login", "--expires", "7"], "from 1m to 90d"),
    (["--totp", "--at-next-login", "--expires=-1d"], "from 1m to 90d"),
])
def test_bad_at_next_login_arguments_are_refused(ww, args, message):
    res = ww.cli("enroll", "erin", *args, check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr
    assert not ww.user_file("erin").exists()


# --- enroll_at_login ----------------------------------------------------------------

@pytest.fixture
def accounts(tmp_path):
    """The test's accounts (wwcarol), shown to the module and helper only."""
    passwd = tmp_path / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text()
                      + "wwcarol:x:64311:64311:carol:/nonexistent:/bin/sh\n")
    enter = private_mounts(binds={"/etc/passwd": passwd})
    assert subprocess.run(["id", "wwcarol"], preexec_fn=enter, capture_output=True).returncode == 0
    assert subprocess.run(["id", "wwcarol"], capture_output=True).returncode != 0
    return enter


def test_enroll_at_login_gives_an_unenrolled_user_a_token_at_login(ww, run_pam_conv, accounts):
    make_root_dir(ww.state, 0o700)  # as the package makes it: nothing enrolled, no users/ yet
    args = ww.args("enroll_at_login")
    first = run_pam_conv(args, "wwcarol", [WRONG], preexec_fn=accounts)
    assert first.pam_rc == PAM_AUTH_ERR, first.output
    uri = shown_uri(first)
    assert uri and "wwcarol" in uri
    assert ww.show("wwcarol")["pending"] == "totp" and ww.show("wwcarol")["method"] is None

    wait_for_step_margin(8)
    second = run_pam_conv(args, "wwcarol", [RIGHT, None], preexec_fn=accounts)  # even if that last prompt fails
    assert second.pam_rc == PAM_SUCCESS, second.output
    assert shown_uri(second) == uri
    assert len(shown_recovery_codes(second)) == 10
    assert ww.show("wwcarol")["method"] == "totp"
    # Enrolled now: asked for the code only, with or without the option.
    for extra in ("enroll_at_login", ""):
        res = run_pam_conv(ww.args(extra), "wwcarol", [oathtool_totp(secret_of(uri))], preexec_fn=accounts)
        assert res.pam_rc == PAM_AUTH_ERR and shown_uri(res) is None, res.output  # that code was used


def test_enroll_at_login_offers_nothing_to_a_name_with_no_account(ww, run_pam_conv, accounts):
    make_root_dir(ww.state, 0o700)
    res = run_pam_conv(ww.args("enroll_at_login"), "wwghost", [RIGHT], preexec_fn=accounts)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert shown_uri(res) is None and prompts(res) == []
    assert res.logged("user wwghost: no system account: no token offered"), res.log_text()
    assert not ww.user_file("wwghost").exists()


def test_enroll_at_login_never_touches_an_enrolled_user(ww, run_pam_conv, accounts):
    secret = ww.enroll("wwcarol")["secret"]
    before = ww.user_file("wwcarol").read_bytes()
    res = run_pam_conv(ww.args("enroll_at_login"), "wwcarol", ["000000"], preexec_fn=accounts)
    assert res.pam_rc == PAM_AUTH_ERR and shown_uri(res) is None, res.output
    assert ww.show("wwcarol")["pending"] is None
    assert ww.user_file("wwcarol").read_bytes() != before  # the failure was counted...
    assert secret_of(ww.cli("export", "wwcarol", "--otpauth", "--no-qr").stdout.split()[0]) == secret  # ...the token kept


# --- enable --enroll-at-login and doctor ----------------------------------------------

@pytest.fixture
def tree(tmp_path, pam_module):
    import shutil
    from systree import Tree
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        pytest.skip("openssh-server is needed")
    return Tree(tmp_path / "tree", enrolled=())


def test_enable_with_enroll_at_login_needs_nobody_enrolled_and_doctor_checks_the_first_factor(tree):
    from systree import findings
    # Nobody is enrolled: without the option enable refuses (all would be shut out).
    refused = tree.cli("enable", "sudo")
    assert refused.returncode != 0 and "--enroll-at-login" in refused.stderr, refused.stderr
    res = tree.cli("enable", "sudo", "--enroll-at-login")
    assert res.returncode == 0, res.stderr
    line = [l for l in tree.text("/etc/pam.d/sudo").splitlines() if "pam_watchword.so" in l][0]
    assert "pam_watchword.so enroll_at_login" in line, line
    rc, checks = tree.doctor()
    assert ("/etc/pam.d/sudo:7: enroll_at_login: a user with no token sets one up at login, after the first factor"
            in findings(checks, "ok", "pam.sudo")), checks
    assert findings(checks, "fail", "users") == [], checks  # nobody enrolled is expected here

    # The module with nothing before it that checks a password: a warning.
    text = tree.text("/etc/pam.d/sudo").replace("@include common-auth", "auth required pam_permit.so")
    tree.write("/etc/pam.d/sudo", text)
    rc, checks = tree.doctor()
    assert any("enroll_at_login, but nothing before the module checks a password" in f
               for f in findings(checks, "warn", "pam.sudo")), checks


def test_sshd_with_a_key_first_is_a_first_factor_for_enroll_at_login(tree):
    from systree import findings
    res = tree.cli("enable", "sshd", "--with-publickey", "--enroll-at-login")
    assert res.returncode == 0, res.stderr
    rc, checks = tree.doctor()
    assert "enroll_at_login: the public key is the first factor of every way in" in findings(checks, "ok", "sshd.bypass"), checks
    assert not any("enroll_at_login" in f for f in findings(checks, "warn")), checks


def test_the_token_is_shown_under_pam_silent_as_the_prompt_is(ww, run_pam_conv):
    """sudo authenticates with PAM_SILENT by default (its pam_silent); the token must still
    reach the user, or the prompt after it cannot be answered."""
    PAM_SILENT = 0x8000
    ww.cli("enroll", "frank", "--totp", "--at-next-login")
    wait_for_step_margin(8)
    res = run_pam_conv(ww.args(), "frank", [RIGHT, ""], flags=PAM_SILENT)
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert shown_uri(res) and len(shown_recovery_codes(res)) == 10
    # Plain info stays silenced: an enrolled user's recovery-code notice is not shown.
    codes = shown_recovery_codes(res)
    silent = run_pam_conv(ww.args(), "frank", [codes[0]], flags=PAM_SILENT)
    assert silent.pam_rc == PAM_SUCCESS and infos(silent) == [], silent.messages
    loud = run_pam_conv(ww.args(), "frank", [codes[1]])
    assert loud.pam_rc == PAM_SUCCESS and infos(loud) == ["Recovery code accepted; it cannot be used again."], loud.messages


def test_status_and_list_show_who_has_a_token_waiting(ww, run_pam_conv):
    ww.enroll("alice")
    ww.cli("enroll", "bob", "--totp", "--at-next-login", "--expires", "2d")
    status = json.loads(ww.cli("status", "--json").stdout)
    assert list(status["pending"]) == ["bob"], status
    assert status["pending"]["bob"] - time.time() == pytest.approx(2 * 86400, abs=120)
    text = ww.cli("status").stdout
    assert re.search(r"^Pending enrollment:\s+bob \(until ", text, re.M), text
    rows = {line.split()[0]: line for line in ww.cli("list").stdout.splitlines()[1:]}
    assert "totp (pending)" in rows["bob"] and "totp (pending)" not in rows["alice"], rows
    # Once bob confirms it, nobody is waiting.
    assert run_pam_conv(ww.args(), "bob", [RIGHT, ""]).pam_rc == PAM_SUCCESS
    assert json.loads(ww.cli("status", "--json").stdout)["pending"] == {}
    assert re.search(r"^Pending enrollment:\s+none$", ww.cli("status").stdout, re.M)
