"""`watchword doctor --root TREE` on Debian 12 trees that are right and on each
misconfiguration: its verdicts, line by line. sshd's effective settings come from the
machine's real `sshd -T` over the tree's config; the clock from a fake `timedatectl`."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import make_root_dir
from mountns import private_mounts
from systree import Tree, clock_bin, findings, fixture
from ww import CLI

SUDO = "/etc/pam.d/sudo"
SSHD = "/etc/pam.d/sshd"
DROP_IN = "/etc/ssh/sshd_config.d/watchword.conf"


@pytest.fixture
def tree(tmp_path, pam_module) -> Tree:
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        pytest.skip("openssh-server is needed")
    return Tree(tmp_path / "tree")


@pytest.fixture
def good(tree) -> Tree:
    """Both services enabled the way `enable` does it: key + code for sshd."""
    for args in (["enable", "sudo"], ["enable", "sshd", "--with-publickey"]):
        res = tree.cli(*args)
        assert res.returncode == 0, res.stderr
    return tree


def test_a_right_setup_is_all_ok(good):
    rc, checks = good.doctor()
    assert rc == 0
    assert findings(checks, "fail") == [] and findings(checks, "warn") == [], checks
    assert findings(checks, "ok", "pam.sshd") == [
        "/etc/pam.d/sshd:5 'auth required pam_watchword.so' runs on every successful sshd login and a wrong code denies"]
    assert findings(checks, "ok", "pam.sudo") == [
        "/etc/pam.d/sudo:7 'auth required pam_watchword.so' runs on every successful sudo login and a wrong code denies"]
    assert findings(checks, "ok", "sshd.bypass") == ["every sshd login needs the code: publickey,keyboard-interactive"]
    assert ("KbdInteractiveAuthentication yes (from /etc/ssh/sshd_config.d/watchword.conf:6)"
            in findings(checks, "ok", "sshd.config"))
    assert findings(checks, "ok", "summary") == ["sshd and sudo both require the code"]
    assert findings(checks, "ok", "users") == ["1 enrolled: alice"]
    assert findings(checks, "ok", "clock") == ["synchronised (timedatectl: NTPSynchronized=yes)"]
    for name in ("install.cli", "install.helper", "install.module", "config", "state"):
        assert findings(checks, "ok", name), name


def test_text_output_is_a_table_with_a_verdict(good):
    res = good.cli("doctor")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"The system under {good.root} (paths below are inside it):"
    assert lines[1].split() == ["STATUS", "CHECK", "DETAIL"]
    assert any(l.startswith("OK      pam.sshd        /etc/pam.d/sshd:5") for l in lines), res.stdout
    assert lines[-1].startswith("0 FAIL, 0 WARN, ")


def test_stock_debian_requires_nothing(tree):
    rc, checks = tree.doctor()
    assert rc == 1
    assert findings(checks, "fail", "summary") == ["neither sshd nor sudo requires the code"]
    assert any("no pam_watchword.so in the auth stack" in d for d in findings(checks, "warn", "pam.sshd"))
    assert any("no pam_watchword.so in the auth stack" in d for d in findings(checks, "warn", "pam.sudo"))


def test_publickey_bypass_when_only_the_pam_file_was_edited(tree):
    """The classic half setup: the module is in /etc/pam.d/sshd, sshd_config is Debian's."""
    tree.write(SSHD, tree.read(SSHD).replace(b"@include common-auth\n",
                                              b"@include common-auth\nauth required pam_watchword.so\n"))
    rc, checks = tree.doctor()
    assert rc == 1
    assert findings(checks, "ok", "pam.sshd")  # the PAM stack itself is fine...
    assert ("KbdInteractiveAuthentication no: sshd never asks PAM's questions, so nobody is asked for the code "
            "(from /etc/ssh/sshd_config:62)") in findings(checks, "fail", "sshd.config")
    bypass = findings(checks, "fail", "sshd.bypass")
    assert bypass == ["a public key alone logs in: sshd does not run PAM's auth stack for publickey "
                      "(AuthenticationMethods any); require keyboard-interactive: watchword enable sshd [--with-publickey]"]
    assert any("'password' logins answer every PAM question with the password" in d
               for d in findings(checks, "warn", "sshd.bypass"))
    assert findings(checks, "fail", "summary") == ["neither sshd nor sudo requires the code"]


def test_an_earlier_sufficient_line_is_a_bypass(good):
    text = fixture("variants/sudo-sufficient").replace(
        b"@include common-auth\n", b"@include common-auth\nauth required pam_watchword.so\n")
    good.write(SUDO, text)
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "pam.sudo") == [
        "sudo can succeed without the code: /etc/pam.d/sudo:7 'auth sufficient pam_ssh_agent_auth.so "
        "file=/etc/security/authorized_keys' can end or jump past the stack before /etc/pam.d/sudo:9 is reached: "
        "a login succeeds without a code"]
    assert findings(checks, "warn", "summary") == ["sshd requires the code; sudo does not"]


def test_a_jump_over_the_module_is_a_bypass(good):
    """A common admin pattern: skip the code for a trusted group with a jump."""
    good.write(SUDO, good.read(SUDO).replace(
        b"@include common-auth\n",
        b"@include common-auth\nauth [success=1 default=ignore] pam_succeed_if.so user ingroup trusted\n"))
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "pam.sudo") == [
        "sudo can succeed without the code: /etc/pam.d/sudo:7 'auth [success=1 default=ignore] pam_succeed_if.so "
        "user ingroup trusted' can end or jump past the stack before /etc/pam.d/sudo:8 is reached: "
        "a login succeeds without a code"]


def test_a_jump_in_an_included_file_that_overshoots_refuses_everybody(good):
    """Jumps count across an @include: pam_unix's success=4 in common-auth skips the module
    too, but leaves nothing that succeeds, so every sudo fails (libpam's 'bad jump' rules)."""
    common = good.read("/etc/pam.d/common-auth").replace(b"[success=1 default=ignore]", b"[success=4 default=ignore]")
    good.write("/etc/pam.d/common-auth", common)
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "pam.sudo") == [
        "/etc/pam.d/sudo:7 is never reached: every login fails before it (sudo logins are all refused)"]


@pytest.mark.parametrize("control", ["optional", "sufficient", "[success=ok default=ignore]"])
def test_a_weak_control_on_the_module_line(good, control):
    good.write(SUDO, good.read(SUDO).replace(b"auth       required   pam_watchword.so",
                                             f"auth {control} pam_watchword.so".encode()))
    rc, checks = good.doctor()
    assert rc == 1
    [detail] = findings(checks, "fail", "pam.sudo")
    assert f"control '{control}' lets the stack succeed when the code is wrong; use 'required'" in detail


def test_nullok_is_a_warning(good):
    good.write(SUDO, good.read(SUDO).replace(b"pam_watchword.so   #", b"pam_watchword.so nullok   #"))
    rc, checks = good.doctor()
    assert rc == 0
    assert findings(checks, "warn", "pam.sudo") == [
        "/etc/pam.d/sudo:7: nullok lets users who are not enrolled in without a code; drop it once everybody is enrolled"]


def test_sshd_config_value_before_the_include_defeats_the_drop_in(good):
    good.write("/etc/ssh/sshd_config", fixture("variants/sshd_config-kbd-first"))
    rc, checks = good.doctor()
    assert rc == 1
    # sshd -T itself refuses: AuthenticationMethods needs keyboard-interactive, which is off.
    assert any("sshd -T rejects the configuration" in d and "keyboard-interactive" in d
               for d in findings(checks, "fail", "sshd.config")), checks


def test_code_alone_when_the_stack_checks_no_password(good):
    good.write(DROP_IN, good.text(DROP_IN).replace("publickey,keyboard-interactive", "keyboard-interactive"))
    rc, checks = good.doctor()
    assert rc == 1
    [detail] = findings(checks, "fail", "sshd.bypass")
    assert detail.startswith("'keyboard-interactive' alone logs in with just the code")


def test_a_match_block_is_reported(good):
    config = good.read("/etc/ssh/sshd_config") + b"Match Address 10.0.0.0/8\n    AuthenticationMethods publickey\n"
    good.write("/etc/ssh/sshd_config", config)
    rc, checks = good.doctor()
    assert any("'AuthenticationMethods publickey' inside 'Match Address 10.0.0.0/8'" in d
               for d in findings(checks, "warn", "sshd.config")), checks


def test_install_problems(good):
    good.helper.chmod(0o777)
    good.path("/lib/x86_64-linux-gnu/security/pam_watchword.so").unlink()
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "install.helper") == [
        "/usr/libexec/watchword/watchword-helper has mode 0777: writable by group or other: "
        "the module refuses to run it and denies every login"]
    assert findings(checks, "fail", "install.module") == [
        "/lib/x86_64-linux-gnu/security/pam_watchword.so is not installed: every login whose stack names it fails"]


def test_the_dynamic_helper_beside_the_packages_is_checked(good):
    """The package's static helper hands SMS, fleet, exempt_group and enrollment logins to
    watchword-helper-dynamic beside it; doctor checks it as the static one checks it."""
    rc, checks = good.doctor()
    assert "/usr/libexec/watchword/watchword-helper-dynamic: root, 0755" in findings(checks, "ok", "install.helper")
    dynamic = good.path("/usr/libexec/watchword/watchword-helper-dynamic")
    dynamic.chmod(0o775)
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "install.helper") == [
        "/usr/libexec/watchword/watchword-helper-dynamic has mode 0775: writable by group or other: the package's "
        "helper hands SMS, fleet, exempt_group and enrollment logins to it, and those are denied"]
    dynamic.unlink()
    rc, checks = good.doctor()
    assert findings(checks, "fail", "install.helper") == [
        "/usr/libexec/watchword/watchword-helper-dynamic does not exist: the package's "
        "helper hands SMS, fleet, exempt_group and enrollment logins to it, and those are denied"]


def test_a_writable_directory_above_the_helper_is_reported(good):
    """What the module refuses, two levels above the helper (a group-writable /usr): doctor
    says so, as it does for the helper's own directory."""
    os.chmod(good.path("/usr"), 0o2775)
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "install.helper") == [
        "/usr: every directory above the helper must be root's and not writable by group or other: "
        "the module refuses to run it and denies every login",
        "/usr: every directory above the helper must be root's and not writable by group or other: "
        "the package's helper hands SMS, fleet, exempt_group and enrollment logins to it, and those are denied"]
    os.chmod(good.path("/usr"), 0o755)
    os.symlink("watchword", good.path("/usr/libexec/ww"))
    good.write("/etc/pam.d/sudo", good.text("/etc/pam.d/sudo").replace(
        "pam_watchword.so", "pam_watchword.so helper=/usr/libexec/ww/watchword-helper"))
    rc, checks = good.doctor()
    assert "/usr/libexec/ww is a symlink (the module follows none to the helper): " \
        "the module refuses to run it and denies every login" in findings(checks, "fail", "install.helper"), checks


def test_state_and_config_problems(good):
    os.chmod(good.path("/var/lib/watchword/users/alice"), 0o644)
    good.write("/etc/watchword/config.toml", "[policy]\nwindow = 99\n", mode=0o600)
    rc, checks = good.doctor()
    assert rc == 1
    assert any(d.startswith("/var/lib/watchword/users/alice: owner uid 0, mode 0644; must be root, 0600")
               for d in findings(checks, "fail", "state")), checks
    [config] = findings(checks, "fail", "config")
    assert "policy.window = 99 is out of range" in config and "denies every login" in config
    good.write("/etc/watchword/config.toml", "[policy]\nwindow = 1\n", mode=0o644)
    rc, checks = good.doctor()
    assert any("gives group or other access" in d for d in findings(checks, "fail", "config")), checks


def test_nobody_enrolled_with_the_module_required(good):
    subprocess.run([str(CLI), "remove", "alice", "--state-dir", str(good.path("/var/lib/watchword"))], check=True,
                   capture_output=True)
    rc, checks = good.doctor()
    assert rc == 1
    assert findings(checks, "fail", "users") == [
        "nobody is enrolled, and the module is required without nullok: every login through it is refused "
        "(watchword enroll USER --totp)"]


def test_locked_out_users_and_sudoers_not_enrolled(good):
    good.write("/etc/watchword/config.toml", "[policy]\nmax_failures = 1\nlockout_seconds = 600\n", mode=0o600)
    good.write("/etc/group", "root:x:0:\nsudo:x:27:alice,bob\n")
    from conftest import run_pamtester, write_service
    service_dir = good.root.parent / "pamw"
    write_service(service_dir, "t", [f"auth required {good.path('/lib/x86_64-linux-gnu/security/pam_watchword.so')} "
                                     f"{good.module_args()}"])
    assert run_pamtester(service_dir, "t", "alice", "000000\n").rc != 0
    rc, checks = good.doctor()
    [locked] = findings(checks, "warn", "users.locked")
    assert locked.startswith("alice is locked out for ") and "(watchword unlock alice)" in locked
    assert findings(checks, "warn", "users.sudo") == [
        "in the sudo/admin/wheel group but not enrolled, so sudo refuses them: bob"]


def test_clock(good, tmp_path):
    """Every outcome of the clock check, each from a fake `timedatectl` first on PATH, so
    the result does not depend on whether this machine runs systemd (a container's real
    timedatectl cannot reach it; a booted VM's can, and may say yes or no)."""
    _, checks = good.doctor(clock=clock_bin(tmp_path / "synced", "yes"))
    assert findings(checks, "ok", "clock") == ["synchronised (timedatectl: NTPSynchronized=yes)"]
    _, checks = good.doctor(clock=clock_bin(tmp_path / "unsynced", "no"))
    assert findings(checks, "warn", "clock")[0].startswith("not synchronised (timedatectl: NTPSynchronized=no")
    # What timedatectl does without systemd as PID 1 (as in a container).
    no_systemd = clock_bin(tmp_path / "no-systemd", script=(
        "echo 'System has not been booted with systemd as init system (PID 1). Can'\\''t operate.' >&2\n"
        "echo 'Failed to connect to bus: Host is down' >&2\nexit 1\n"))
    _, checks = good.doctor(clock=no_systemd)
    assert findings(checks, "warn", "clock") == [
        "unknown whether the clock is synchronised (timedatectl show failed); TOTP codes depend on the time"]
    _, checks = good.doctor(clock=clock_bin(tmp_path / "odd", script="printf 'Timezone=UTC\\n'\n"))
    assert findings(checks, "warn", "clock") == [
        "unknown whether the clock is synchronised (timedatectl show has no NTPSynchronized)"]


def test_clock_without_timedatectl(good, tmp_path):
    """No timedatectl anywhere: the machine's own (if any) is hidden in a private mount
    namespace by a file no one may execute."""
    hide = {}
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"):
        path = os.path.realpath(os.path.join(d, "timedatectl"))
        if os.path.exists(path):
            hide[path] = "/dev/null"
    _, checks = good.doctor(clock=clock_bin(tmp_path / "none", None),
                            preexec_fn=private_mounts(binds=hide) if hide else None)
    assert findings(checks, "warn", "clock") == [
        "unknown whether the clock is synchronised (no timedatectl); TOTP codes depend on the time"]


def test_sms_provider_is_reported(good):
    good.write("/usr/local/bin/send-sms", "#!/bin/sh\nexit 0\n", mode=0o755)
    good.write("/etc/watchword/config.toml",
               '[sms]\nprovider = "command"\n[sms.command]\nargv = ["/usr/local/bin/send-sms", "{phone}"]\n',
               mode=0o600)
    _, checks = good.doctor()
    assert findings(checks, "warn", "sms") == []
    assert findings(checks, "ok", "sms") == ['sms.provider is "command"']
    good.path("/usr/local/bin/send-sms").unlink()  # argv names a program the (tree's) system lacks
    _, checks = good.doctor()
    assert findings(checks, "warn", "sms") == [
        "sms.command.argv names /usr/local/bin/send-sms, which is not an executable file: every text fails"]


def test_code_on_the_command_line_or_few_digits_fail_the_config(good):
    good.write("/usr/local/bin/send-sms", "#!/bin/sh\nexit 0\n", mode=0o755)
    command = '[sms]\nprovider = "command"\n[sms.command]\nargv = ["/usr/local/bin/send-sms", "{phone}", '
    for text, says in [(command + '"{message}"]\n', "sms.command.argv contains {message}"),
                       (command + '"-t{code}"]\n', "sms.command.argv contains {code}"),
                       ("[sms]\ncode_digits = 5\n", "sms.code_digits = 5 is out of range (6 to 10)")]:
        good.write("/etc/watchword/config.toml", text, mode=0o600)
        _, checks = good.doctor()
        [config] = findings(checks, "fail", "config")
        assert says in config and "denies every login" in config, config


def test_phone_numbers_without_a_provider(good):
    subprocess.run([str(CLI), "enroll", "--allow-unknown-user", "bob", "--sms", "+14155550123", "--state-dir",
                    str(good.path("/var/lib/watchword"))], check=True, capture_output=True)
    _, checks = good.doctor()
    assert findings(checks, "warn", "sms") == [
        'sms.provider is "none" but bob has a phone number: no texts are sent (users with only SMS cannot log in)']


def test_a_missing_named_config_and_a_fleet_directory_read_as_files_fail(good):
    sudo = good.text(SUDO)
    good.write(SUDO, sudo.replace("pam_watchword.so", "pam_watchword.so config=/etc/watchword/typo.toml"))
    rc, checks = good.doctor()
    assert rc != 0
    assert ("/etc/watchword/typo.toml is named by config= on a module line but does not exist: the module "
            "denies every login through that line") in findings(checks, "fail", "config"), checks
    good.write(SUDO, sudo)
    assert good.doctor()[0] == 0
    good.write("/var/lib/watchword/fleet", "This watchword state directory belongs to a fleet.\n", mode=0o600)
    rc, checks = good.doctor()
    assert rc != 0
    fails = findings(checks, "fail", "state.fleet")
    assert len(fails) == 1 and "/var/lib/watchword belongs to a fleet (fleet marker)" in fails[0], checks
    assert 'the module denies every login until the config says backend = "postgres"' in fails[0]


def test_an_older_usr_local_install_is_reported_never_used(good):
    """install.sh used to put the CLI and the helper under /usr/local; beside the package's
    they are two installs: doctor says so, and the module's default stays the package's."""
    rc, checks = good.doctor()
    assert findings(checks, "warn", "install.older") == []
    for inner in ("/usr/local/sbin/watchword", "/usr/local/libexec/watchword/watchword-helper"):
        make_root_dir(good.path(os.path.dirname(inner)))
        good.write(inner, "#!/bin/sh\nexit 0\n", mode=0o755)
    rc, checks = good.doctor()
    older = findings(checks, "warn", "install.older")
    assert len(older) == 1 and older[0].startswith(
        "two installs: an older /usr/local/sbin/watchword and /usr/local/libexec/watchword/watchword-helper "
        "(install.sh before the Debian package) beside the package's /usr/sbin/watchword and "
        "/usr/libexec/watchword/watchword-helper; the module runs the package's helper"), older
    assert "rm -rf /usr/local/libexec/watchword" in older[0]
    assert not any("/usr/local" in d for d in findings(checks, "ok", "install.helper")), checks
    # A module line that names the older helper runs it: doctor says that instead.
    good.write("/etc/pam.d/sudo", good.text("/etc/pam.d/sudo").replace(
        "pam_watchword.so", "pam_watchword.so helper=/usr/local/libexec/watchword/watchword-helper"))
    rc, checks = good.doctor()
    assert "a module line names the older helper with helper=, so logins run it" in \
        findings(checks, "warn", "install.older")[0]
    # Without the package, only the older install: doctor says to install the package.
    good.path("/usr/sbin/watchword").unlink()
    good.path("/usr/libexec/watchword/watchword-helper").unlink()
    rc, checks = good.doctor()
    assert findings(checks, "warn", "install.older")[0].startswith(
        "an older install (/usr/local/sbin/watchword and /usr/local/libexec/watchword/watchword-helper, from "
        "install.sh) and no Debian package: the module's default helper is /usr/libexec/watchword/watchword-helper")
