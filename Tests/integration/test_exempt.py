"""Exemptions that are meant: the module's exempt_group= and exempt_from= (SECURITY.md,
"Exemptions").

An exempt login is not asked for a code and ends as PAM_IGNORE (what nullok gives an
unenrolled user), logged and audited as `exempt` with the reason; everybody else is asked
as before. The real module runs the real helper; group membership comes from the system's
user database, which the test gives its own users and groups by bind-mounting copies of
/etc/passwd and /etc/group in a private mount namespace (the machine is not changed).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_SUCCESS
from mountns import private_mounts
from ww import fresh_totp, secret_of

# wwdeploy: primary group wwbots; wwops: supplementary member of wwbots; wwalice: neither.
PASSWD = [
    "wwdeploy:x:64301:64300:deploy bot:/nonexistent:/usr/sbin/nologin",
    "wwops:x:64302:64302:ops:/nonexistent:/bin/sh",
    "wwalice:x:64303:64303:alice:/nonexistent:/bin/sh",
]
GROUP = ["wwbots:x:64300:wwops", "wwops:x:64302:", "wwalice:x:64303:"]


@pytest.fixture
def accounts(tmp_path):
    """A preexec_fn that shows the test's accounts to the module and helper."""
    passwd = tmp_path / "passwd"
    group = tmp_path / "group"
    passwd.write_text(Path("/etc/passwd").read_text() + "\n".join(PASSWD) + "\n")
    group.write_text(Path("/etc/group").read_text() + "\n".join(GROUP) + "\n")
    enter = private_mounts(binds={"/etc/passwd": passwd, "/etc/group": group})
    inside = subprocess.run(["id", "-Gn", "wwops"], preexec_fn=enter, capture_output=True, text=True)
    assert inside.returncode == 0 and "wwbots" in inside.stdout.split(), inside
    outside = subprocess.run(["id", "wwops"], capture_output=True, text=True)
    assert outside.returncode != 0, "wwops exists on this machine: the test cannot tell"
    return enter


PAM_PERM_DENIED = 6


def ignored(res) -> bool:
    """The module returned PAM_IGNORE; with no other module in the stack libpam then
    answers PAM_PERM_DENIED (nothing said yes)."""
    return res.pam_rc == PAM_PERM_DENIED and res.logged("outcome=exempt result=PAM_IGNORE")


def last_audit(ww) -> dict:
    return ww.audit()[-1]


def test_members_of_an_exempt_group_are_not_asked_and_are_audited(ww, run_pam_conv, accounts):
    ww.enroll("wwops")  # enrolled or not, a member is not asked
    for user in ("wwdeploy", "wwops"):  # primary group, supplementary group
        res = run_pam_conv(ww.args("exempt_group=wwbots"), user, [], preexec_fn=accounts)
        assert ignored(res), res.output
        assert not res.messages, res.messages  # no prompt, no text
        assert res.logged(f"user {user}: exempt: member of group wwbots"), res.log_text()
        assert res.logged("outcome=exempt result=PAM_IGNORE"), res.log_text()
        entry = last_audit(ww)
        assert (entry["user"], entry["outcome"], entry["reason"]) == (
            user, "exempt", "exempt: member of group wwbots"), entry
    # PAM_IGNORE lets the rest of the stack decide: with nothing else, libpam denies.
    res = run_pam_conv(ww.args("exempt_group=wwbots"), "wwdeploy", [], preexec_fn=accounts,
                       extra_lines=["auth required pam_permit.so"])
    assert res.pam_rc == PAM_SUCCESS, res.output


def test_non_members_are_asked_as_before(ww, run_pam_conv, accounts):
    uri = ww.enroll("wwalice")["otpauth_uri"]
    args = ww.args("exempt_group=wwbots exempt_group=wwops")
    res = run_pam_conv(args, "wwalice", ["000000"], preexec_fn=accounts)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert [m["msg"] for m in res.messages if m["style"] == 1] == ["Verification code: "]
    assert ww.show("wwalice")["failures"] == 1
    res = run_pam_conv(args, "wwalice", [fresh_totp(secret_of(uri))], preexec_fn=accounts)
    assert res.pam_rc == PAM_SUCCESS, res.output
    # Not enrolled and not exempt: refused, as without the option.
    res = run_pam_conv(args, "nobody", [], preexec_fn=accounts)
    assert res.pam_rc == PAM_AUTH_ERR, res.output


def test_a_group_that_does_not_exist_exempts_nobody(ww, run_pam_conv, accounts):
    ww.enroll("wwdeploy")
    res = run_pam_conv(ww.args("exempt_group=wwnosuchgroup"), "wwdeploy", ["000000"], preexec_fn=accounts)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged("exempt_group=wwnosuchgroup: no such group"), res.log_text()


@pytest.mark.parametrize("rhost,exempt", [
    ("10.1.2.3", True),
    ("10.255.255.255", True),
    ("11.0.0.1", False),
    ("2001:db8:1::5", True),
    ("2001:db9::5", False),
    ("::ffff:10.1.2.3", True),       # an IPv4 client on a dual-stack socket
    ("ten.example.org", False),      # a name never matches: DNS is not ours
    ("10.1.2.3.nip.io", False),
    ("fe80::1%eth0", False),         # a zone is not an address literal
    ("", False),                     # no remote host (a local sudo)
])
def test_exempt_from_matches_addresses_only(ww, run_pam_conv, rhost, exempt):
    ww.enroll("alice")
    args = ww.args("exempt_from=10.0.0.0/8 exempt_from=2001:db8::/32")
    res = run_pam_conv(args, "alice", ["000000"], items={"rhost": rhost})
    if exempt:
        assert ignored(res), res.output
        assert not res.messages
        assert last_audit(ww)["reason"].startswith(f"exempt: from {rhost} in "), last_audit(ww)
        assert ww.show("alice")["failures"] == 0
    else:
        assert res.pam_rc == PAM_AUTH_ERR, res.output
        assert ww.show("alice")["failures"] == 1


@pytest.mark.parametrize("value", ["10.1.2.3/8", "10.0.0.0/33", "2001:db8::/129", "10.0.0/8",
                                   "10.0.0.0/", "10.0.0.0/8/8", "::1/0128", "10.0.0.0/8;x",
                                   "ten.example.org/8", "10.0.0.0/+8", "1" * 70])
def test_a_range_the_helper_cannot_read_denies_every_login(ww, run_pam_conv, value):
    ww.enroll("alice")
    res = run_pam_conv(ww.args(f"exempt_from={value}"), "alice", ["000000"], items={"rhost": "10.1.2.3"})
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert res.logged("exempt_from="), res.log_text()
    assert ww.show("alice")["failures"] == 0


@pytest.mark.parametrize("option", ["exempt_from=", "exempt_group=", "exempt_group=" + "g" * 256,
                                    "exempt_from=" + "1" * 256])
def test_a_value_no_header_line_can_carry_is_refused_by_the_module(ww, run_pam_conv, option):
    """Empty or over 255 bytes: refused before the helper runs. What a value means (a group,
    an address range) is the helper's to read, in one place (the test above)."""
    ww.enroll("alice")
    res = run_pam_conv(ww.args(option), "alice", ["000000"], items={"rhost": "10.1.2.3"})
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert res.logged("invalid option"), res.log_text()


def test_more_than_sixteen_of_one_option_are_refused(ww, run_pam_conv):
    ww.enroll("alice")
    many = " ".join(f"exempt_from=10.{i}.0.0/16" for i in range(17))
    res = run_pam_conv(ww.args(many), "alice", ["000000"], items={"rhost": "10.1.2.3"})
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    sixteen = " ".join(f"exempt_from=10.{i}.0.0/16" for i in range(16))
    res = run_pam_conv(ww.args(sixteen), "alice", [], items={"rhost": "10.15.2.3"})
    assert ignored(res), res.output


# --- enable writes them, doctor lists them as meant ------------------------------

SUDO = "/etc/pam.d/sudo"


@pytest.fixture
def tree(tmp_path, pam_module):
    from systree import Tree
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        pytest.skip("openssh-server is needed")
    tree = Tree(tmp_path / "tree")
    tree.write("/etc/group", "root:x:0:\nwwbots:x:64300:deploy,ci\n")
    return tree


def test_enable_writes_the_exemptions_and_doctor_lists_them_without_a_fail(tree):
    from systree import findings
    res = tree.cli("enable", "sudo", "--exempt-group", "wwbots", "--exempt-from", "10.0.0.0/8",
                   "--exempt-from", "2001:DB8::/32")
    assert res.returncode == 0, res.stderr
    line = [l for l in tree.text(SUDO).splitlines() if "pam_watchword.so" in l][0]
    assert "pam_watchword.so exempt_group=wwbots exempt_from=10.0.0.0/8 exempt_from=2001:db8::/32" in line, line
    rc, checks = tree.doctor()
    assert findings(checks, "fail") == [], checks
    assert findings(checks, "ok", "pam.sudo")[1] == (
        "/etc/pam.d/sudo:7: exempt by intent, not asked for a code: group wwbots (deploy, ci); "
        "logins from 10.0.0.0/8; logins from 2001:db8::/32"), checks
    assert findings(checks, "warn", "pam.sudo") == [], checks


def test_doctor_warns_when_an_exempt_group_holds_sudoers_or_does_not_exist(tree):
    from systree import findings
    tree.write("/etc/group", tree.text("/etc/group") + "sudo:x:27:ci,alice\n")
    assert tree.cli("enable", "sudo", "--exempt-group", "wwbots").returncode == 0
    tree.write(SUDO, tree.read(SUDO).replace(b"exempt_group=wwbots", b"exempt_group=wwbots exempt_group=gone"))
    rc, checks = tree.doctor()
    assert findings(checks, "fail") == [], checks
    assert findings(checks, "warn", "pam.sudo") == [
        "/etc/pam.d/sudo:7: exempt_group=wwbots holds users who may use sudo (ci): they are never asked for a code",
        "/etc/pam.d/sudo:7: exempt_group=gone: no such group, so it exempts nobody"], checks


def test_doctor_fails_a_range_that_denies_every_login(tree):
    from systree import findings
    assert tree.cli("enable", "sudo").returncode == 0
    tree.write(SUDO, tree.read(SUDO).replace(b"pam_watchword.so", b"pam_watchword.so exempt_from=10.1.2.3/8"))
    rc, checks = tree.doctor()
    assert rc != 0
    assert findings(checks, "fail", "pam.sudo") == [
        "/etc/pam.d/sudo:7: exempt_from=10.1.2.3/8: has address bits set past the /8: "
        "every login through this line is refused"], checks


@pytest.mark.parametrize("args,message", [
    (["--exempt-group", "nosuchgroup"], "--exempt-group nosuchgroup: there is no such group in /etc/group"),
    (["--exempt-from", "10.1.2.3/8"], "--exempt-from: exempt_from=10.1.2.3/8: has address bits set past the /8"),
    (["--exempt-from", "db.example.org"], "not an IPv4 or IPv6 address or network"),
])
def test_enable_refuses_exemptions_it_cannot_write_and_changes_nothing(tree, args, message):
    before = tree.etc_snapshot()
    res = tree.cli("enable", "sudo", *args)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr
    assert tree.etc_snapshot() == before


def test_key_accounts_without_a_code_are_warned_about_and_reported(tree):
    from systree import findings
    tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
               "deploy:x:1001:1001::/home/deploy:/bin/sh\nci:x:1002:64300::/home/ci/:/bin/sh\n"
               "alice:x:1003:1003::/home/alice:/bin/bash\nnokey:x:1004:1004::/home/nokey:/bin/sh\n")
    for home in ("/root", "/home/deploy", "/home/ci", "/home/alice"):
        tree.write(f"{home}/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test\n", mode=0o600)
    res = tree.cli("enable", "sshd", "--with-publickey")
    assert res.returncode == 0, res.stderr
    # alice is enrolled (the tree's default user); nokey has no key.
    assert ("log in with SSH keys and are neither enrolled nor exempt, so sshd will ask them for a code "
            "they do not have: root, deploy, ci (root only where PermitRootLogin allows it") in res.stderr, res.stderr
    rc, checks = tree.doctor()
    assert findings(checks, "warn", "users.keys") == [
        "log in with SSH keys but are neither enrolled nor exempt, so sshd asks them for a code they do not have: "
        "root, deploy, ci (root only where PermitRootLogin allows it)"], checks
    # Exempting the bots' group leaves root.
    res = tree.cli("enable", "sshd", "--with-publickey", "--exempt-group", "wwbots")
    assert res.returncode == 0, res.stderr
    assert "they do not have: root (root only" in res.stderr, res.stderr
    rc, checks = tree.doctor()
    assert findings(checks, "warn", "users.keys") == [
        "log in with SSH keys but are neither enrolled nor exempt, so sshd asks them for a code they do not have: "
        "root (root only where PermitRootLogin allows it)"], checks
    assert findings(checks, "fail") == [], checks
