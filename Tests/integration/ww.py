"""A watchword installation in a temp directory: the real CLI and the real helper,
a private state directory and config, and codes from the independent oathtool."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import REPO_ROOT, install_helper, make_root_dir

BUILD = Path(os.environ.get("WATCHWORD_BUILD", REPO_ROOT / ".build" / "debug"))
# Tests/run.sh points these at the installed Debian package (/usr/sbin/watchword,
# /usr/libexec/watchword/watchword-helper); without them, the build's.
CLI = Path(os.environ.get("WATCHWORD_CLI", BUILD / "watchword"))
HELPER = Path(os.environ.get("WATCHWORD_HELPER", BUILD / "watchword-helper"))
# The static helper the package installs hands SMS, fleet, group and QR logins to this one,
# next to it; a build's own helper (debug or plain release) has none and does everything.
DYNAMIC_HELPER = HELPER.parent / "watchword-helper-dynamic"


def is_static(binary: Path) -> bool:
    """True for a fully static executable: no program interpreter, no dynamic section."""
    out = subprocess.run(["readelf", "-l", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return "Requesting program interpreter" not in out and "NEEDED" not in out


def helper_binaries() -> list[Path]:
    """The helper the module runs, and the dynamic one it hands logins to when there is one."""
    return [HELPER] + ([DYNAMIC_HELPER] if DYNAMIC_HELPER.is_file() else [])


# The crash-safety tests need the crash points that only debug builds compile in
# (WATCHWORD_TEST_HOOKS); Tests/run.sh runs everything else against the release build.
HOOKS_BUILD = Path(os.environ.get("WATCHWORD_HOOKS_BUILD", BUILD))


def oathtool_totp(secret_b32: str, at: float | None = None, *, algorithm="sha1",
                  digits=6, period=30) -> str:
    """The TOTP code at time `at` (default now), computed by oathtool."""
    when = int(time.time() if at is None else at)
    argv = ["oathtool", "--base32", f"--totp={algorithm.upper()}", f"--digits={digits}",
            f"--time-step-size={period}s", f"--now=@{when}", secret_b32]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def wait_for_step_margin(margin: float = 5, period: int = 30) -> float:
    """Sleeps past the end of the current TOTP step when fewer than `margin` seconds of it
    are left, so that what follows (a login or two, on a loaded 2-core machine with a debug
    build) happens within one step. Returns the time then."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.1)
    return time.time()


def fresh_totp(secret_b32: str, margin: float = 5, **kw) -> str:
    """The current TOTP code, with at least `margin` seconds left in its step."""
    wait_for_step_margin(margin, kw.get("period", 30))
    return oathtool_totp(secret_b32, **kw)


def oathtool_hotp(secret_b32: str, counter: int, digits=6) -> str:
    argv = ["oathtool", "--base32", f"--digits={digits}", "-c", str(counter), secret_b32]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def wrong_of(code: str) -> str:
    """Another code of the same length, far from `code` (a guess that is wrong now)."""
    return f"{(int(code) + 500_000) % 10 ** len(code):0{len(code)}d}"


def wrong_totp_codes(secret_b32: str, count: int = 1, minutes: int = 2) -> list[str]:
    """`count` 6-digit codes that are not the code of any step from the one before now to
    `minutes` ahead: wrong guesses for a test that must not hit a valid code by chance."""
    now = time.time()
    valid = {oathtool_totp(secret_b32, now + 30 * k) for k in range(-1, 2 * minutes + 1)}
    return [c for c in (f"{i:06d}" for i in range(count + len(valid))) if c not in valid][:count]


def wrong_hotp_code(secret_b32: str, counter: int, lookahead: int) -> str:
    """A 6-digit code that no counter from `counter` to `counter + lookahead` gives."""
    argv = ["oathtool", "--base32", "-w", str(lookahead), "-c", str(counter), secret_b32]
    valid = set(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split())
    return next(c for c in (f"{i:06d}" for i in range(len(valid) + 1)) if c not in valid)


def secret_of(uri: str) -> str:
    from urllib.parse import parse_qs, urlparse
    return parse_qs(urlparse(uri).query)["secret"][0]


class Watchword:
    """One private watchword: a root 0700 base with state/ and etc/config.toml."""

    def __init__(self, base: Path, helper_dir: Path, build: Path = BUILD):
        self.base = make_root_dir(base, 0o700)
        self.state = self.base / "state"
        self.etc = make_root_dir(self.base / "etc", 0o700)
        self.config = self.etc / "config.toml"
        self.cli_path = CLI if build == BUILD else build / "watchword"
        self.helper = install_helper(HELPER if build == BUILD else build / "watchword-helper", helper_dir)
        # args() names this file with config=, which must exist: start with the defaults.
        self.write_config("")

    # --- CLI -------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, input: str | None = None,
            state: bool = True, env: dict | None = None, preexec_fn=None,
            strict: bool = False) -> subprocess.CompletedProcess:
        """Runs the CLI on this installation. The tests' users (alice, bob, ...) have no
        system accounts, so `enroll` gets --allow-unknown-user unless `strict`."""
        if args and args[0] == "enroll" and not strict:
            args = (args[0], "--allow-unknown-user", *args[1:])
        argv = [str(self.cli_path), *args]
        if state and args and not args[0].startswith("-"):
            argv += ["--state-dir", str(self.state), "--config", str(self.config)]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60, env=env,
                              preexec_fn=preexec_fn)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def enroll(self, user: str, *extra: str) -> dict:
        """Enrolls with --json; returns the object plus 'secret'."""
        kind = [] if ("--hotp" in extra or "--totp" in extra) else ["--totp"]
        out = json.loads(self.cli("enroll", user, *kind, *extra, "--json").stdout)
        out["secret"] = secret_of(out["otpauth_uri"])
        return out

    def show(self, user: str) -> dict:
        return json.loads(self.cli("show", user, "--json").stdout)

    def write_config(self, text: str, mode: int = 0o600) -> None:
        self.config.write_text(text)
        os.chown(self.config, 0, 0)
        os.chmod(self.config, mode)

    def audit(self) -> list[dict]:
        """The audit trail's lines, parsed."""
        path = self.state / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def user_file(self, user: str) -> Path:
        return self.state / "users" / user

    def args(self, extra: str = "") -> str:
        """Module arguments pointing at this installation."""
        return f"helper={self.helper} state_dir={self.state} config={self.config} {extra}".strip()

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the state directory, for before/after comparisons; not the
        audit trail, which grows at every login and admin action."""
        out = {}
        for root, _, files in os.walk(self.state):
            for f in files:
                p = Path(root) / f
                if p.parent == self.state and f in ("audit.log", "audit.log.1"):
                    continue
                if not p.is_symlink() and p.is_file():
                    out[str(p.relative_to(self.state))] = p.read_bytes()
        return out
