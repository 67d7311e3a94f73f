"""How pam_watchword.so starts its helper, through the real module and real libpam.

The helper the module runs is the file it checked: walked from / without following links,
every directory on the way root's and not writable by group or other, opened once and
executed from that descriptor. What the caller leaves in its process (resource limits,
umask, working directory, a setuid caller's uids and groups) does not reach the helper.
"""
from __future__ import annotations

import ctypes
import json
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (FAKE_HELPERS_DIR, MODULE_PATH, TEST_TEMP_ROOT, install_helper,
                      make_root_dir, write_service)
from ww import Watchword, oathtool_totp

GOOD_HELPER = FAKE_HELPERS_DIR / "good_helper.py"
SCRIPTED_HELPER = FAKE_HELPERS_DIR / "scripted_helper.py"
UNAVAIL = "Authentication service cannot retrieve authentication info"
SUCCESS = "pamtester: successfully authenticated"
INFINITY = -1  # how inspect_helper writes RLIM_INFINITY


def record(directory: Path) -> dict | None:
    path = Path(directory) / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


def denied(res, logged: str) -> None:
    assert res.rc == 1 and UNAVAIL in res.output, res.output
    assert SUCCESS not in res.output
    assert res.logged(logged), res.log_text()
    assert res.logged("result=PAM_AUTHINFO_UNAVAIL"), res.log_text()


# ---- every directory above the helper --------------------------------------------------

@pytest.fixture
def chain(tmp_path, good_helper_factory):
    """base/sub/watchword-helper, all root 0755: the helper two levels below base."""
    base = make_root_dir(tmp_path / "base")
    sub = make_root_dir(base / "sub")
    return base, sub, good_helper_factory(sub)


@pytest.fixture
def good_helper_factory():
    return lambda directory: install_helper(GOOD_HELPER, directory)


@pytest.mark.parametrize("mode, owner, reason", [
    (0o777, "root", "helper directory is writable by group or other"),
    (0o1777, "root", "helper directory is writable by group or other"),  # sticky, like /tmp
    (0o775, "root", "helper directory is writable by group or other"),
    (0o755, "nobody", "helper directory is not owned by root"),
])
def test_a_directory_two_levels_up_must_be_roots_and_not_writable(run_pam, chain, mode, owner, reason):
    base, sub, helper = chain
    ok = run_pam(f"helper={helper}", "alice", "123456\n")
    assert ok.rc == 0 and SUCCESS in ok.output, ok.output
    (sub / "record.json").unlink()

    uid = pwd.getpwnam(owner).pw_uid
    os.chown(base, uid, uid)
    os.chmod(base, mode)
    res = run_pam(f"helper={helper}", "alice", "123456\n")
    denied(res, f"{reason}: {base}")
    assert record(sub) is None, "the helper must not run"


@pytest.mark.parametrize("where", ["directory", "helper"])
def test_a_symlink_anywhere_in_the_path_is_refused(run_pam, chain, where):
    base, sub, helper = chain
    if where == "directory":
        (base / "link").symlink_to("sub")
        path = base / "link" / helper.name
    else:
        (sub / "link").symlink_to(helper.name)
        path = sub / "link"
    res = run_pam(f"helper={path}", "alice", "123456\n")
    denied(res, f"helper path has a symlink: {path if where == 'helper' else base / 'link'}")
    assert record(sub) is None, "the helper must not run"


@pytest.mark.parametrize("spelling", ["{base}/sub/../sub/{name}", "{base}/./sub/{name}",
                                      "{base}//sub/{name}"])
def test_dot_dotdot_and_empty_components_are_refused(run_pam, chain, spelling):
    base, sub, helper = chain
    path = spelling.format(base=base, name=helper.name)
    res = run_pam(f"helper={path}", "alice", "123456\n")
    denied(res, "helper path has an empty, . or .. component")
    assert record(sub) is None, "the helper must not run"


def test_a_file_in_place_of_a_directory_is_refused(run_pam, chain):
    base, sub, helper = chain
    res = run_pam(f"helper={helper}/x", "alice", "123456\n")
    denied(res, f"helper directory is not a directory: {helper}")


# ---- what runs is what was checked -----------------------------------------------------

SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b, stop = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3]
swaps = 0
print("ready", flush=True)
while True:
    for _ in range(500):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
        swaps += 1
    if os.path.exists(stop) and swaps % 2 == 0:
        break
print(swaps, flush=True)
"""


def test_a_directory_swapped_for_a_symlink_never_runs_the_other_helper(run_pam, tmp_path, inspect_binary):
    """base/sub holds the real helper; base/swap is a symlink to base/evil, whose helper
    (owned by nobody, so refused by the check) leaves a marker when run. A second process
    exchanges sub and swap (renameat2 RENAME_EXCHANGE) in a tight loop while logins run.
    Checking by path and then executing the path again runs the evil helper whenever the
    exchange lands between the two; the descriptor the module checked cannot change."""
    base = make_root_dir(tmp_path / "race")
    sub = make_root_dir(base / "sub")
    helper = install_helper(inspect_binary, sub)
    evil = make_root_dir(base / "evil")
    marker = tmp_path / "evil-ran"
    script = evil / "src"
    script.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    evil_helper = install_helper(script, evil)
    nobody = pwd.getpwnam("nobody")
    os.chown(evil_helper, nobody.pw_uid, nobody.pw_gid)
    (base / "swap").symlink_to("evil")
    stop = tmp_path / "stop"

    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(base / "sub"), str(base / "swap"), str(stop)],
                               stdout=subprocess.PIPE, text=True)
    outcomes = {"success": 0, "symlink": 0, "other": 0}
    try:
        assert swapper.stdout.readline().strip() == "ready"
        for _ in range(200):
            res = run_pam(f"helper={helper}", "alice")
            if res.rc == 0 and SUCCESS in res.output:
                outcomes["success"] += 1
            elif res.logged(f"helper path has a symlink: {base / 'sub'}"):
                outcomes["symlink"] += 1
            else:
                outcomes["other"] += 1
    finally:
        stop.touch()
        out, _ = swapper.communicate(timeout=30)
    assert swapper.returncode == 0, out
    assert (base / "sub").is_dir() and not (base / "sub").is_symlink()
    swaps = int(out.split()[-1])
    print(f"swaps={swaps} outcomes={outcomes} evil_runs="
          f"{len(marker.read_text().splitlines()) if marker.exists() else 0}")
    assert not marker.exists(), f"the swapped-in helper ran {marker.read_text().count('ran')} times: {outcomes}"
    assert swaps > 1000
    # The exchange really happened during the logins: some saw the symlink, some the directory.
    assert outcomes["symlink"] > 0 and outcomes["success"] > 0, outcomes
    assert outcomes["other"] == 0, outcomes


def test_a_script_helper_runs_from_its_descriptor(run_pam, helper_dir):
    """A "#!" helper (the tests' fakes) is executed through /dev/fd/3, its checked
    descriptor: the interpreter opens the file that was checked, not the path again."""
    steps = [["header"], ["send", "result {nonce} success"], ["exit", 0]]
    (helper_dir / "scenario.json").write_text(json.dumps(steps))
    helper = install_helper(SCRIPTED_HELPER, helper_dir)
    res = run_pam(f"helper={helper}", "alice")
    assert res.rc == 0 and SUCCESS in res.output, res.output
    assert record(helper_dir) is not None


# ---- what the caller leaves in its process ---------------------------------------------

def test_callers_umask_cwd_and_limits_do_not_reach_the_helper(run_pam, inspect_helper, helper_dir, tmp_path):
    elsewhere = tmp_path / "caller-cwd"
    elsewhere.mkdir()

    def careless_caller():
        os.umask(0)
        os.chdir(elsewhere)
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_CPU, (30, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    res = run_pam(f"helper={inspect_helper}", "alice", preexec_fn=careless_caller)
    assert res.rc == 0, res.output
    rec = record(helper_dir)
    assert rec["umask"] == 0o077
    assert rec["cwd"] == "/"
    limits = rec["limits"]
    assert limits["core"] == [0, 0]
    assert limits["fsize"] == [INFINITY, INFINITY]
    assert limits["cpu"] == [INFINITY, INFINITY]
    assert limits["nofile"] == [1024, 4096]
    assert limits["stack"][0] == 8 << 20


def can_raise_hard_limits() -> bool:
    """CAP_SYS_RESOURCE (bit 24) in our effective set: what su and sudo have on a host."""
    eff = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("CapEff:"))
    return bool(int(eff.split()[1], 16) & (1 << 24))


def test_a_hard_file_size_limit_is_raised_or_the_helper_does_not_run(run_pam, inspect_helper, helper_dir):
    """`ulimit -f 2` sets the hard limit too. Root with CAP_SYS_RESOURCE raises it; where
    root cannot (this sandbox's root lacks the capability), the helper must not run
    under it at all rather than be killed halfway through a write."""
    def hard_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    res = run_pam(f"helper={inspect_helper}", "alice", preexec_fn=hard_limit)
    if can_raise_hard_limits():
        assert res.rc == 0, res.output
        assert record(helper_dir)["limits"]["fsize"] == [INFINITY, INFINITY]
    else:
        denied(res, "could not be executed (exit status 127)")
        assert record(helper_dir) is None, "the helper must not run"


def test_callers_file_size_limit_does_not_kill_the_real_helper_mid_write(run_pam, tmp_path, helper_dir):
    """`ulimit -f` before su: the real helper appends to an audit trail already past the
    limit. It must log the user in and leave state and audit trail whole."""
    ww = Watchword(tmp_path / "ww", helper_dir)
    alice = ww.enroll("alice")
    audit = ww.state / "audit.log"
    line = audit.read_text().splitlines()[-1]
    with audit.open("a") as f:
        while audit.stat().st_size < 8 * 1024:
            f.write(line + "\n")
            f.flush()
    before = len(ww.audit())
    limit = 2048

    def tight_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    if time.time() % 30 > 28:
        time.sleep(3)
    now = time.time()
    res = run_pam(ww.args(), "alice", oathtool_totp(alice["secret"], now) + "\n", preexec_fn=tight_file_size)
    assert res.rc == 0 and SUCCESS in res.output, res.output
    lines = ww.user_file("alice").read_text().splitlines()  # whole: header to "end"
    assert lines[0] == "watchword-user 1" and lines[-1] == "end", lines
    assert f"otp.last_step {int(now) // 30}" in lines
    assert ww.show("alice")["failures"] == 0  # the CLI parses it
    entries = ww.audit()  # every line parses
    assert len(entries) == before + 1
    assert entries[-1]["event"] == "login" and entries[-1]["user"] == "alice"


def test_a_setuid_caller_gives_the_helper_full_root_identity(inspect_helper, helper_dir, tmp_path):
    """pamtester made setuid root and run by nobody with supplementary groups: real libpam
    with a private /etc/pam.d inside `unshare -m` (pam_wrapper cannot be preloaded into a
    setuid program). The helper must be wholly root: uids, gids, no groups."""
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("unshare and setpriv are needed")
    pamd = tmp_path / "pam.d-private"
    write_service(pamd, "watchword-test", [f"auth required {MODULE_PATH} helper={inspect_helper}"])
    # nobody must reach the setuid copy: a root 0755 directory, not the 0700 tmp_path.
    TEST_TEMP_ROOT.mkdir(mode=0o755, exist_ok=True)
    bindir = Path(tempfile.mkdtemp(prefix="setuid-", dir=TEST_TEMP_ROOT))
    try:
        os.chmod(bindir, 0o755)
        tester = bindir / "pamtester"
        shutil.copyfile(shutil.which("pamtester"), tester)
        os.chown(tester, 0, 0)
        os.chmod(tester, 0o4755)
        script = (f"mount --bind {pamd} /etc/pam.d && "
                  f"exec setpriv --reuid=nobody --regid=nogroup --groups=4,24 -- "
                  f"{tester} -v watchword-test alice authenticate")
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(bindir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = record(helper_dir)
    assert rec["uids"] == [0, 0, 0], rec
    assert rec["gids"] == [0, 0, 0], rec
    assert rec["groups"] == [], rec


# ---- what the helper sends back ---------------------------------------------------------

def test_helper_log_lines_lose_their_control_bytes(run_pam, helper_dir):
    steps = [["header"], ["send", "log err one\rtwo\x1b[2Jthree\x7f"],
             ["send", "result {nonce} success"], ["exit", 0]]
    (helper_dir / "scenario.json").write_text(json.dumps(steps))
    helper = install_helper(SCRIPTED_HELPER, helper_dir)
    res = run_pam(f"helper={helper}", "alice")
    assert res.rc == 0, res.output
    assert res.logged("one?two?[2Jthree?"), res.log_text()
    assert "\x1b" not in res.stderr and "\r" not in res.stderr


# ---- the caller is left as it was ---------------------------------------------------------

CALLER = r'''
import json, os, runpy, signal, sys, threading
client, service, user = sys.argv[1:4]
os.chdir("/tmp")
os.umask(0o027)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
os.setresuid(65534, 0, 0)  # as a setuid program run by nobody (sudo): real uid nobody
go, seen = threading.Event(), {}
def other():
    go.wait()
    seen["ids"] = os.getresuid()  # this thread's own ids (the kernel keeps them per thread)
thread = threading.Thread(target=other)
thread.start()
sys.argv = [client, service, user, json.dumps([])]
try:
    runpy.run_path(client, run_name="__main__")
except SystemExit:
    pass
go.set()
thread.join()
mask = os.umask(0)
# The kernel's dispositions, not Python's record of them.
ignored = int(next(l for l in open("/proc/self/status") if l.startswith("SigIgn:")).split()[1], 16)
print(json.dumps({"thread": seen["ids"], "main": os.getresuid(), "cwd": os.getcwd(), "umask": mask,
                  "usr1_ignored": bool(ignored >> (signal.SIGUSR1 - 1) & 1)}), file=sys.stderr)
'''


def test_the_caller_keeps_its_ids_directory_umask_and_signals(pam_module, service_dir, inspect_helper, helper_dir,
                                                               tmp_path):
    """The module starts the helper without fork(): the child shares the caller's memory
    until it executes the helper (CLONE_VM | CLONE_VFORK). What the child changes for the
    helper — ids (to root), directory, umask, signal dispositions — must stay the child's:
    a threaded caller that is root with a real uid of nobody, as sudo is, has the same
    ids in both of its threads, its directory, umask and ignored signal afterwards."""
    from conftest import PAM_CLIENT, pam_env, write_service
    write_service(service_dir, "watchword-test", [f"auth required {MODULE_PATH} helper={inspect_helper}"])
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    proc = subprocess.run([sys.executable, str(script), str(PAM_CLIENT), "watchword-test", "alice"],
                          capture_output=True, text=True, timeout=60, env=pam_env(service_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["rc"] == 0, proc.stdout
    rec = record(helper_dir)
    assert rec["uids"] == [0, 0, 0] and rec["cwd"] == "/", rec  # the helper got what it should
    caller = json.loads(proc.stderr.strip().splitlines()[-1])
    assert caller == {"thread": [65534, 0, 0], "main": [65534, 0, 0], "cwd": "/tmp", "umask": 0o027,
                      "usr1_ignored": True}, caller
