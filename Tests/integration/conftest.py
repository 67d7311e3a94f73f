"""Shared fixtures for integration tests that drive the real pam_watchword.so.

The module is built with ``make -C pam`` once per session and loaded through
the real libpam, with pam_wrapper (LD_PRELOAD=libpam_wrapper.so) pointing
libpam at a per-test directory of service files. pam_wrapper prints the
module's pam_syslog lines on stderr as ``PWRAP_<LEVEL>[...] - SYSLOG(<prio>):
<message>``; ``PamRun.syslog`` parses them.

Typical use::

    def test_something(run_pam, helper_dir):
        helper = install_helper(MY_HELPER, helper_dir)
        res = run_pam(f"helper={helper} timeout=5", "alice", "123456\\n")
        assert res.rc == 0, res.output
        assert res.logged("outcome=success")

``run_pam_conv`` does the same through pam_client.py when a test needs a
scripted conversation (answers over 4095 bytes, a failing conversation,
PAM_SILENT with the exact messages, a slow user).

Tests must run as root: the module insists on a root-owned helper.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent
REPO_ROOT = INTEGRATION_DIR.parents[1]
PAM_SRC_DIR = REPO_ROOT / "pam"
MODULE_PATH = PAM_SRC_DIR / "pam_watchword.so"
FAKE_HELPERS_DIR = INTEGRATION_DIR / "fake_helpers"
PAM_CLIENT = INTEGRATION_DIR / "pam_client.py"

PAM_WRAPPER_LIB = "libpam_wrapper.so"
DEFAULT_SERVICE = "watchword-test"

# PAM return codes (security/_pam_types.h), for PamRun.pam_rc.
PAM_SUCCESS = 0
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_MAXTRIES = 11
PAM_CONV_ERR = 19
PAM_IGNORE = 25

_SYSLOG_RE = re.compile(r"PWRAP_\w+\[[^\]]*\] - SYSLOG\((\d+)\): (.*)")


@dataclass
class PamRun:
    """What one PAM transaction produced."""

    rc: int  # exit status of the client: 0 = PAM_SUCCESS, 1 = failure
    stdout: str
    stderr: str
    elapsed: float  # seconds
    pam_rc: int | None = None  # the PAM code itself (pam_client runs only)
    messages: list = field(default_factory=list)  # conversation (pam_client)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def syslog(self) -> list[tuple[int, str]]:
        """(priority, message) for every pam_syslog line, in order."""
        return [(int(m.group(1)), m.group(2))
                for m in _SYSLOG_RE.finditer(self.stderr)]

    def logged(self, text: str) -> bool:
        """True if some pam_syslog message contains text."""
        return any(text in msg for _, msg in self.syslog)

    def log_text(self) -> str:
        return "\n".join(msg for _, msg in self.syslog)


def build_module() -> Path:
    """Build pam/pam_watchword.so with its Makefile; return its path."""
    proc = subprocess.run(["make", "-C", str(PAM_SRC_DIR)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("make -C pam failed:\n" + proc.stdout + proc.stderr)
    return MODULE_PATH


def write_service(service_dir: Path, name: str, lines: Iterable[str]) -> Path:
    """Write a PAM service file (one config line per item) for pam_wrapper."""
    service_dir = Path(service_dir)
    service_dir.mkdir(parents=True, exist_ok=True)
    path = service_dir / name
    path.write_text("".join(line.rstrip("\n") + "\n" for line in lines))
    return path


def make_root_dir(path: Path, mode: int = 0o755) -> Path:
    """Create path as a root-owned directory with mode (for helpers)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def install_helper(src: Path | str, dest_dir: Path, name: str = "watchword-helper",
                   mode: int = 0o755) -> Path:
    """Copy an executable into dest_dir as root-owned name with mode."""
    dest = Path(dest_dir) / name
    shutil.copyfile(src, dest)
    os.chown(dest, 0, 0)
    os.chmod(dest, mode)
    return dest


def pam_env(service_dir: Path, env_extra: Mapping[str, str] | None = None) -> dict:
    """Environment for a PAM client under pam_wrapper."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C",
        "LC_ALL": "C",
        "LD_PRELOAD": PAM_WRAPPER_LIB,
        "PAM_WRAPPER": "1",
        "PAM_WRAPPER_SERVICE_DIR": str(service_dir),
        # Level 2 makes pam_wrapper print pam_syslog lines of every priority.
        "PAM_WRAPPER_DEBUGLEVEL": "2",
    }
    if env_extra:
        env.update(env_extra)
    return env


def run_pamtester(service_dir: Path, service: str, user: str, input: str = "",
                  *, operation: str = "authenticate",
                  items: Mapping[str, str] | None = None,
                  env_extra: Mapping[str, str] | None = None,
                  timeout: float = 60, preexec_fn=None,
                  pass_fds: Sequence[int] = ()) -> PamRun:
    """Run ``pamtester -v [-I k=v]... service user operation`` under
    pam_wrapper with input on stdin (misc_conv reads answers from it)."""
    argv = ["pamtester", "-v"]
    for key, value in (items or {}).items():
        argv += ["-I", f"{key}={value}"]
    argv += [service, user, operation]
    for _attempt in range(8):
        start = time.monotonic()
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              errors="backslashreplace",
                              env=pam_env(service_dir, env_extra), timeout=timeout,
                              preexec_fn=preexec_fn, pass_fds=tuple(pass_fds))
        if not _pam_wrapper_failed(proc.stdout + proc.stderr):
            break
    return PamRun(proc.returncode, proc.stdout, proc.stderr,
                  time.monotonic() - start)


def run_pamtesters_together(service_dir: Path, jobs: Sequence[tuple[str, str, str]], *,
                            prompt: str = "Verification code: ", timeout: float = 120) -> list[PamRun]:
    """Runs one ``pamtester -v SERVICE USER authenticate`` per (service, user, answer) in
    jobs, all at once: every process is started, then nothing is answered until every one
    of them shows `prompt` (its helper is running and waiting for the code); then all the
    answers are written, one right after another. So len(jobs) logins really are in flight
    together when the codes arrive. A client that pam_wrapper's /tmp copy failed before it
    prompted is started again (no code was checked). Returns the runs in the order of
    jobs; raises if a client ends before prompting for another reason."""
    import selectors

    env = pam_env(service_dir)
    deadline = time.monotonic() + timeout
    procs: list[subprocess.Popen] = [None] * len(jobs)  # type: ignore[list-item]
    outs: list[list[bytearray]] = [[bytearray(), bytearray()] for _ in jobs]
    sel = selectors.DefaultSelector()

    def start(i: int) -> None:
        for key in list(sel.get_map().values()):  # a previous client's pipes
            if key.data[0] == i:
                sel.unregister(key.fileobj)
                key.fileobj.close()
        if procs[i] is not None:
            procs[i].stdin.close()
        service, user, _ = jobs[i]
        proc = subprocess.Popen(["pamtester", "-v", service, user, "authenticate"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        procs[i] = proc
        outs[i] = [bytearray(), bytearray()]
        for k, stream in enumerate((proc.stdout, proc.stderr)):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ, (i, k))

    def pump(wait: float) -> list[int]:
        """Reads what is there; returns the indexes of clients whose output ended."""
        ended = []
        for key, _ in sel.select(wait):
            i, k = key.data
            chunk = os.read(key.fileobj.fileno(), 65536)
            if chunk:
                outs[i][k] += chunk
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                if k == 1:
                    ended.append(i)
        return ended

    start_time = time.monotonic()
    for i in range(len(jobs)):
        start(i)
    waiting = set(range(len(jobs)))
    while waiting:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(waiting)} of {len(jobs)} clients never prompted")
        for i in pump(0.5):
            text = (outs[i][0] + outs[i][1]).decode(errors="backslashreplace")
            if i in waiting and prompt not in text:
                procs[i].wait()
                # Ended before any code was asked for, so none was checked: starting it again
                # counts nothing twice. Only for pam_wrapper's races over its /tmp/pam.X
                # copies (which other test runs on the machine share).
                if not (_pam_wrapper_failed(text) or "Failed to create pam_wrapper config dir" in text):
                    raise AssertionError(f"client {i} ended before the prompt:\n{text}")
                start(i)
        waiting = {i for i in waiting if prompt.encode() not in outs[i][1]}
    # Every helper is now waiting for its code: answer them all at once.
    for i, (_, _, answer) in enumerate(jobs):
        try:
            procs[i].stdin.write(answer.encode())
            procs[i].stdin.close()
        except BrokenPipeError:
            pass
    while sel.get_map():
        if time.monotonic() > deadline:
            raise AssertionError("clients did not finish in time")
        pump(0.5)
    elapsed = time.monotonic() - start_time
    runs = []
    for i, proc in enumerate(procs):
        proc.wait(timeout=max(1, deadline - time.monotonic()))
        runs.append(PamRun(proc.returncode, outs[i][0].decode(errors="backslashreplace"),
                           outs[i][1].decode(errors="backslashreplace"), elapsed))
    return runs


def _pam_wrapper_failed(output: str) -> bool:
    """pam_wrapper copies the service directory to /tmp/pam.<one letter>, which races
    when many clients start at once (seen: about 1 in 100 at 32 in parallel). Then
    pam_authenticate is never called, or finds no modules: the module never ran, so
    running the client again is safe and is not a retry of the module's decision."""
    return ("performing operation - authenticate" not in output
            or "no modules loaded for" in output)


def run_pam_client(service_dir: Path, service: str, user: str,
                   responses: Sequence, *, flags: int = 0,
                   env_extra: Mapping[str, str] | None = None,
                   timeout: float = 60) -> PamRun:
    """Run pam_client.py (scripted conversation, see its docstring)."""
    argv = [sys.executable, str(PAM_CLIENT), service, user,
            json.dumps(list(responses)), str(flags)]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True,
                          env=pam_env(service_dir, env_extra), timeout=timeout,
                          stdin=subprocess.DEVNULL)
    run = PamRun(proc.returncode, proc.stdout, proc.stderr,
                 time.monotonic() - start)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        run.pam_rc = result["rc"]
        run.messages = result["messages"]
    return run


@pytest.fixture(scope="session")
def pam_module() -> Path:
    """The freshly built pam_watchword.so (skips unless root)."""
    if os.geteuid() != 0:
        pytest.skip("the PAM integration tests must run as root")
    return build_module()


@pytest.fixture
def helper_dir(tmp_path) -> Path:
    """A root-owned 0755 directory to install helpers into."""
    return make_root_dir(tmp_path / "libexec")


@pytest.fixture
def service_dir(tmp_path) -> Path:
    """A directory for pam_wrapper service files."""
    path = tmp_path / "pam.d"
    path.mkdir()
    return path


@pytest.fixture
def run_pam(pam_module, service_dir):
    """run_pam(service_args, user, input="", *, extra_lines=(), items=None,
    operation="authenticate", env_extra=None, timeout=60,
    service="watchword-test", control="required", preexec_fn=None,
    pass_fds=()) -> PamRun

    Writes the service file ``auth <control> <abs pam_watchword.so>
    <service_args>`` followed by extra_lines, then runs pamtester with input
    on stdin. ``operation`` may carry pamtester flags, e.g.
    "authenticate(PAM_SILENT)"; items become ``-I key=value`` (rhost, tty,
    ruser...); pass_fds are left open in pamtester (to check that the
    module closes them for the helper).
    """

    def _run(service_args: str, user: str, input: str = "", *,
             extra_lines: Sequence[str] = (), items=None,
             operation: str = "authenticate", env_extra=None,
             timeout: float = 60, service: str = DEFAULT_SERVICE,
             control: str = "required", preexec_fn=None,
             pass_fds: Sequence[int] = ()) -> PamRun:
        write_service(service_dir, service,
                      [f"auth {control} {pam_module} {service_args}".rstrip(),
                       *extra_lines])
        return run_pamtester(service_dir, service, user, input,
                             operation=operation, items=items,
                             env_extra=env_extra, timeout=timeout,
                             preexec_fn=preexec_fn, pass_fds=pass_fds)

    return _run


@pytest.fixture
def run_pam_conv(pam_module, service_dir):
    """run_pam_conv(service_args, user, responses, *, flags=0,
    extra_lines=(), env_extra=None, timeout=60, service="watchword-test")
    -> PamRun with pam_rc and messages set.

    Like run_pam, but the conversation is scripted by pam_client.py:
    responses is a list of answers (str), None (conversation failure) or
    {"repeat": s, "count": n}.
    """

    def _run(service_args: str, user: str, responses: Sequence, *,
             flags: int = 0, extra_lines: Sequence[str] = (), env_extra=None,
             timeout: float = 60, service: str = DEFAULT_SERVICE) -> PamRun:
        write_service(service_dir, service,
                      [f"auth required {pam_module} {service_args}".rstrip(),
                       *extra_lines])
        return run_pam_client(service_dir, service, user, responses,
                              flags=flags, env_extra=env_extra,
                              timeout=timeout)

    return _run
