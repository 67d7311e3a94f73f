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
import stat
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
# Tests/run.sh points WATCHWORD_MODULE at the installed package's module; without it the
# tests build pam/pam_watchword.so.
INSTALLED_MODULE = os.environ.get("WATCHWORD_MODULE")
MODULE_PATH = Path(INSTALLED_MODULE) if INSTALLED_MODULE else PAM_SRC_DIR / "pam_watchword.so"
FAKE_HELPERS_DIR = INTEGRATION_DIR / "fake_helpers"
# The dynamically linked helper the static one hands SMS, fleet, group and QR logins to.
DYNAMIC_HELPER = "watchword-helper-dynamic"
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

# The module runs a helper only if every directory above it is root's and not writable
# by group or other, so /tmp (1777) cannot hold the tests' helpers: pytest's temporary
# directories (tmp_path and the rest) live under a root 0755 directory instead, in
# pytest's own numbered, self-cleaning layout. An explicit --basetemp must satisfy
# the same rule (helper_dir checks).
TEST_TEMP_ROOT = Path("/var/lib/watchword-tests")
if os.geteuid() == 0 and "PYTEST_DEBUG_TEMPROOT" not in os.environ:
    TEST_TEMP_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chown(TEST_TEMP_ROOT, 0, 0)
    os.chmod(TEST_TEMP_ROOT, 0o755)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = str(TEST_TEMP_ROOT)

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
    """Build pam/pam_watchword.so with its Makefile; return its path (or the installed
    module's, when WATCHWORD_MODULE names one)."""
    if INSTALLED_MODULE:
        if not MODULE_PATH.is_file():
            raise RuntimeError(f"WATCHWORD_MODULE={MODULE_PATH} does not exist")
        return MODULE_PATH
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
    """Copy an executable into dest_dir as root-owned name with mode. The static helper
    the package installs hands some logins to watchword-helper-dynamic in its own
    directory: when src has that sibling, it is copied along."""
    dest = Path(dest_dir) / name
    shutil.copyfile(src, dest)
    os.chown(dest, 0, 0)
    os.chmod(dest, mode)
    dynamic = Path(src).parent / DYNAMIC_HELPER
    if name == "watchword-helper" and dynamic.is_file():
        shutil.copyfile(dynamic, Path(dest_dir) / DYNAMIC_HELPER)
        os.chown(Path(dest_dir) / DYNAMIC_HELPER, 0, 0)
        os.chmod(Path(dest_dir) / DYNAMIC_HELPER, 0o755)
    return dest


def helper_executables(helper: Path) -> set[str]:
    """The paths a running helper's /proc/PID/exe may show: the helper, or the dynamic one
    beside it that the static helper hands some logins to."""
    return {str(helper), str(Path(helper).parent / DYNAMIC_HELPER)}


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
                if not _pam_wrapper_failed(text):
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
    return not _module_ran(output) and ("performing operation - authenticate" not in output
                                        or _wrapper_setup_failed(output))


def _module_ran(output: str) -> bool:
    """The module logged its summary line: its decision stands, never run it again."""
    return " outcome=" in output


def _wrapper_setup_failed(output: str) -> bool:
    return ("no modules loaded for" in output
            or "Failed to create pam_wrapper config dir" in output
            or "Critical error - immediate abort" in output)


def _pam_client_wrapper_failed(stdout: str, stderr: str) -> bool:
    """pam_client's sign of pam_wrapper's race (see _pam_wrapper_failed): libpam aborts
    (PAM_ABORT, 26) or finds no modules before any module runs; pam_watchword.so, which
    always logs a result line, has then logged nothing, so running the client again is safe."""
    output = stdout + stderr
    return not _module_ran(output) and (_wrapper_setup_failed(output) or '"rc": 26,' in stdout)


def run_pam_client(service_dir: Path, service: str, user: str,
                   responses: Sequence, *, flags: int = 0,
                   items: Mapping[str, str] | None = None,
                   env_extra: Mapping[str, str] | None = None,
                   timeout: float = 60, preexec_fn=None) -> PamRun:
    """Run pam_client.py (scripted conversation, see its docstring). items are PAM
    items to set (rhost, tty, ruser, service); any byte string can be given as text
    with surrogateescape (os.fsdecode), like user."""
    argv = [sys.executable, str(PAM_CLIENT), service, user,
            json.dumps(list(responses)), str(flags), json.dumps(dict(items or {}))]
    for _attempt in range(8):
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True,
                              env=pam_env(service_dir, env_extra), timeout=timeout,
                              stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        if not _pam_client_wrapper_failed(proc.stdout, proc.stderr):
            break
    run = PamRun(proc.returncode, proc.stdout, proc.stderr,
                 time.monotonic() - start)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        run.pam_rc = result["rc"]
        run.messages = result["messages"]
    return run


def run_pam_clients_at_once(service_dir: Path, services: Sequence[str], user: str, answer,
                            barrier: Path, *, timeout: float = 120) -> list[dict]:
    """One pam_client.py login of `user` per entry of `services` (service names), all
    started together; each answers its first prompt with `answer` only once all of them
    are at that prompt, so the answers reach the module at the same moment.

    Each client makes barrier/ready.PID at its prompt and waits for barrier/go, made here
    once all are waiting (pam_client.py's {"barrier": ...} answer). Returns each client's
    result ({"rc", "error", "messages"}), in the order of `services`."""
    barrier = Path(barrier)
    barrier.mkdir()
    responses = json.dumps([{"barrier": str(barrier), "answer": answer}])

    def start(service):
        return subprocess.Popen([sys.executable, str(PAM_CLIENT), service, user, responses],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=pam_env(service_dir), stdin=subprocess.DEVNULL)

    procs = [start(s) for s in services]
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("ready.*"))) < len(procs):
        for i, p in enumerate(procs):
            if p.poll() is not None:
                out, err = p.communicate()
                if _pam_client_wrapper_failed(out, err):
                    procs[i] = start(services[i])
                else:
                    raise AssertionError(f"a login ended before all were at the prompt:\n{out}{err}")
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise AssertionError("the logins never all reached the prompt")
        time.sleep(0.01)
    (barrier / "go").touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        assert lines, out + err
        results.append(json.loads(lines[-1]))
    return results


@pytest.fixture(scope="session")
def pam_module() -> Path:
    """The freshly built pam_watchword.so (skips unless root)."""
    if os.geteuid() != 0:
        pytest.skip("the PAM integration tests must run as root")
    return build_module()


def unsafe_ancestor(path: Path) -> Path | None:
    """The first directory from / down to path that the module would refuse above a
    helper (not root's, writable by group or other, or a symlink), else None."""
    path = Path(path)
    for d in [*reversed(path.parents), path]:
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            return d
    return None


@pytest.fixture
def helper_dir(tmp_path) -> Path:
    """A root-owned 0755 directory to install helpers into, on a path the module
    accepts (see TEST_TEMP_ROOT)."""
    path = make_root_dir(tmp_path / "libexec")
    bad = unsafe_ancestor(path)
    assert bad is None, f"helpers cannot run below {bad}: use a root 0755 --basetemp"
    return path


@pytest.fixture(scope="session")
def inspect_binary(tmp_path_factory) -> Path:
    """fake_helpers/inspect_helper.c, compiled (records the environment it ran in
    as record.json next to itself, then reports success)."""
    binary = tmp_path_factory.mktemp("inspect-build") / "inspect"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(FAKE_HELPERS_DIR / "inspect_helper.c")],
                   check=True)
    return binary


@pytest.fixture
def inspect_helper(helper_dir, inspect_binary) -> Path:
    """The inspect helper installed in helper_dir."""
    return install_helper(inspect_binary, helper_dir)


@pytest.fixture
def ww(tmp_path, helper_dir, pam_module):
    """A private watchword (ww.Watchword): state, config and helper of its own."""
    from ww import Watchword  # ww imports this module
    return Watchword(tmp_path / "ww", helper_dir)


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
             flags: int = 0, extra_lines: Sequence[str] = (), items=None,
             env_extra=None, timeout: float = 60,
             service: str = DEFAULT_SERVICE, preexec_fn=None) -> PamRun:
        write_service(service_dir, service,
                      [f"auth required {pam_module} {service_args}".rstrip(),
                       *extra_lines])
        return run_pam_client(service_dir, service, user, responses,
                              flags=flags, items=items, env_extra=env_extra,
                              timeout=timeout, preexec_fn=preexec_fn)

    return _run


# ---- skips on CI ---------------------------------------------------------------------
#
# A skip hides coverage. CI (`bash .ci/run` with CI=true) runs as root on a machine that
# install/deps.sh has given every tool the tests use, so there a skip means a test that
# should have run did not: it fails instead, unless it is listed here with the reason it
# may skip on CI too. Tests/run.sh runs pytest with -rs, so every skip is listed anywhere.

ALLOWED_SKIPS_ON_CI: dict[str, str] = {
    # "test_file.py::test_name": "why it may skip on the CI machine",
}

ON_CI = os.environ.get("CI", "").lower() == "true"


def _skip_allowed(nodeid: str) -> bool:
    name = nodeid.split("/")[-1]
    return any(name == allowed or name.startswith(allowed + "[") for allowed in ALLOWED_SKIPS_ON_CI)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip(report) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"skipped on CI (CI=true), where it must run: {reason}\n"
                       "Install what it needs in install/deps.sh, or add it to ALLOWED_SKIPS_ON_CI in "
                       "Tests/integration/conftest.py with the reason.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and not hasattr(report, "wasxfail") and not _skip_allowed(item.nodeid):
        _fail_skip(report)


_skipped_files_on_ci: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole file skipped at import (pytest.importorskip, a module-level skip): turning
    that into a collection error would stop the run, so it is noted and fails the session
    at the end instead."""
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and not _skip_allowed(report.nodeid):
        _skipped_files_on_ci.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_terminal_summary(terminalreporter):
    for line in _skipped_files_on_ci:
        terminalreporter.write_line(f"FAILED (skipped on CI, where it must run) {line}", red=True)


def pytest_sessionfinish(session, exitstatus):
    if _skipped_files_on_ci and session.exitstatus == 0:
        session.exitstatus = 1
