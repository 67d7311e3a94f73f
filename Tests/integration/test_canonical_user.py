"""Lookup under the user database's canonical name (SECURITY.md: "looked up under the
user database's canonical name, so a case-insensitive directory cannot turn `ALICE` into
an unenrolled user").

A directory service such as sssd or winbind matches names without regard to case, or
knows aliases: sshd then logs in "ALICE" as alice. If the helper looked up state under
"ALICE" it would find no record, and `nullok` would let the login through without a
code. The test builds a real NSS module (libnss_wwtest.so.2, in C) that answers
getpwnam("ALICE") and getpwnam("asmith") with pw_name "alice", and runs the PAM client
in a private mount namespace where /etc/nsswitch.conf says `passwd: wwtest files` and
the module sits in glibc's library directory (an overlay); the machine itself is not
changed. The real module starts the real helper in that namespace, and the helper's
getpwnam goes through the test's NSS module.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PAM_AUTH_ERR, PAM_SUCCESS
from mountns import private_mounts
from ww import Watchword, oathtool_totp, fresh_totp as fresh_code, wrong_of

NSS_MODULE_C = r"""
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <string.h>
#include <strings.h>

/* A directory that matches "alice" in any case, and knows "asmith" as her alias. */
enum nss_status _nss_wwtest_getpwnam_r(const char *name, struct passwd *pw,
                                       char *buf, size_t len, int *errnop) {
    static const char *fields[] = {"alice", "x", "Alice (wwtest)", "/nonexistent",
                                   "/usr/sbin/nologin"};
    char *out[5];
    size_t used = 0;

    if (strcasecmp(name, "alice") != 0 && strcmp(name, "asmith") != 0)
        return NSS_STATUS_NOTFOUND;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(fields[i]) + 1;
        if (used + n > len) {
            *errnop = ERANGE;
            return NSS_STATUS_TRYAGAIN;
        }
        out[i] = memcpy(buf + used, fields[i], n);
        used += n;
    }
    pw->pw_name = out[0];
    pw->pw_passwd = out[1];
    pw->pw_gecos = out[2];
    pw->pw_dir = out[3];
    pw->pw_shell = out[4];
    pw->pw_uid = 64242;
    pw->pw_gid = 64242;
    return NSS_STATUS_SUCCESS;
}
"""


def glibc_nss_dir() -> str:
    """The directory glibc loads libnss_*.so.2 from (where libnss_files.so.2 is)."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    path = re.search(r"libnss_files\.so\.2 \(libc6,x86-64\) => (\S+)", cache)[1]
    return os.path.dirname(os.path.realpath(path))


@pytest.fixture(scope="module")
def nss_namespace(tmp_path_factory):
    """A preexec_fn that puts the PAM client (and so the helper it starts) in a mount
    namespace whose passwd database asks libnss_wwtest first."""
    base = tmp_path_factory.mktemp("nss")
    libdir = base / "lib"
    libdir.mkdir()
    src = base / "wwtest.c"
    src.write_text(NSS_MODULE_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o",
                    str(libdir / "libnss_wwtest.so.2"), str(src)], check=True)
    nsswitch = base / "nsswitch.conf"
    nsswitch.write_text("passwd: wwtest files\ngroup: files\nshadow: files\nhosts: files dns\n")
    enter = private_mounts(binds={"/etc/nsswitch.conf": nsswitch},
                           overlays={glibc_nss_dir(): libdir})

    # The namespace works as meant: getent sees the alias there and not outside.
    inside = subprocess.run(["getent", "passwd", "ALICE", "asmith"], preexec_fn=enter,
                            capture_output=True, text=True)
    assert inside.returncode == 0, inside.stderr
    assert [l.split(":")[0] for l in inside.stdout.splitlines()] == ["alice", "alice"], inside.stdout
    outside = subprocess.run(["getent", "passwd", "ALICE"], capture_output=True, text=True)
    assert outside.returncode != 0, "ALICE exists on this machine: the test cannot tell"
    return enter



@pytest.mark.parametrize("name", ["ALICE", "Alice", "asmith"])
def test_a_name_the_directory_maps_to_alice_is_checked_as_alice(ww, run_pam_conv, nss_namespace, name):
    alice = ww.enroll("alice")
    # A wrong code is alice's failure, not a pass for an unenrolled user under nullok.
    res = run_pam_conv(ww.args("nullok"), name, [wrong_of(fresh_code(alice["secret"]))],
                       preexec_fn=nss_namespace)
    assert res.pam_rc == PAM_AUTH_ERR, (res.pam_rc, res.output)
    assert not res.logged("result=PAM_IGNORE"), res.log_text()
    assert res.logged("user alice: denied: wrong, reused or expired code (failure 1 of 5)"), res.log_text()
    assert ww.show("alice")["failures"] == 1
    # alice's code logs in under the other name, and counts as alice's.
    res = run_pam_conv(ww.args("nullok"), name, [fresh_code(alice["secret"])],
                       preexec_fn=nss_namespace)
    assert res.pam_rc == PAM_SUCCESS, (res.pam_rc, res.output)
    shown = ww.show("alice")
    assert shown["failures"] == 0 and shown["last_success"] is not None
    assert sorted(os.listdir(ww.state / "users")) == ["alice"], "a record under another name"
    logins = [e for e in ww.audit() if e["event"] == "login"]
    assert [(e["user"], e["outcome"]) for e in logins] == [("alice", "auth_err"), ("alice", "success")]


def test_without_the_directory_ALICE_is_another_user(ww, run_pam_conv):
    """The control: with the machine's own passwd (case-sensitive files), ALICE is not
    alice, so nullok lets an unenrolled ALICE through: the namespace is what the test
    above depends on."""
    alice = ww.enroll("alice")
    res = run_pam_conv(ww.args("nullok"), "ALICE", [fresh_code(alice["secret"])])
    # The module's PAM_IGNORE (alone in the stack, libpam makes it PAM_PERM_DENIED).
    assert res.logged("user=ALICE service=watchword-test rhost= outcome=not_enrolled result=PAM_IGNORE"), res.log_text()
    assert ww.show("alice")["last_success"] is None
