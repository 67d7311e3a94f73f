"""The real sudo with pam_watchword.so: a private /etc/pam.d/sudo and /etc/sudoers are
bind-mounted inside `unshare -m`, so the machine's own files are never touched."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from ww import Watchword, fresh_totp, fresh_totp as fresh_code

USER = "nobody"  # exists everywhere; needs no password since the private stack asks only for the code


@pytest.fixture
def ww(tmp_path, helper_dir, pam_module) -> Watchword:
    if not shutil.which("sudo") or not shutil.which("unshare"):
        pytest.skip("sudo and unshare are needed")
    return Watchword(tmp_path / "ww", helper_dir)


def run_sudo(ww: Watchword, pam_module, tmp_path, stdin: str, module_args: str = "") -> subprocess.CompletedProcess:
    pam = tmp_path / "sudo.pam"
    pam.write_text(
        "#%PAM-1.0\n"
        f"auth required {pam_module} {ww.args(module_args)}\n"
        "account required pam_permit.so\n"
        "session required pam_permit.so\n")
    sudoers = tmp_path / "sudoers"
    sudoers.write_text(f"Defaults !lecture, passwd_tries=1, !syslog\n{USER} ALL=(root) ALL\n")
    sudoers.chmod(0o440)
    script = (
        f"mount --bind {pam} /etc/pam.d/sudo && mount --bind {sudoers} /etc/sudoers && "
        f"exec setpriv --reuid={USER} --regid=nogroup --clear-groups -- sudo -S -k /usr/bin/id -u")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_sudo_runs_the_command_with_the_right_code_only_once(ww, pam_module, tmp_path):
    user = ww.enroll(USER)
    code = fresh_code(user["secret"])
    ok = run_sudo(ww, pam_module, tmp_path, code + "\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "0"
    assert "Verification code:" in ok.stderr
    replay = run_sudo(ww, pam_module, tmp_path, code + "\n")
    assert replay.returncode != 0 and replay.stdout == "", replay.stderr


def test_sudo_refuses_a_wrong_code(ww, pam_module, tmp_path):
    ww.enroll(USER)
    res = run_sudo(ww, pam_module, tmp_path, "000000\n")
    assert res.returncode != 0 and res.stdout == "", res.stderr
    assert ww.show(USER)["failures"] == 1


def test_sudo_refuses_a_locked_out_user_without_a_prompt(ww, pam_module, tmp_path):
    user = ww.enroll(USER)
    ww.write_config("[policy]\nmax_failures = 1\nlockout_seconds = 600\n")
    assert run_sudo(ww, pam_module, tmp_path, "000000\n").returncode != 0
    res = run_sudo(ww, pam_module, tmp_path, fresh_code(user["secret"]) + "\n")
    assert res.returncode != 0 and res.stdout == ""
    assert "Verification code:" not in res.stderr
    # The right code was not even checked: a success would have cleared the failure.
    assert ww.show(USER)["failures"] == 1 and ww.show(USER)["locked"] is True


def test_sudo_shows_a_pending_token_and_enrolls_with_its_first_code(ww, pam_module, tmp_path):
    """The info-text path through the real sudo on a terminal: the user reads the URI sudo
    prints, types the code, and sees the recovery codes."""
    import re
    import pexpect
    from ww import oathtool_totp, secret_of, wait_for_step_margin
    ww.cli("enroll", USER, "--totp", "--at-next-login")
    pam = tmp_path / "sudo.pam"
    pam.write_text("#%PAM-1.0\n"
                   f"auth required {pam_module} {ww.args()}\n"
                   "account required pam_permit.so\nsession required pam_permit.so\n")
    sudoers = tmp_path / "sudoers"
    sudoers.write_text(f"Defaults !lecture, passwd_tries=1, !syslog\n{USER} ALL=(root) ALL\n")
    sudoers.chmod(0o440)
    script = (f"mount --bind {pam} /etc/pam.d/sudo && mount --bind {sudoers} /etc/sudoers && "
              f"exec setpriv --reuid={USER} --regid=nogroup --clear-groups -- sudo -k /usr/bin/id -u")
    wait_for_step_margin(8)
    child = pexpect.spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", script],
                          encoding="utf-8", timeout=30)
    child.expect("Verification code: ")
    shown = child.before
    found = re.search(r"otpauth://totp/\S+", shown)
    assert found, repr(shown)
    uri = found.group(0)
    assert "▀" in shown or "█" in shown, shown  # the QR code reached the terminal
    child.sendline(oathtool_totp(secret_of(uri)))
    child.expect("Press Enter once you have saved them: ")
    codes = child.before
    child.sendline("")
    child.expect(pexpect.EOF)
    out = codes + child.before
    child.close()
    assert child.exitstatus == 0, out
    assert "Your token is set up." in out and len(re.findall(r"\b\d{10}\b", out)) == 10, out
    assert out.strip().endswith("0")  # id -u ran as root
    assert ww.show(USER)["method"] == "totp" and ww.show(USER)["pending"] is None
