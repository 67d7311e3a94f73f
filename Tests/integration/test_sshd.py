"""The real sshd and ssh, end to end: `watchword enable sshd` on Debian 12's own
/etc/pam.d/sshd and sshd_config (in a tree), then Debian's sshd run on a loopback port with
that config and that PAM file, inside `unshare -m` with the files bind-mounted over the real
ones (the machine's own files are never touched). The ssh client is driven by pexpect and
answers `Verification code: ` with codes from oathtool.

Also the case doctor exists for: the module in /etc/pam.d/sshd but Debian's sshd_config,
where doctor says a public key alone logs in — and the real sshd lets it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import MODULE_PATH
from systree import DEBIAN, LoginUser, Tree, findings
from ww import CLI, DYNAMIC_HELPER, HELPER, fresh_totp, secret_of, fresh_totp as fresh_code

pexpect = pytest.importorskip("pexpect")

SSHD_BIN = "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(SSHD_BIN) or not shutil.which("ssh") or not shutil.which("unshare"):
        pytest.skip("needs root, openssh-server, openssh-client and unshare")
    u = LoginUser(tmp_path_factory.mktemp("sshuser"))
    yield u
    u.remove()


class SSHD:
    """Debian's sshd on 127.0.0.1:PORT with the tree's sshd_config, its drop-in directory and its
    /etc/pam.d/sshd (module named by absolute path, pointed at the tree's helper and state)."""

    def __init__(self, tree: Tree, user: LoginUser, tmp: Path):
        self.tmp = tmp
        hostkey = tmp / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)], check=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        pam = tree.runnable_pam_file("sshd") if "pam_watchword.so" in tree.text("/etc/pam.d/sshd") \
            else tree.path("/etc/pam.d/sshd")
        mounts = user.mounts() + [
            f"mount --bind {pam} /etc/pam.d/sshd",
            f"mount --bind {tree.path('/etc/ssh/sshd_config.d')} /etc/ssh/sshd_config.d",
        ]
        script = " && ".join(mounts) + (
            f" && exec {SSHD_BIN} -D -e -f {tree.path('/etc/ssh/sshd_config')} -h {hostkey} -p {self.port}"
            " -o ListenAddress=127.0.0.1 -o PidFile=none " + os.environ.get("WW_SSHD_OPTIONS", ""))
        self.log = tmp / "sshd.log"
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while "Server listening" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "sshd did not start:\n" + self.log.read_text()
            time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_sshd(tmp_path, user):
    started: list[SSHD] = []

    def _start(tree: Tree) -> SSHD:
        d = tmp_path / f"sshd{len(started)}"
        d.mkdir()
        s = SSHD(tree, user, d)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()


@pytest.fixture
def tree(tmp_path, pam_module, user) -> Tree:
    return Tree(tmp_path / "tree", enrolled=(user.name,))


def wrong(code: str) -> str:
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


class Login:
    """One `ssh ... echo OK` through pexpect; `answers` is a list of (prompt regex, answer).
    To debug: WW_SSH_LOGLEVEL=DEBUG2 (the client), WW_SSHD_OPTIONS="-o LogLevel=DEBUG3"."""

    def __init__(self, sshd: SSHD, user: LoginUser, *, key: bool, methods: str, answers=()):
        argv = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=" + os.environ.get("WW_SSH_LOGLEVEL", "ERROR"), "-o", "NumberOfPasswordPrompts=1", "-o", f"PreferredAuthentications={methods}",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-p", str(sshd.port)]
        argv += ["-i", str(user.key)] if key else ["-o", "IdentityFile=/dev/null"]
        argv += [f"{user.name}@127.0.0.1", "echo", "LOGGED-IN-OK"]
        child = pexpect.spawn("ssh", argv, env={"PATH": os.environ["PATH"], "HOME": str(sshd.tmp)},
                              encoding="utf-8", timeout=20)
        self.prompts: list[str] = []
        self.saw: list[str] = []  # what came before each prompt
        for prompt, answer in answers:
            i = child.expect([prompt, pexpect.EOF])
            if i == 1:
                break
            self.prompts.append(child.after)
            self.saw.append(child.before)
            # An answer may be worked out from what the user saw (a token shown to enroll).
            child.sendline(answer(child.before) if callable(answer) else answer)
        child.expect(pexpect.EOF)
        self.output = "".join(self.prompts) + (child.before or "")
        child.close()
        self.status = child.exitstatus

    @property
    def ran(self) -> bool:
        return self.status == 0 and "LOGGED-IN-OK" in self.output


CODE = r"Verification code: "
PASSWORD = r"[Pp]assword: "


def test_password_then_code(tree, user, start_sshd):
    assert tree.cli("enable", "sshd").returncode == 0
    sshd = start_sshd(tree)
    secret = tree.secrets[user.name]

    denied = Login(sshd, user, key=False, methods="keyboard-interactive",
                   answers=[(PASSWORD, user.password), (CODE, wrong(fresh_code(secret)))])
    assert not denied.ran and "Verification code:" in denied.output, denied.output

    ok = Login(sshd, user, key=False, methods="keyboard-interactive",
               answers=[(PASSWORD, user.password), (CODE, fresh_code(secret))])
    assert ok.ran, ok.output + sshd.log.read_text()

    # A key alone is no longer a way in (AuthenticationMethods keyboard-interactive).
    key_only = Login(sshd, user, key=True, methods="publickey")
    assert not key_only.ran and "Permission denied" in key_only.output, key_only.output


def test_key_and_code_both_required(tree, user, start_sshd):
    assert tree.cli("enable", "sshd", "--with-publickey").returncode == 0
    sshd = start_sshd(tree)
    secret = tree.secrets[user.name]

    key_only = Login(sshd, user, key=True, methods="publickey")
    assert not key_only.ran and "Permission denied" in key_only.output, key_only.output

    code_only = Login(sshd, user, key=False, methods="keyboard-interactive", answers=[(CODE, fresh_code(secret))])
    assert not code_only.ran and code_only.prompts == [], code_only.output  # never even asked

    wrong_code = Login(sshd, user, key=True, methods="publickey,keyboard-interactive",
                       answers=[(CODE, wrong(fresh_code(secret)))])
    assert not wrong_code.ran and wrong_code.prompts == ["Verification code: "], wrong_code.output

    both = Login(sshd, user, key=True, methods="publickey,keyboard-interactive",
                 answers=[(CODE, fresh_code(secret))])
    assert both.ran, both.output + sshd.log.read_text()
    assert both.prompts == ["Verification code: "]  # no password: sshd checked the key
    assert "Accepted keyboard-interactive/pam for wwssh" in sshd.log.read_text()


def test_doctor_is_right_about_the_publickey_bypass(tree, user, start_sshd):
    """The module in /etc/pam.d/sshd by hand, sshd_config left as Debian ships it: doctor
    fails the setup — and indeed a key alone logs in without any code."""
    tree.write("/etc/pam.d/sshd", tree.read("/etc/pam.d/sshd").replace(
        b"@include common-auth\n", b"@include common-auth\nauth required pam_watchword.so\n"))
    rc, checks = tree.doctor()
    assert rc == 1
    assert findings(checks, "fail", "sshd.bypass")[0].startswith("a public key alone logs in")
    sshd = start_sshd(tree)
    key_only = Login(sshd, user, key=True, methods="publickey")
    assert key_only.ran, key_only.output
    assert "Accepted publickey for wwssh" in sshd.log.read_text()

    # After `watchword enable sshd --with-publickey` doctor is content, and the key is not enough.
    tree.write("/etc/pam.d/sshd", tree.read("/etc/pam.d/sshd").replace(b"auth required pam_watchword.so\n", b""))
    assert tree.cli("enable", "sshd", "--with-publickey").returncode == 0
    rc, checks = tree.doctor()
    assert findings(checks, "ok", "sshd.bypass") == ["every sshd login needs the code: publickey,keyboard-interactive"]
    sshd2 = start_sshd(tree)
    assert not Login(sshd2, user, key=True, methods="publickey").ran


def test_enable_on_this_machine_reloads_sshd_and_the_next_login_asks_for_the_code(tmp_path, pam_module, user):
    """The admin's path, without --root: inside one private mount namespace the machine's
    /etc/pam.d, /etc/ssh, /run, /usr/local, /usr/libexec, /var/backups and the PAM module
    directory are private copies (the helper at the module's default path); sshd runs from its default config and pid file. A key alone logs in;
    `watchword enable sshd --with-publickey` edits the (private) system files, reloads the
    running sshd with SIGHUP, and the very next login needs the key and the code."""
    secdir = "/usr/lib/x86_64-linux-gnu/security"
    if not os.path.exists(f"{secdir}/pam_unix.so") or not shutil.which("nsenter"):
        pytest.skip("needs Debian's PAM module directory and nsenter")
    private = tmp_path / "private"
    shutil.copytree("/etc/pam.d", private / "pam.d", symlinks=True)
    ssh = private / "ssh"
    (ssh / "sshd_config.d").mkdir(parents=True)
    shutil.copyfile(DEBIAN / "etc/ssh/sshd_config", ssh / "sshd_config")
    shutil.copyfile(DEBIAN / "etc/pam.d/sshd", private / "pam.d" / "sshd")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "ssh_host_ed25519_key")], check=True)
    shutil.copytree(secdir, private / "security", symlinks=True)
    shutil.copyfile(MODULE_PATH, private / "security" / "pam_watchword.so")
    os.chmod(private / "security" / "pam_watchword.so", 0o644)
    (private / "backups").mkdir(mode=0o755)
    (private / "libexec").mkdir(mode=0o755)
    shutil.copyfile(HELPER, private / "watchword-helper")  # HELPER may be under /usr/libexec, hidden below
    # The static helper's sibling (a build's own helper serves as both).
    shutil.copyfile(DYNAMIC_HELPER if DYNAMIC_HELPER.is_file() else HELPER, private / "watchword-helper-dynamic")
    state, config = tmp_path / "state", tmp_path / "config.toml"
    config.write_text("")  # enable names it with config=, so it must exist
    config.chmod(0o600)
    enrolled = subprocess.run([str(CLI), "enroll", "--allow-unknown-user", user.name, "--totp", "--json", "--state-dir", str(state),
                               "--config", str(config)], capture_output=True, text=True, check=True)
    secret = secret_of(json.loads(enrolled.stdout)["otpauth_uri"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    mounts = user.mounts() + [
        f"mount --bind {private / 'pam.d'} /etc/pam.d",
        f"mount --bind {ssh} /etc/ssh",
        f"mount --bind {private / 'security'} {secdir}",
        f"mount --bind {private / 'backups'} /var/backups",
        "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd",
        "mount -t tmpfs -o mode=0755 tmpfs /usr/local",
        # /usr/libexec as it is (links to the real entries), but for the package's directory.
        f"mount --bind /usr/libexec {private / 'libexec'}",
        "mount -t tmpfs -o mode=0755 tmpfs /usr/libexec",
        f"for e in {private / 'libexec'}/*; do [ \"${{e##*/}}\" = watchword ] || ln -s \"$e\" /usr/libexec/; done",
        "mkdir -m 0755 /usr/libexec/watchword",
        f"install -m 0755 {private / 'watchword-helper'} /usr/libexec/watchword/watchword-helper",
        f"install -m 0755 {private / 'watchword-helper-dynamic'} /usr/libexec/watchword/watchword-helper-dynamic",
    ]
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               " && ".join(mounts) + " && echo ready && exec sleep 300"],
                              stdout=subprocess.PIPE, text=True)
    sshd = None
    try:
        assert holder.stdout.readline().strip() == "ready"
        inside = ["nsenter", "-t", str(holder.pid), "-m", "--"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}  # no SUDO_USER
        log = tmp_path / "sshd.log"
        sshd = subprocess.Popen(inside + [SSHD_BIN, "-D", "-e", "-p", str(port), "-o", "ListenAddress=127.0.0.1"],
                                stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 10
        while "Server listening" not in log.read_text():
            assert sshd.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)

        target = SimpleNamespace(port=port, tmp=tmp_path)  # what Login needs
        assert Login(target, user, key=True, methods="publickey").ran  # Debian as shipped: a key alone

        res = subprocess.run(inside + [str(CLI), "enable", "sshd", "--with-publickey", "--state-dir", str(state),
                                       "--config", str(config)], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reloaded sshd (SIGHUP to pid" in res.stdout, res.stdout
        assert "backed up /etc/pam.d/sshd to /var/backups/watchword/" in res.stdout
        assert (private / "backups" / "watchword").is_dir()  # the backup went to the private copy
        assert "state_dir=" in (private / "pam.d" / "sshd").read_text()
        deadline = time.monotonic() + 10
        while log.read_text().count("Server listening") < 2:  # sshd re-executed itself
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

        key_only = Login(target, user, key=True, methods="publickey")
        assert not key_only.ran and "Permission denied" in key_only.output, key_only.output
        both = Login(target, user, key=True, methods="publickey,keyboard-interactive",
                     answers=[(CODE, fresh_code(secret))])
        assert both.ran and both.prompts == ["Verification code: "], both.output + log.read_text()

        doctor = subprocess.run(inside + [str(CLI), "doctor", "--json", "--state-dir", str(state), "--config",
                                          str(config)], capture_output=True, text=True, env=env, timeout=60)
        checks = json.loads(doctor.stdout)["checks"]
        assert findings(checks, "ok", "sshd.bypass") == ["every sshd login needs the code: publickey,keyboard-interactive"]
        assert findings(checks, "fail") == [], checks
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        holder.kill()
        holder.wait()


def test_a_user_with_no_token_enrolls_at_login_through_ssh(tmp_path, pam_module, user, start_sshd):
    """enroll_at_login through sshd's keyboard-interactive after the key: the token arrives
    as the info request's text, the code typed from it enrolls and logs in, and the next
    login asks for a code only."""
    import re
    from ww import oathtool_totp, secret_of, wait_for_step_margin
    tree = Tree(tmp_path / "tree", enrolled=())
    state = tree.path("/var/lib/watchword")
    state.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the package makes it
    assert tree.cli("enable", "sshd", "--with-publickey", "--enroll-at-login").returncode == 0
    sshd = start_sshd(tree)
    seen = {}

    def code_from_screen(text: str) -> str:
        seen["uri"] = re.search(r"otpauth://totp/\S+", text).group(0)
        return oathtool_totp(secret_of(seen["uri"]))

    wait_for_step_margin(8)
    first = Login(sshd, user, key=True, methods="publickey,keyboard-interactive",
                  answers=[(CODE, code_from_screen), (r"Press Enter once you have saved them: ", "")])
    assert first.ran, first.output + sshd.log.read_text()
    assert seen["uri"] and first.prompts[1] == "Press Enter once you have saved them: ", first.output
    assert "Your token is set up." in first.saw[1] and len(re.findall(r"\b\d{10}\b", first.saw[1])) == 10, first.saw
    # Enrolled: the next login asks for a code only (here a recovery code it showed).
    recovery = re.findall(r"\b\d{10}\b", first.saw[1])[0]
    second = Login(sshd, user, key=True, methods="publickey,keyboard-interactive", answers=[(CODE, recovery)])
    assert second.ran and second.prompts == ["Verification code: "], second.output
    assert "otpauth://" not in second.saw[0], second.saw
