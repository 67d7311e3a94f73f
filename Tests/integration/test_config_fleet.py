"""A login is only as strong as the store it asks: a config named on the module line
that does not exist, or a state directory that has joined a fleet read as a local store,
must deny — never turn an enrolled user into "not enrolled", which `nullok` lets through.

Through the real pam_watchword.so (pam_wrapper + pamtester), the real helper and the real
CLI. The fleet's own side (store init, import-files and the first login write the marker)
is in test_fleet.py::test_joining_a_fleet_marks_the_state_directory.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_root_dir
from mountns import private_mounts
from ww import Watchword, oathtool_totp, fresh_totp as fresh_code

UNAVAILABLE = "Authentication service cannot retrieve authentication info"
DEFAULT_CONFIG_DIR = Path("/etc/watchword")
PERMIT = ("auth required pam_permit.so",)



def mark_fleet(ww) -> Path:
    """The marker as `store init` writes it (the fleet tests check that it does)."""
    marker = ww.state / "fleet"
    marker.write_text("This watchword state directory belongs to a fleet (store backend postgres).\n")
    os.chown(marker, 0, 0)
    os.chmod(marker, 0o600)
    return marker


def without_default_config(empty: Path):
    """preexec_fn: a private mount namespace in which /etc/watchword is an empty
    directory, so the module's default config does not exist (whatever this machine has
    installed)."""
    return private_mounts(binds={str(DEFAULT_CONFIG_DIR): empty} if DEFAULT_CONFIG_DIR.exists() else {})


def test_a_named_config_that_does_not_exist_denies_even_with_nullok(ww, run_pam):
    ww.enroll("alice")
    ww.config.unlink()
    res = run_pam(ww.args("nullok"), "bob", "", extra_lines=PERMIT)
    assert res.rc == 1 and UNAVAILABLE in res.output, res.output
    assert res.logged("does not exist (it is named by config= on the module line)"), res.log_text()
    assert res.logged("outcome=unavailable"), res.log_text()
    # The same stack with the file present: bob is not enrolled, nullok and pam_permit let
    # him through. This is what the missing file must not fall back to.
    ww.write_config("")
    res = run_pam(ww.args("nullok"), "bob", "", extra_lines=PERMIT)
    assert res.rc == 0 and res.logged("outcome=not_enrolled"), res.output


def test_a_named_config_that_does_not_exist_denies_an_enrolled_user(ww, run_pam):
    alice = ww.enroll("alice")
    ww.config.unlink()
    res = run_pam(ww.args(), "alice", fresh_code(alice["secret"]) + "\n")
    assert res.rc == 1 and UNAVAILABLE in res.output, res.output
    assert "Verification code" not in res.output  # denied before any prompt


def test_without_config_option_a_missing_default_config_means_defaults(ww, run_pam, tmp_path):
    alice = ww.enroll("alice")
    empty = make_root_dir(tmp_path / "empty-etc", 0o755)
    res = run_pam(f"helper={ww.helper} state_dir={ww.state}", "alice", fresh_code(alice["secret"]) + "\n",
                  preexec_fn=without_default_config(empty))
    assert res.rc == 0 and res.logged("outcome=success"), res.output


@pytest.mark.parametrize("config", ["files", "named-missing", "default-missing"])
def test_a_fleet_state_directory_is_never_read_as_a_local_store(ww, run_pam, tmp_path, config):
    # A host that joined a fleet still has alice's old local record (store import-files
    # leaves the files) and nobody else: read as a local store, bob would be "not
    # enrolled" (nullok + pam_permit: in) and alice's old record would decide her login.
    alice = ww.enroll("alice")
    code = fresh_code(alice["secret"])
    before = ww.snapshot()
    mark_fleet(ww)
    kw = {}
    if config == "files":
        ww.write_config('[store]\nbackend = "files"\n')
        args = ww.args("nullok")
    elif config == "named-missing":
        ww.config.unlink()
        args = ww.args("nullok")
    else:
        args = f"helper={ww.helper} state_dir={ww.state} nullok"
        kw["preexec_fn"] = without_default_config(make_root_dir(tmp_path / "empty-etc", 0o755))
    for user, answer in (("bob", ""), ("alice", code + "\n")):
        res = run_pam(args, user, answer, extra_lines=PERMIT, **kw)
        assert res.rc == 1 and UNAVAILABLE in res.output, (user, res.output)
        assert res.logged("outcome=unavailable"), res.log_text()
        if config != "named-missing":
            assert res.logged("belongs to a fleet"), res.log_text()
    assert {k: v for k, v in ww.snapshot().items() if k != "fleet"} == before


def test_the_cli_refuses_a_fleet_state_directory_as_a_local_store(ww):
    ww.enroll("alice")
    mark_fleet(ww)
    ww.write_config('[store]\nbackend = "files"\n')
    before = ww.snapshot()
    for args in (["list"], ["show", "alice"], ["enroll", "bob", "--totp"], ["unlock", "alice"]):
        proc = ww.cli(*args, check=False)
        assert proc.returncode != 0, (args, proc.stdout)
        assert "belongs to a fleet" in proc.stderr, (args, proc.stderr)
    assert ww.snapshot() == before
