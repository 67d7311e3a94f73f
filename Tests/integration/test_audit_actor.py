"""Who did what, where (issue 15.4): every admin event in the audit trail names its actor
(the invoking login: SUDO_USER when it names a known user, else the login uid's user from
/proc/self/loginuid, else the real uid's name; `actor_source` says which) and the host;
every login event names the host, the service and the remote host. `watchword log` shows
and filters them (--host, --actor). Values chosen by others (SUDO_USER, the host name)
cannot forge a field or a line.

Through the real CLI, the real module (pam_wrapper + pamtester) and the real helper. The
host name is set per process in a UTS namespace of its own (unshare + sethostname in the
child), the login uid by writing /proc/self/loginuid in the child before exec.
"""
from __future__ import annotations

import ctypes
import json
import os

import pytest

from ww import fresh_totp

FIELDS = ["time", "event", "user", "service", "rhost", "method", "outcome", "reason", "host", "actor",
          "actor_source"]
CLONE_NEWUTS = 0x04000000
UNSET = 4294967295
_libc = ctypes.CDLL(None, use_errno=True)


def in_host(hostname: bytes | str | None = None, loginuid: int | None = None):
    """A preexec_fn: the child gets a host name of its own and/or a login uid."""
    name = hostname.encode() if isinstance(hostname, str) else hostname

    def pre():
        if name is not None:
            if _libc.unshare(CLONE_NEWUTS) != 0 or _libc.sethostname(name, len(name)) != 0:
                raise OSError(ctypes.get_errno(), "unshare/sethostname")
        if loginuid is not None:
            with open("/proc/self/loginuid", "w") as f:
                f.write(str(loginuid))
    return pre


def env(sudo_user: str | None = None) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    if sudo_user is not None:
        out["SUDO_USER"] = sudo_user
    return out


def admin(ww, *args, sudo_user=None, host="admin-host", loginuid=None, check=True):
    return ww.cli(*args, env=env(sudo_user), preexec_fn=in_host(host, loginuid), check=check)


def last(ww) -> dict:
    return ww.audit()[-1]


def runner_loginuid() -> int:
    return int(open("/proc/self/loginuid").read())


def test_an_admin_command_run_through_sudo_names_the_sudo_user_and_the_host(ww):
    # "daemon" exists on every Debian system; the login uid says someone else.
    admin(ww, "enroll", "alice", "--totp", "--json", sudo_user="daemon", loginuid=65534)
    entry = last(ww)
    assert list(entry) == FIELDS, entry
    assert (entry["event"], entry["user"], entry["outcome"]) == ("enroll", "alice", "ok")
    assert (entry["actor"], entry["actor_source"], entry["host"]) == ("daemon", "sudo", "admin-host"), entry
    # export reveals a secret: it names who asked for it.
    admin(ww, "export", "alice", "--otpauth", "--no-qr", sudo_user="daemon", host="other-host")
    entry = last(ww)
    assert (entry["event"], entry["user"], entry["actor"], entry["host"]) == ("export", "alice", "daemon", "other-host")


def test_without_sudo_user_the_login_uid_names_the_actor(ww):
    admin(ww, "enroll", "alice", "--totp", "--json", loginuid=65534)
    entry = last(ww)
    assert (entry["actor"], entry["actor_source"]) == ("nobody", "loginuid"), entry
    # A SUDO_USER that names no user is not believed: the login uid is.
    admin(ww, "unlock", "alice", sudo_user="no-such-user-ww", loginuid=1)
    entry = last(ww)
    assert (entry["actor"], entry["actor_source"]) == ("daemon", "loginuid"), entry
    # A login uid without a user name is written as #UID.
    admin(ww, "unlock", "alice", loginuid=54321)
    assert (last(ww)["actor"], last(ww)["actor_source"]) == ("#54321", "loginuid")


def test_without_sudo_user_or_login_uid_the_uid_names_the_actor(ww):
    if runner_loginuid() != UNSET:
        pytest.skip("this process has a login uid, which its children inherit")
    admin(ww, "enroll", "alice", "--totp", "--json")
    entry = last(ww)
    assert (entry["actor"], entry["actor_source"], entry["host"]) == ("root", "uid", "admin-host"), entry


def test_a_login_names_the_host_the_service_and_the_remote_host(ww, run_pam):
    alice = ww.enroll("alice")
    res = run_pam(ww.args(), "alice", fresh_totp(alice["secret"]) + "\n", items={"rhost": "198.51.100.23"},
                  preexec_fn=in_host("login-host"))
    assert res.rc == 0, res.output
    entry = last(ww)
    assert list(entry) == FIELDS, entry
    assert entry["event"] == "login" and entry["outcome"] == "success"
    assert (entry["host"], entry["service"], entry["rhost"]) == ("login-host", "watchword-test", "198.51.100.23")
    assert entry["actor"] is None and entry["actor_source"] is None


def test_import_names_each_user_it_imported(ww, tmp_path):
    users = tmp_path / "users.oath"
    users.write_text("HOTP/T30 carol - 3132333435363738393031323334353637383930\n"
                     "HOTP dave - 3132333435363738393031323334353637383931\n")
    os.chmod(users, 0o600)
    admin(ww, "import", "oath", str(users), sudo_user="daemon")
    entries = [e for e in ww.audit() if e["event"] == "import"]
    assert [(e["user"], e["outcome"], e["reason"], e["actor"], e["host"]) for e in entries] == [
        ("carol", "ok", "oath", "daemon", "admin-host"), ("dave", "ok", "oath", "daemon", "admin-host")], entries
    # Run again: nobody is imported (both skipped), one line for the command.
    admin(ww, "import", "oath", str(users), sudo_user="daemon")
    entries = [e for e in ww.audit() if e["event"] == "import"]
    assert len(entries) == 3 and entries[2]["user"] is None and entries[2]["outcome"] == "ok"
    assert "3132333435363738393031323334353637383930" not in (ww.state / "audit.log").read_text()


def test_log_shows_and_filters_host_and_actor(ww):
    admin(ww, "enroll", "alice", "--totp", "--json", sudo_user="daemon", host="host-a")
    admin(ww, "enroll", "bob", "--totp", "--json", loginuid=65534, host="host-b")
    admin(ww, "unlock", "alice", loginuid=65534, host="host-a")

    out = ww.cli("log").stdout.splitlines()
    assert out[0].split() == ["TIME", "HOST", "USER", "EVENT", "ACTOR", "SERVICE", "RHOST", "METHOD", "OUTCOME",
                              "REASON"]
    assert out[1].split()[3:7] == ["host-a", "alice", "enroll", "daemon"], out
    assert out[2].split()[3:7] == ["host-b", "bob", "enroll", "nobody"], out

    on_a = json.loads(ww.cli("log", "--host", "host-a", "--json").stdout)
    assert [(e["event"], e["user"], e["host"]) for e in on_a] == [("enroll", "alice", "host-a"), ("unlock", "alice", "host-a")]
    by_nobody = json.loads(ww.cli("log", "--actor", "nobody", "--json").stdout)
    assert [(e["event"], e["user"], e["actor_source"]) for e in by_nobody] == [
        ("enroll", "bob", "loginuid"), ("unlock", "alice", "loginuid")]
    both = json.loads(ww.cli("log", "alice", "--actor", "nobody", "--host", "host-a", "--json").stdout)
    assert [e["event"] for e in both] == ["unlock"]
    text = ww.cli("log", "--actor", "daemon").stdout.splitlines()
    assert len(text) == 2 and "daemon" in text[1] and "host-a" in text[1]
    assert ww.cli("log", "--host", "host-c").stdout.strip() == "No audit entries."


@pytest.mark.parametrize("sudo_user", [
    pytest.param("daemon actor=root", id="space-field"),
    pytest.param('daemon","actor":"root', id="json-quote"),
    pytest.param("daemon\nactor=root", id="newline"),
    pytest.param("daemon\x1b[2K\rroot", id="control-bytes"),
])
def test_a_hostile_sudo_user_or_host_name_forges_no_field(ww, sudo_user):
    hostile_host = b"evil host actor=root\n\"x"
    admin(ww, "enroll", "alice", "--totp", "--json", sudo_user=sudo_user, host=hostile_host, loginuid=65534)
    raw = (ww.state / "audit.log").read_text()
    assert raw.count("\n") == 1 and raw.endswith("\n"), raw
    pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    assert [k for k, _ in pairs] == FIELDS, pairs
    entry = dict(pairs)
    # Not a known user: SUDO_USER is not believed, and never written.
    assert (entry["actor"], entry["actor_source"]) == ("nobody", "loginuid"), entry
    assert "actor=root" not in raw.replace("evil?host?actor=root", "")
    assert entry["host"] == 'evil?host?actor=root?"x', entry
    # The table: one row, every column one word, nothing but printable ASCII.
    out = ww.cli("log").stdout
    lines = out.splitlines()
    assert len(lines) == 2 and all(0x20 <= ord(c) < 0x7F for c in out.replace("\n", "")), out
    assert lines[1].split()[3:7] == ['evil?host?actor=root?"x', "alice", "enroll", "nobody"], lines
    assert json.loads(ww.cli("log", "--actor", "root", "--json").stdout) == []
