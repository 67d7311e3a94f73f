"""`watchword enable|disable sshd|sudo --root TREE` on Debian 12's own files: the exact files
it leaves, idempotence, byte-exact restoration, backups, and every refusal (nobody enrolled,
an earlier `sufficient`, an sshd_config whose values would win over the drop-in, ...).
The sshd checks run the machine's real `sshd -t` and `sshd -T` over the tree's config."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from systree import DEBIAN, Tree, fixture

SUDO = "/etc/pam.d/sudo"
SSHD = "/etc/pam.d/sshd"
DROP_IN = "/etc/ssh/sshd_config.d/watchword.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"


@pytest.fixture
def tree(tmp_path, pam_module) -> Tree:
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        pytest.skip("openssh-server is needed")
    return Tree(tmp_path / "tree")


def debian(inner: str) -> bytes:
    return (DEBIAN / inner.lstrip("/")).read_bytes()


def test_enable_sudo_adds_one_line_after_common_auth_and_backs_up(tree):
    res = tree.cli("enable", "sudo")
    assert res.returncode == 0, res.stderr
    assert tree.read(SUDO) == fixture("expected/sudo")
    [backup] = tree.backups()
    assert backup.read_bytes() == debian(SUDO)
    assert str(backup).endswith("/etc/pam.d/sudo")
    assert "backed up /etc/pam.d/sudo to /var/backups/watchword/" in res.stdout
    assert (tree.path(SUDO).stat().st_mode & 0o7777) == 0o644


def test_enable_is_idempotent(tree):
    assert tree.cli("enable", "sudo").returncode == 0
    assert tree.cli("enable", "sshd", "--with-publickey").returncode == 0
    before, backups = tree.etc_snapshot(), tree.backups()
    for args in (["enable", "sudo"], ["enable", "sshd", "--with-publickey"]):
        again = tree.cli(*args)
        assert again.returncode == 0, again.stderr
        assert "nothing changed" in again.stdout
    assert tree.etc_snapshot() == before
    assert tree.backups() == backups  # no new backup when nothing changes


def test_enable_sshd_password_then_code(tree):
    res = tree.cli("enable", "sshd")
    assert res.returncode == 0, res.stderr
    assert tree.read(SSHD) == fixture("expected/sshd-password")
    assert tree.read(DROP_IN) == fixture("expected/watchword.conf-password")
    # Debian's own 'KbdInteractiveAuthentication no' comes after the Include: the drop-in wins.
    assert ("note: /etc/ssh/sshd_config:62 'KbdInteractiveAuthentication no' is read after the drop-in, "
            "so sshd ignores it") in res.stdout
    assert "sshd -T: usepam yes, kbdinteractiveauthentication yes, authenticationmethods keyboard-interactive" in res.stdout
    assert tree.read(SSHD_CONFIG) == debian(SSHD_CONFIG)


def test_enable_sshd_with_publickey_replaces_common_auth(tree):
    res = tree.cli("enable", "sshd", "--with-publickey")
    assert res.returncode == 0, res.stderr
    assert tree.read(SSHD) == fixture("expected/sshd-publickey")
    assert tree.read(DROP_IN) == fixture("expected/watchword.conf-publickey")
    assert "authenticationmethods publickey,keyboard-interactive" in res.stdout


def test_switching_sshd_modes_does_not_stack_edits(tree):
    assert tree.cli("enable", "sshd").returncode == 0
    assert tree.cli("enable", "sshd", "--with-publickey").returncode == 0
    assert tree.read(SSHD) == fixture("expected/sshd-publickey")
    assert tree.read(DROP_IN) == fixture("expected/watchword.conf-publickey")
    assert tree.cli("enable", "sshd").returncode == 0
    assert tree.read(SSHD) == fixture("expected/sshd-password")
    assert tree.read(DROP_IN) == fixture("expected/watchword.conf-password")


@pytest.mark.parametrize("args", [["sudo"], ["sshd"], ["sshd", "--with-publickey"]])
def test_disable_restores_byte_for_byte(tree, args):
    original = tree.etc_snapshot()
    assert tree.cli("enable", *args).returncode == 0
    assert tree.etc_snapshot() != original
    res = tree.cli("disable", args[0])
    assert res.returncode == 0, res.stderr
    assert tree.etc_snapshot() == original
    assert not tree.path(DROP_IN).exists()
    again = tree.cli("disable", args[0])
    assert again.returncode == 0 and "nothing of 'watchword enable' to take out" in again.stdout
    assert tree.etc_snapshot() == original


def test_disable_keeps_what_the_admin_changed_meanwhile(tree):
    assert tree.cli("enable", "sudo").returncode == 0
    tree.write(SUDO, tree.read(SUDO) + b"session optional pam_echo.so hello\n")
    assert tree.cli("disable", "sudo").returncode == 0
    assert tree.read(SUDO) == debian(SUDO) + b"session optional pam_echo.so hello\n"


def test_refuses_while_nobody_is_enrolled(tmp_path, pam_module):
    tree = Tree(tmp_path / "tree", enrolled=())
    before = tree.etc_snapshot()
    for service in ("sudo", "sshd"):
        res = tree.cli("enable", service)
        assert res.returncode == 1
        assert "nobody is enrolled yet" in res.stderr and "--nullok" in res.stderr, res.stderr
    assert tree.etc_snapshot() == before and tree.backups() == []

    nullok = tree.cli("enable", "sudo", "--nullok")
    assert nullok.returncode == 0, nullok.stderr
    assert "auth       required   pam_watchword.so nullok   # added by watchword enable\n" in tree.text(SUDO)

    forced = tree.cli("enable", "sshd", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning: nobody is enrolled yet" in forced.stderr
    assert tree.read(SSHD) == fixture("expected/sshd-password")


def test_refuses_a_stack_with_an_earlier_sufficient(tree):
    tree.write(SUDO, fixture("variants/sudo-sufficient"))
    before = tree.etc_snapshot()
    res = tree.cli("enable", "sudo")
    assert res.returncode == 1
    assert ("/etc/pam.d/sudo would not make sudo ask for the code: /etc/pam.d/sudo:7 "
            "'auth sufficient pam_ssh_agent_auth.so file=/etc/security/authorized_keys' can end or jump past "
            "the stack before /etc/pam.d/sudo:9 is reached") in res.stderr, res.stderr
    assert tree.etc_snapshot() == before
    forced = tree.cli("enable", "sudo", "--force")
    assert forced.returncode == 0 and "(going on: --force)" in forced.stderr
    assert "pam_watchword.so" in tree.text(SUDO)


def test_refuses_when_sshd_config_would_win_over_the_drop_in(tree):
    tree.write(SSHD_CONFIG, fixture("variants/sshd_config-kbd-first"))
    before = tree.etc_snapshot()
    res = tree.cli("enable", "sshd")
    assert res.returncode == 1
    assert ("the drop-in would not take effect: /etc/ssh/sshd_config:13 'KbdInteractiveAuthentication no' "
            "comes before the drop-in, so sshd uses it") in res.stderr, res.stderr
    assert tree.etc_snapshot() == before and not tree.path(DROP_IN).exists()


def test_refuses_when_an_earlier_drop_in_would_win(tree):
    tree.write("/etc/ssh/sshd_config.d/10-hardening.conf", "AuthenticationMethods publickey\n")
    res = tree.cli("enable", "sshd")
    assert res.returncode == 1
    assert ("/etc/ssh/sshd_config.d/10-hardening.conf:1 'AuthenticationMethods publickey' comes before the drop-in, "
            "so sshd uses it") in res.stderr, res.stderr
    assert not tree.path(DROP_IN).exists() and tree.read(SSHD) == debian(SSHD)


def test_refuses_when_sshd_t_rejects_the_config(tree):
    tree.write(SSHD_CONFIG, debian(SSHD_CONFIG) + b"NoSuchOption yes\n")
    before = tree.etc_snapshot()
    res = tree.cli("enable", "sshd")
    assert res.returncode == 1
    assert "sshd -t rejects the configuration with the new drop-in, so nothing was changed" in res.stderr
    assert "NoSuchOption" in res.stderr
    assert tree.etc_snapshot() == before


def test_refuses_without_the_include_line(tree):
    text = debian(SSHD_CONFIG).replace(b"Include /etc/ssh/sshd_config.d/*.conf\n", b"")
    tree.write(SSHD_CONFIG, text)
    res = tree.cli("enable", "sshd")
    assert res.returncode == 1
    assert "does not include /etc/ssh/sshd_config.d/watchword.conf" in res.stderr
    assert not tree.path(DROP_IN).exists()


def test_refuses_to_overwrite_a_foreign_drop_in(tree):
    tree.write(DROP_IN, "PasswordAuthentication no\n")
    res = tree.cli("enable", "sshd")
    assert res.returncode == 1 and "was not written by watchword" in res.stderr
    assert tree.text(DROP_IN) == "PasswordAuthentication no\n"
    assert tree.read(SSHD) == debian(SSHD)


def test_refuses_when_module_or_helper_is_missing(tree):
    tree.path("/lib/x86_64-linux-gnu/security/pam_watchword.so").unlink()
    res = tree.cli("enable", "sudo")
    assert res.returncode == 1 and "pam_watchword.so is not in /lib/x86_64-linux-gnu/security" in res.stderr
    tree.path("/lib/x86_64-linux-gnu/security/pam_watchword.so").write_bytes(b"")
    tree.helper.chmod(0o777)
    res = tree.cli("enable", "sudo")
    assert res.returncode == 1
    assert "the helper: /usr/libexec/watchword/watchword-helper has mode 0777" in res.stderr
    assert tree.read(SUDO) == debian(SUDO)


def test_a_hand_written_module_line_is_left_alone(tree):
    hand = debian(SUDO).replace(b"@include common-auth\n", b"@include common-auth\nauth required pam_watchword.so debug\n")
    tree.write(SUDO, hand)
    res = tree.cli("enable", "sudo")
    assert res.returncode == 0 and "already names pam_watchword.so" in res.stderr
    assert tree.read(SUDO) == hand
    off = tree.cli("disable", "sudo")
    assert off.returncode == 1
    assert "/etc/pam.d/sudo:7 still names pam_watchword.so" in off.stderr and "remove it by hand" in off.stderr
    assert tree.read(SUDO) == hand


def test_state_dir_and_config_become_module_options(tree):
    shutil.copytree(tree.path("/var/lib/watchword"), tree.path("/srv/ww"))
    tree.write("/srv/ww.toml", "", mode=0o600)
    res = tree.cli("enable", "sudo", "--state-dir", "/srv/ww", "--config", "/srv/ww.toml")
    assert res.returncode == 0, res.stderr
    assert ("auth       required   pam_watchword.so state_dir=/srv/ww config=/srv/ww.toml   "
            "# added by watchword enable\n") in tree.text(SUDO)


def test_with_publickey_is_for_sshd_only(tree):
    res = tree.cli("enable", "sudo", "--with-publickey")
    assert res.returncode != 0 and "--with-publickey is for sshd only" in res.stderr


def test_enabled_debian_sudo_asks_for_the_password_then_the_code(tree, tmp_path):
    """The real sudo with the file `enable sudo` made from Debian's, inside `unshare -m`."""
    from systree import LoginUser
    from ww import fresh_totp
    if not shutil.which("sudo") or not shutil.which("unshare"):
        pytest.skip("sudo and unshare are needed")
    user = LoginUser(tmp_path / "u")
    try:
        secret = tree.enroll(user.name)
        assert tree.cli("enable", "sudo").returncode == 0
        pam = tree.runnable_pam_file("sudo")
        sudoers = tmp_path / "sudoers"
        sudoers.write_text(f"Defaults !lecture, passwd_tries=1, !syslog\n{user.name} ALL=(root) ALL\n")
        sudoers.chmod(0o440)

        def run_sudo(stdin: str) -> subprocess.CompletedProcess:
            script = " && ".join(user.mounts() + [f"mount --bind {pam} /etc/pam.d/sudo",
                                                  f"mount --bind {sudoers} /etc/sudoers"]) + (
                f" && exec setpriv --reuid={user.uid} --regid={user.uid} --clear-groups -- sudo -S -k /usr/bin/id -u")
            return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                  input=stdin, capture_output=True, text=True, timeout=60)

        code = fresh_totp(secret)
        bad = run_sudo(f"{user.password}\n{(int(code) + 1) % 1_000_000:06d}\n")
        assert bad.returncode != 0 and bad.stdout == "", bad.stderr
        assert "Verification code:" in bad.stderr
        ok = run_sudo(f"{user.password}\n{code}\n")
        assert ok.returncode == 0 and ok.stdout.strip() == "0", ok.stderr
        assert f"[sudo] password for {user.name}:" in ok.stderr and "Verification code:" in ok.stderr
        # The password comes first: a wrong one ends it before any code is asked for.
        nopass = run_sudo(f"wrong password\n{code}\n")
        assert nopass.returncode != 0 and "Verification code:" not in nopass.stderr, nopass.stderr
    finally:
        user.remove()


def test_enable_refuses_to_name_a_config_that_does_not_exist(tree):
    before = tree.etc_snapshot()
    res = tree.cli("enable", "sudo", "--config", "/etc/watchword/typo.toml")
    assert res.returncode != 0
    assert "/etc/watchword/typo.toml does not exist: a module line naming it with config= denies every login" in res.stderr
    assert tree.etc_snapshot() == before
    tree.write("/etc/watchword/other.toml", "", mode=0o600)
    res = tree.cli("enable", "sudo", "--config", "/etc/watchword/other.toml")
    assert res.returncode == 0, res.stderr
    assert "config=/etc/watchword/other.toml" in tree.text("/etc/pam.d/sudo")


FLEET_CONFIG = ('[store]\nbackend = "postgres"\n\n[store.postgres]\n'
                'conninfo = "host=/run/postgresql dbname=watchword user=watchword"\n'
                'password_file = "/etc/watchword/db-password"\n')


def test_a_fleet_host_runs_the_dynamic_helper(tree):
    """Every login of a fleet host needs libpq, which only watchword-helper-dynamic can
    load: the static helper would start, read the config and hand each login over (1-3 ms
    more, BENCHMARKS.md). `enable` names the dynamic one there, and the default again when
    the host goes back to the file store; doctor warns about a fleet line without it."""
    tree.write("/etc/watchword/config.toml", FLEET_CONFIG, mode=0o600)
    res = tree.cli("enable", "sudo")
    assert res.returncode == 0, res.stderr
    line = ("auth       required   pam_watchword.so helper=/usr/libexec/watchword/watchword-helper-dynamic   "
            "# added by watchword enable\n")
    assert line in tree.text(SUDO)
    _, checks = tree.doctor()
    assert not any("runs the static watchword-helper" in f["detail"] for f in checks), checks

    tree.write(SUDO, tree.text(SUDO).replace(" helper=/usr/libexec/watchword/watchword-helper-dynamic", ""))
    _, checks = tree.doctor()
    warned = [f["detail"] for f in checks if f["status"] == "warn" and f["check"] == "install.helper"]
    assert len(warned) == 1 and warned[0].startswith("/etc/pam.d/sudo:7: the module runs the static watchword-helper, "
                                                     "which hands every login of a fleet host"), checks

    tree.write("/etc/watchword/config.toml", "", mode=0o600)
    res = tree.cli("enable", "sudo")
    assert res.returncode == 0, res.stderr
    assert "auth       required   pam_watchword.so   # added by watchword enable\n" in tree.text(SUDO)
    assert "helper=" not in tree.text(SUDO)
