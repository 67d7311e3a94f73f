"""Fleet store: the database must prove who it is (DESIGN.md, "Where state lives").

In fleet mode whoever answers on the database's address decides every login: it can say
"not enrolled" (which `nullok` lets through) or hand over a user record whose secret it
chose. An impostor (pg_impostor.py) listens where the config says the database is and
plays a server that does not prove itself: no TLS, a self-signed certificate, a
certificate from the right CA for another name, "authentication OK" with no password
exchange, a SASL final before any SASL continue. Whatever the conninfo says, a login
through the real pam_watchword.so and the real helper must be denied, the impostor must
learn no password (neither in clear nor a SCRAM proof it could guess from) and receive no
query, and the CLI must not believe it either. sslmodes weaker than verify-full, or
verify-ca/verify-full without an sslrootcert file, are config errors that deny before
anything is sent. With `offline = "cached"`, an impostor on the database's port is not
"the database is down", nor is a server that proves who it is and then fails
authentication, the protocol or the schema check: the login is denied and the cache is
not used; only a port that nobody answers on sends the login to the cache.

The PAM stack is `auth required pam_watchword.so ... nullok` then `auth required
pam_permit.so`, so a "not enrolled" (PAM_IGNORE) would show as a success. The assertions
are on behaviour (PAM result, what the impostor received, the CLI's exit status and
output); the log is only asked to say something about the database, TLS or the
certificate.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import (PAM_AUTHINFO_UNAVAIL, PAM_SUCCESS, make_root_dir, run_pam_client,
                      write_service)
from pg_impostor import Impostor, make_self_signed
from pgserver import make_ca, make_cert
from test_fleet import db, fleet, pg  # noqa: F401  (fixtures)
from ww import Watchword, oathtool_totp

#: What the host's password file holds: it must never reach an impostor.
PASSWORD = "imp0stor-must-never-learn-" + os.urandom(6).hex()
#: The impostor's own TOTP secret for "alice" (base32, 20 bytes).
FAKE_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#: Words a denial's log line is expected to use (any one of them).
ABOUT_THE_DATABASE = re.compile(r"database|TLS|SSL|certificate|sslmode|sslrootcert", re.I)


# --- the test PKI, the impostor's record, one host ---------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The fleet's CA (root's, 0644, as sslrootcert) and the impostors' certificates."""
    if os.geteuid() != 0:
        pytest.skip("the fleet tests must run as root")
    d = tmp_path_factory.mktemp("impostor-pki")
    os.chmod(d, 0o755)
    ca = make_ca(d, "ca", "watchword fleet test CA")
    out = {
        "ca": ca[0],
        # From the right CA, for a name the config never uses.
        "wrongname": make_cert(d, "wrongname", "db.invalid", "DNS:db.invalid", ca),
        # From the right CA, for another host that happens to carry the address 127.0.0.1.
        "otherhost": make_cert(d, "otherhost", "other.invalid", "DNS:other.invalid,IP:127.0.0.1", ca),
        # No CA at all, but the right name and address.
        "selfsigned": make_self_signed(d, "selfsigned", "localhost", "DNS:localhost,IP:127.0.0.1"),
    }
    ca[1].unlink()
    for p in d.iterdir():
        os.chown(p, 0, 0)
        os.chmod(p, 0o600 if p.suffix == ".key" else 0o644)
    return out


@pytest.fixture(scope="module")
def fake_record(tmp_path_factory, pam_module) -> dict:
    """A real user record for alice with FAKE_SECRET and the recovery key it goes with
    (made by the real CLI on a files store): what an impostor hands out, as
    Impostor(**fake_record) arguments."""
    base = tmp_path_factory.mktemp("impostor-record")
    helpers = make_root_dir(base / "libexec")
    files = Watchword(base / "files", helpers)
    files.cli("enroll", "alice", "--totp", "--secret", FAKE_SECRET, "--json")
    return {"record": files.user_file("alice").read_text(),
            "recovery_key": (files.state / "recovery.key").read_bytes().hex()}


class ImpostorHost(Watchword):
    """A fleet host whose config points wherever a test says; nullok + pam_permit."""

    def __init__(self, base: Path, helper_dir: Path, service_dir: Path, pam_module: Path):
        super().__init__(base, helper_dir)
        self.service_dir = service_dir
        self.service = "impostor-host"
        self.pgpass = self.etc / "pgpass"
        self.pgpass.write_text(PASSWORD + "\n")
        os.chown(self.pgpass, 0, 0)
        os.chmod(self.pgpass, 0o600)
        write_service(service_dir, self.service,
                      [f"auth required {pam_module} {self.args('nullok timeout=5')}",
                       "auth required pam_permit.so"])

    def point_at(self, conninfo: str, offline: str = "deny") -> None:
        """A fresh state directory and a config naming conninfo."""
        shutil.rmtree(self.state, ignore_errors=True)
        make_root_dir(self.state, 0o700)
        self.write_config('[store]\nbackend = "postgres"\n\n[store.postgres]\n'
                          f'conninfo = "{conninfo}"\npassword_file = "{self.pgpass}"\n'
                          f'offline = "{offline}"\n')

    def login(self, user: str, answers: list):
        return run_pam_client(self.service_dir, self.service, user, answers, timeout=30)


@pytest.fixture(scope="module")
def host(tmp_path_factory, pam_module) -> ImpostorHost:
    base = tmp_path_factory.mktemp("impostor-host")
    return ImpostorHost(base / "host", make_root_dir(base / "libexec"), make_root_dir(base / "pam.d"),
                        pam_module)


# --- the impostors and the conninfos -----------------------------------------------------------

# name -> (certificate in pki or None for "no TLS", authentication, the user who logs in).
# alice: the impostor hands out its own record for her and the user types its code;
# bob: the impostor says "no such user", which nullok + pam_permit would let through.
IMPOSTORS = {
    "no TLS, OK at once": (None, "ok", "bob"),
    "no TLS, SCRAM with its own salt": (None, "scram", "alice"),
    "self-signed, cleartext password": ("selfsigned", "cleartext", "alice"),
    "self-signed, SASL final before continue": ("selfsigned", "sasl-final-first", "bob"),
    "right CA other name, OK at once": ("wrongname", "ok", "alice"),
    "right CA other name, cleartext password": ("wrongname", "cleartext", "bob"),
}

# name -> conninfo options after host/port/dbname/user ({ca} is the fleet's CA); weak ones
# are config errors.
MODES = {
    "no sslmode": "",
    "disable": "sslmode=disable",
    "allow": "sslmode=allow",
    "prefer": "sslmode=prefer",
    "require": "sslmode=require",
    "require, sslrootcert=CA": "sslmode=require sslrootcert={ca}",
    # A CA file does not make a weak mode strong: each is refused for its sslmode alone.
    "disable, sslrootcert=CA": "sslmode=disable sslrootcert={ca}",
    "allow, sslrootcert=CA": "sslmode=allow sslrootcert={ca}",
    "prefer, sslrootcert=CA": "sslmode=prefer sslrootcert={ca}",
    "verify-ca without sslrootcert": "sslmode=verify-ca",
    "verify-full without sslrootcert": "sslmode=verify-full",
    "no sslmode, sslrootcert=CA": "sslrootcert={ca}",
    "verify-full, sslrootcert=CA": "sslmode=verify-full sslrootcert={ca}",
    "verify-full, sslrootcert=CA, host=db.example.org hostaddr=127.0.0.1": "sslmode=verify-full sslrootcert={ca}",
}
WEAK_MODES = [m for m in MODES if "sslrootcert=CA" not in m or m.startswith(("disable", "allow", "prefer", "require"))]


def conninfo(mode: str, port: int, pki) -> str:
    host = "host=db.example.org hostaddr=127.0.0.1" if "hostaddr" in mode else "host=127.0.0.1"
    extra = MODES[mode].format(ca=pki["ca"])
    return f"{host} port={port} dbname=watchword user=watchword connect_timeout=2 {extra}".strip()


def impostor(name: str, pki, fake_record: dict, **kw) -> Impostor:
    cert, auth, _ = IMPOSTORS[name]
    return Impostor(tls=pki[cert] if cert else None, auth=auth, user="alice", **fake_record,
                    io_timeout=3, lifetime=30, **kw)


def answers_for(user: str) -> list:
    return [oathtool_totp(FAKE_SECRET)] if user == "alice" else ["000000"]


def explain(res, imp: Impostor | None = None) -> str:
    """A failed assertion's story: PAM result, the module's log, what the impostor saw."""
    return (f"pam_rc={res.pam_rc} messages={res.messages}\nlog:\n{res.log_text()}"
            + (f"\n{imp.summary()}" if imp else ""))


def assert_learnt_nothing(imp: Impostor) -> None:
    summary = imp.summary()
    assert not imp.passwords, "the impostor received a password: " + summary
    assert not imp.saw(PASSWORD), "the password reached the impostor: " + summary
    assert not imp.queries, "a query reached the impostor: " + summary


# --- logins ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("who", list(IMPOSTORS))
def test_an_impostor_never_decides_a_login_nor_learns_the_password(host, pki, fake_record, who, mode):
    user = IMPOSTORS[who][2]
    with impostor(who, pki, fake_record) as imp:
        host.point_at(conninfo(mode, imp.port, pki))
        res = host.login(user, answers_for(user))
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(res, imp)
    assert_learnt_nothing(imp)
    assert not [m for m in res.messages if m["style"] == 1], ("asked for a code", res.messages, imp.summary())
    assert ABOUT_THE_DATABASE.search(res.log_text()), res.log_text()
    assert PASSWORD not in res.output
    assert res.elapsed < 4, res.elapsed


@pytest.mark.parametrize("mode", WEAK_MODES)
def test_a_weak_sslmode_is_a_config_error_that_denies_before_connecting(host, pki, fake_record, mode):
    with impostor("no TLS, OK at once", pki, fake_record) as imp:
        host.point_at(conninfo(mode, imp.port, pki))
        res = host.login("bob", ["000000"])
        proc = host.cli("list", "--json", check=False)
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(res, imp)
    assert re.search(r"sslmode|sslrootcert", res.log_text()), res.log_text()
    assert proc.returncode != 0 and re.search(r"sslmode|sslrootcert", proc.stderr), (proc, imp.summary())
    assert imp.connections == 0, "a config error must not connect: " + imp.summary()


def test_a_certificate_from_the_right_ca_for_another_host_is_refused_by_name(host, pki, fake_record):
    """The config names db.example.org and reaches it at hostaddr=127.0.0.1. A certificate
    the fleet's CA issued to another host that also carries the address 127.0.0.1 proves
    that host, not db.example.org: the name checked is host=, never hostaddr=."""
    with Impostor(tls=pki["otherhost"], auth="cleartext", user="alice", **fake_record,
                  io_timeout=3, lifetime=30) as imp:
        host.point_at(f"host=db.example.org hostaddr=127.0.0.1 port={imp.port} dbname=watchword "
                      f"user=watchword connect_timeout=2 sslmode=verify-full sslrootcert={pki['ca']}")
        res = host.login("alice", answers_for("alice"))
        proc = host.cli("list", "--json", check=False)
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(res, imp)
    assert proc.returncode != 0 and "alice" not in proc.stdout, (proc, imp.summary())
    assert_learnt_nothing(imp)
    assert ABOUT_THE_DATABASE.search(res.log_text()), res.log_text()


def test_control_a_server_that_proves_the_configured_name_is_believed(host, pki, fake_record):
    """The control for the tests above: the impostor's protocol is good enough to be
    believed, so their denials come from the checks, not from a broken stand-in. With
    host=other.invalid the same certificate does prove the server the config names; it
    then decides the login (its own record, its own code) and what the CLI lists."""
    with Impostor(tls=pki["otherhost"], auth="ok", user="alice", **fake_record,
                  io_timeout=3, lifetime=30) as imp:
        host.point_at(f"host=other.invalid hostaddr=127.0.0.1 port={imp.port} dbname=watchword "
                      f"user=watchword connect_timeout=2 sslmode=verify-full sslrootcert={pki['ca']}")
        res = host.login("alice", answers_for("alice"))
        proc = host.cli("list", "--json", check=False)
    assert res.pam_rc == PAM_SUCCESS, explain(res, imp)
    assert imp.tls_negotiated and imp.queries, imp.summary()
    assert proc.returncode == 0 and [u["user"] for u in json.loads(proc.stdout)] == ["alice"], proc


# --- the CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("who", list(IMPOSTORS))
def test_the_cli_never_believes_an_impostor_nor_sends_it_the_password(host, pki, fake_record, who, mode):
    with impostor(who, pki, fake_record) as imp:
        host.point_at(conninfo(mode, imp.port, pki))
        proc = host.cli("list", "--json", check=False)
    assert proc.returncode != 0, (proc.stdout, imp.summary())
    assert "alice" not in proc.stdout, (proc.stdout, imp.summary())
    assert proc.stderr.strip() and PASSWORD not in proc.stdout + proc.stderr, proc
    assert_learnt_nothing(imp)


# --- offline = "cached": an impostor is not an outage --------------------------------------------

def _cache_bytes(h) -> dict[str, bytes]:
    root = h.state / "cache"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cached_host(fleet):
    a = fleet("a", offline="cached")
    write_service(a.service_dir, a.service, [f"auth required {a.pam_module} {a.args('nullok timeout=5')}",
                                             "auth required pam_permit.so"])
    alice = a.enroll("alice")
    a.store("refresh-cache")
    assert _cache_bytes(a), "refresh-cache cached nothing"
    return a, alice


@pytest.mark.parametrize("case", ["refuses TLS", "unrelated CA", "right CA, other name"])
def test_cached_mode_an_impostor_on_the_database_port_denies_and_the_cache_is_not_used(fleet, db, case):
    a, alice = _cached_host(fleet)
    cert = {"refuses TLS": None, "unrelated CA": (db.wrongca_cert, db.wrongca_key),
            "right CA, other name": (db.wrongname_cert, db.wrongname_key)}[case]
    before = _cache_bytes(a)
    code = oathtool_totp(alice["secret"])  # window = 1: still good for the whole test
    db.stop()
    with Impostor(tls=cert, auth="cleartext", user="alice", record=None, port=db.port,
                  io_timeout=3, lifetime=30) as imp:
        res = a.conv("alice", [code])
        bob = a.conv("bob", ["000000"])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(res, imp)
    assert bob.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(bob, imp)
    assert imp.connections, "the helper never reached the impostor: " + imp.summary()
    assert_learnt_nothing(imp)
    assert _cache_bytes(a) == before, "the offline cache was used or changed"
    assert re.search(r"certificate|TLS|SSL", res.log_text(), re.I), res.log_text()
    # Nobody on the port now: the database is down, the cache decides, and the code the
    # impostor phase never consumed works.
    ok = a.conv("alice", [code])
    assert ok.pam_rc == PAM_SUCCESS, explain(ok)


# The server proves who it is (the real certificate and key, or the real server), then
# fails: authentication, protocol or schema. A connection was made: deny, never the cache.
PROVEN_BUT_FAILING = {
    "the real server, wrong password": r"password|authenticat",
    "real certificate, SASL final before continue": r"SCRAM|SASL|authenticat|protocol|server",
    "real certificate, schema version 99": r"schema",
}


@pytest.mark.parametrize("case", list(PROVEN_BUT_FAILING))
def test_cached_mode_a_server_that_fails_after_connecting_denies_and_the_cache_is_not_used(fleet, db, case):
    a, alice = _cached_host(fleet)
    before = _cache_bytes(a)
    code = oathtool_totp(alice["secret"])
    imp = None
    if case == "the real server, wrong password":
        a.pgpass.write_text("not-the-password\n")
    else:
        db.stop()
        imp = Impostor(tls=(db.server_cert, db.server_key), user="alice", record=None, port=db.port,
                       auth="sasl-final-first" if "SASL" in case else "ok",
                       schema_version=99, io_timeout=3, lifetime=30)
    try:
        res = a.conv("alice", [code])
    finally:
        if imp:
            imp.close()
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(res, imp)
    assert _cache_bytes(a) == before, "the offline cache was used or changed"
    assert re.search(PROVEN_BUT_FAILING[case], res.log_text(), re.I), res.log_text()
    if imp:
        assert imp.tls_negotiated, imp.summary()
        assert not imp.passwords and not imp.saw(PASSWORD), imp.summary()
    # The database down, nobody on the port: now the cache decides, and the code works.
    db.write_password_file(a.pgpass)
    db.stop()
    ok = a.conv("alice", [code])
    assert ok.pam_rc == PAM_SUCCESS, explain(ok)


def test_cached_mode_with_the_database_port_closed_lets_a_cached_user_in(fleet, db):
    a, alice = _cached_host(fleet)
    code = oathtool_totp(alice["secret"])
    db.stop()
    res = a.conv("alice", [code])
    assert res.pam_rc == PAM_SUCCESS, explain(res)
    assert res.logged("outcome=success"), res.log_text()
    stranger = a.conv("bob", ["000000"])  # not in the cache: never "not enrolled"
    assert stranger.pam_rc == PAM_AUTHINFO_UNAVAIL, explain(stranger)
