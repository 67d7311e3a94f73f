"""A Debian 12 system in a temp directory, for `watchword enable|disable|doctor --root`,
and a private login user for the real sshd and sudo.

``Tree`` copies Debian's own /etc/pam.d and /etc/ssh files (fixtures/debian12), puts the real
CLI, helper and module where the Debian package would (stand-ins for the other PAM modules, so the
module directory is found), and enrolls users into its state directory with the real CLI.

``LoginUser`` is a user that exists only inside ``unshare -m``: private copies of
/etc/passwd, /etc/shadow and /etc/group with one more line are bind-mounted over the real
ones, so the machine's own accounts are never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import DYNAMIC_HELPER, INTEGRATION_DIR, MODULE_PATH, REPO_ROOT, install_helper, make_root_dir
from ww import CLI, HELPER, secret_of

FIXTURES = INTEGRATION_DIR / "fixtures"
DEBIAN = FIXTURES / "debian12"
MODULE_DIR = "/lib/x86_64-linux-gnu/security"
STAND_IN_MODULES = ["pam_unix.so", "pam_deny.so", "pam_permit.so", "pam_cap.so", "pam_nologin.so",
                    "pam_limits.so", "pam_env.so", "pam_loginuid.so", "pam_keyinit.so", "pam_selinux.so",
                    "pam_motd.so", "pam_mail.so", "pam_systemd.so", "pam_ssh_agent_auth.so", "pam_succeed_if.so"]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def clock_bin(base: Path, synchronised: str | None = "yes", *, script: str | None = None) -> Path:
    """A directory with a fake `timedatectl` (or none, when synchronised is None): `show`
    prints NTPSynchronized=<synchronised>, or the fake is `script` (a shell body) if given."""
    d = Path(base)
    d.mkdir(parents=True, exist_ok=True)
    if script is not None or synchronised is not None:
        fake = d / "timedatectl"
        fake.write_text("#!/bin/sh\n" + (script if script is not None else
                        f"[ \"$1\" = show ] || exit 1\n"
                        f"printf 'Timezone=UTC\\nNTP=yes\\nNTPSynchronized={synchronised}\\n'\n"))
        fake.chmod(0o755)
    return d


class Tree:
    def __init__(self, base: Path, enrolled=("alice",)):
        self.root = make_root_dir(base, 0o755)
        shutil.copytree(DEBIAN, self.root, dirs_exist_ok=True)
        # As installed: whatever modes a checkout gave the fixtures (umask, tar as root).
        os.chmod(self.root, 0o755)
        for p in self.root.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        (self.root / "etc/ssh/sshd_config.d").mkdir(mode=0o755, exist_ok=True)
        moddir = self.path(MODULE_DIR)
        moddir.mkdir(parents=True)
        for name in STAND_IN_MODULES:
            (moddir / name).write_bytes(b"")
            (moddir / name).chmod(0o644)
        shutil.copyfile(MODULE_PATH, moddir / "pam_watchword.so")
        (moddir / "pam_watchword.so").chmod(0o644)
        # Where the Debian package puts them.
        self.helper = install_helper(HELPER, make_root_dir(self.path("/usr/libexec/watchword")))
        if not (self.helper.parent / DYNAMIC_HELPER).exists():  # a build's helper: it serves as both
            install_helper(HELPER, self.helper.parent, name=DYNAMIC_HELPER)
        install_helper(CLI, make_root_dir(self.path("/usr/sbin")), name="watchword")
        make_root_dir(self.path("/etc/watchword"), 0o700)
        # As the package leaves it: the config template (module_args names it with config=).
        self.write("/etc/watchword/config.toml", (REPO_ROOT / "install" / "config.toml").read_bytes(), mode=0o600)
        make_root_dir(self.path("/var/lib"), 0o755)
        self.secrets: dict[str, str] = {}
        for user in enrolled:
            self.enroll(user)
        self.clock = clock_bin(self.root.parent / "clock-bin")

    # --- files -----------------------------------------------------------------------
    def path(self, inner: str) -> Path:
        return self.root / inner.lstrip("/")

    def read(self, inner: str) -> bytes:
        return self.path(inner).read_bytes()

    def text(self, inner: str) -> str:
        return self.path(inner).read_text()

    def write(self, inner: str, data: bytes | str, mode: int = 0o644) -> None:
        p = self.path(inner)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        p.chmod(mode)

    def etc_snapshot(self) -> dict[str, bytes]:
        """Every file under etc/, for 'nothing changed' checks."""
        out = {}
        for p in sorted(self.path("/etc").rglob("*")):
            if p.is_file():
                out[str(p.relative_to(self.root))] = p.read_bytes()
        return out

    def backups(self) -> list[Path]:
        d = self.path("/var/backups/watchword")
        return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []

    # --- the CLI ---------------------------------------------------------------------
    def cli(self, *args: str, env_extra: dict | None = None, clock: Path | None = None,
            preexec_fn=None) -> subprocess.CompletedProcess:
        """`watchword ARGS --root TREE`, with a fake timedatectl first on PATH."""
        path = f"{clock or self.clock}:/usr/sbin:/usr/bin:/sbin:/bin"
        env = {"PATH": path, "LANG": "C", "COLUMNS": "200", **(env_extra or {})}
        return subprocess.run([str(CLI), *args, "--root", str(self.root)], capture_output=True, text=True,
                              env=env, timeout=60, preexec_fn=preexec_fn)

    def enroll(self, user: str) -> str:
        proc = subprocess.run([str(CLI), "enroll", "--allow-unknown-user", user, "--totp", "--json",
                               "--state-dir", str(self.path("/var/lib/watchword"))],
                              capture_output=True, text=True, timeout=60, check=True)
        self.secrets[user] = secret_of(json.loads(proc.stdout)["otpauth_uri"])
        return self.secrets[user]

    def doctor(self, clock: Path | None = None, preexec_fn=None) -> tuple[int, list[dict]]:
        proc = self.cli("doctor", "--json", clock=clock, preexec_fn=preexec_fn)
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)["checks"]

    def module_args(self) -> str:
        """Module options pointing the real module at this tree's helper, state and config."""
        return (f"helper={self.helper} state_dir={self.path('/var/lib/watchword')} "
                f"config={self.path('/etc/watchword/config.toml')}")

    def runnable_pam_file(self, service: str) -> Path:
        """The tree's /etc/pam.d/SERVICE with `pam_watchword.so` naming the built module by
        absolute path and this tree's helper, state and config: what the real sshd or sudo
        loads in place of the machine's file."""
        text = self.text(f"/etc/pam.d/{service}")
        assert text.count("pam_watchword.so") == 1, text
        out = self.root.parent / f"{service}.pam"
        out.write_text(text.replace("pam_watchword.so", f"{MODULE_PATH} {self.module_args()}"))
        return out


def findings(checks: list[dict], status: str | None = None, check: str | None = None) -> list[str]:
    """The detail lines of doctor's findings with a status and/or a check name."""
    return [c["detail"] for c in checks
            if (status is None or c["status"] == status) and (check is None or c["check"] == check)]


def free_uid() -> int:
    used = {int(line.split(":")[2]) for line in Path("/etc/passwd").read_text().splitlines() if line.count(":") >= 6}
    return next(uid for uid in range(2900, 60000) if uid not in used)


class LoginUser:
    """A user with a password, a home and an SSH key, existing only in private copies of
    /etc/passwd, /etc/shadow and /etc/group (see ``mounts``)."""

    def __init__(self, base: Path, name: str = "wwssh", password: str = "correct horse 42"):
        self.name = name
        self.password = password
        self.uid = free_uid()
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
        # The home must be reachable by the user (sshd reads authorized_keys as them), so it
        # lives directly under /tmp rather than inside pytest's root-only directory.
        self.home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
        os.chmod(self.home, 0o755)
        ssh = self.home / ".ssh"
        ssh.mkdir(mode=0o700)
        self.key = base / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.key)], check=True)
        shutil.copyfile(f"{self.key}.pub", ssh / "authorized_keys")
        for p in (self.home, ssh, ssh / "authorized_keys"):
            os.chown(p, self.uid, self.uid)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True,
                                text=True, check=True).stdout.strip()
        self.files = {
            "/etc/passwd": Path("/etc/passwd").read_text() + f"{name}:x:{self.uid}:{self.uid}::{self.home}:/bin/sh\n",
            "/etc/shadow": Path("/etc/shadow").read_text() + f"{name}:{hashed}:19000:0:99999:7:::\n",
            "/etc/group": Path("/etc/group").read_text() + f"{name}:x:{self.uid}:\n",
        }
        self.private = base / "accounts"
        self.private.mkdir()
        for target, text in self.files.items():
            p = self.private / Path(target).name
            p.write_text(text)
            p.chmod(0o640 if target == "/etc/shadow" else 0o644)

    def mounts(self) -> list[str]:
        """Shell commands that bind the private account files over the real ones."""
        return [f"mount --bind {self.private / Path(t).name} {t}" for t in self.files]

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
