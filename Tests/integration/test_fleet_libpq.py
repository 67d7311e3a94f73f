"""Fleet mode on libpq: the database must prove who it is, the offline cache is for
outages only, host lists reach the primary, and nothing but the config decides where a
connection goes.

Same fixtures as test_fleet.py: real PostgreSQL 15 (pgserver.py) over TLS verify-full with
a test CA, the real module and helper through pam_wrapper, the real CLI.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_SUCCESS, make_root_dir, pam_env
from pgserver import PgServer, SilentListener
from test_fleet import Host, abc, db, fleet, fresh_code, next_step_code, pg  # noqa: F401 (fixtures)
from ww import CLI, HELPER, helper_binaries, is_static


def closed_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doctor_checks(host: Host) -> list[dict]:
    proc = host.cli("doctor", "--json", check=False)
    return json.loads(proc.stdout)["checks"]


def store_fails(checks: list[dict]) -> list[dict]:
    return [c for c in checks if c["check"].startswith("store.") and c["status"] == "fail"]


# --- the database must prove who it is: weak settings are config errors ---------------------

WEAK = {
    "sslmode=disable": dict(sslmode="disable"),
    "sslmode=allow": dict(sslmode="allow"),
    "sslmode=prefer": dict(sslmode="prefer"),
    "sslmode=require": dict(sslmode="require"),
    "verify-ca without sslrootcert": dict(sslmode="verify-ca", rootcert=""),
    "verify-full without sslrootcert": dict(sslmode="verify-full", rootcert=""),
}


def weak_conninfo(pg: PgServer, sslmode: str, rootcert=None) -> str:
    conninfo = pg.conninfo(sslmode, rootcert if rootcert else None)
    if rootcert == "":
        conninfo = re.sub(r" sslrootcert=\S+", "", conninfo)
    return conninfo


@pytest.mark.parametrize("case", list(WEAK))
def test_a_weak_sslmode_is_a_config_error_that_denies_and_doctor_fails(fleet, db, case):
    a = fleet("a")
    alice = a.enroll("alice")
    weak = fleet("weak", conninfo=weak_conninfo(db, **WEAK[case]))
    res = weak.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    log = res.log_text()
    assert "store.postgres.conninfo" in log and ("sslmode" in log or "sslrootcert" in log), log
    # Not even the prompt: the helper refuses before it asks for a code.
    fails = store_fails(doctor_checks(weak))
    assert any("store.postgres.conninfo" in c["detail"] for c in fails), fails
    # The CLI refuses too, naming the key.
    proc = weak.cli("list", check=False)
    assert proc.returncode != 0 and "store.postgres.conninfo" in proc.stderr, proc.stderr


def test_weak_config_also_with_offline_cached_never_uses_the_cache(fleet, db):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0  # cached on A
    a.configure(conninfo=weak_conninfo(db, "require"))
    res = a.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert "offline cache" not in res.log_text(), res.log_text()


@pytest.mark.parametrize("case", ["not root's", "writable by group", "missing"])
def test_an_sslrootcert_others_could_replace_is_a_config_error(fleet, db, case):
    a = fleet("a")
    alice = a.enroll("alice")
    ca = a.etc / "db-ca.crt"
    shutil.copy(db.ca, ca)
    if case == "not root's":
        os.chown(ca, 65534, 65534)
    elif case == "writable by group":
        os.chmod(ca, 0o664)
    else:
        ca.unlink()
    b = fleet("b", conninfo=db.conninfo("verify-full", ca))
    res = b.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and "sslrootcert" in res.log_text(), res.output
    assert any("sslrootcert" in c["detail"] for c in store_fails(doctor_checks(b)))


@pytest.mark.parametrize("keyword", ["password=x", "passfile=/root/.pgpass", "service=watchword"])
def test_conninfo_may_not_name_a_password_passfile_or_service(fleet, db, keyword):
    a = fleet("a")
    alice = a.enroll("alice")
    b = fleet("b", conninfo=db.conninfo("verify-full") + " " + keyword)
    res = b.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert f"must not" in res.log_text() and keyword.split("=")[0] in res.log_text(), res.log_text()


def test_verify_ca_with_a_private_root_cert_works(fleet, db):
    a = fleet("a", conninfo=db.conninfo("verify-ca"))
    alice = a.enroll("alice")
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0
    # verify-ca does not check the name: 127.0.0.2 is not in the certificate, and that is fine.
    b = fleet("b", conninfo=db.conninfo("verify-ca", host="127.0.0.2"))
    proc = b.cli("list", check=False)
    assert proc.returncode == 0 and "alice" in proc.stdout, proc.stderr


def test_a_unix_socket_in_a_trusted_directory_needs_no_tls_and_an_open_one_is_refused(fleet, db, tmp_path):
    a = fleet("a")
    alice = a.enroll("alice")
    sock = fleet("sock", conninfo=f"host={db.sock} port={db.port} dbname=watchword user=watchword")
    res = sock.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert [c for c in doctor_checks(sock) if c["check"] == "store.tls"][0]["status"] == "ok"
    # A directory anyone can write to: anyone could put a socket there and answer.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    bad = fleet("bad", conninfo=f"host={open_dir} port={db.port} dbname=watchword user=watchword")
    res = bad.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and "writable by others" in res.log_text(), res.output
    assert any("writable by others" in c["detail"] for c in store_fails(doctor_checks(bad)))
    # Every host of a list gets its checks: a good TCP host does not excuse the bad socket.
    mixed = fleet("mixed", conninfo=db.conninfo("verify-full").replace("host=127.0.0.1", f"host=127.0.0.1,{open_dir}")
                  .replace(f"port={db.port}", f"port={db.port},{db.port}"))
    res = mixed.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and "writable by others" in res.log_text(), res.output


def test_every_tcp_host_of_a_list_needs_the_tls_policy(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    # verify-full for both, but the second has no CA: refused as a whole.
    b = fleet("b", conninfo=f"host=127.0.0.1,localhost port={db.port} dbname=watchword user=watchword sslmode=require")
    res = b.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and "sslmode=require" in res.log_text(), res.output


# --- the cache is for outages, not for failures ---------------------------------------------

def test_offline_cached_a_closed_port_lets_a_cached_user_in(fleet, db):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    # The same config, pointed at a port nothing listens on: connection refused.
    a.configure(conninfo=db.conninfo("verify-full", port=closed_port()))
    res = a.conv("alice", [next_step_code(alice["secret"], first)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert "offline cache" in res.log_text()


def test_offline_cached_a_name_that_does_not_resolve_lets_a_cached_user_in(fleet, db):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    a.configure(conninfo=db.conninfo("verify-full", host="db.nonexistent.invalid"))
    res = a.conv("alice", [next_step_code(alice["secret"], first)])
    assert res.pam_rc == PAM_SUCCESS, res.output
    assert "offline cache" in res.log_text()


@pytest.mark.parametrize("case", ["certificate from an unrelated CA", "name not in the certificate",
                                  "accepts and never answers"])
def test_offline_cached_a_connection_that_opened_and_failed_denies_without_the_cache(fleet, db, case):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0  # alice is in A's cache
    code = next_step_code(alice["secret"], first)
    listener = None
    try:
        if case == "certificate from an unrelated CA":
            db.use_certificate(db.wrongca_cert, db.wrongca_key)
        elif case == "name not in the certificate":
            db.use_certificate(db.wrongname_cert, db.wrongname_key)
        else:
            listener = SilentListener()
            a.configure(conninfo=db.conninfo("verify-full", port=listener.port, connect_timeout=2))
        res = a.conv("alice", [code], timeout=60)
    finally:
        if listener:
            listener.close()
        db.use_certificate(db.server_cert, db.server_key)
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    log = res.log_text()
    assert "offline cache" not in log and "cannot use the database" in log, log
    # The code was never checked, so it still works through the real database.
    a.configure(conninfo=db.conninfo("verify-full"))
    assert a.login("alice", code).rc == 0


def test_offline_recovery_codes_are_refused_unless_configured(fleet, db):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    db.stop()
    res = a.conv("alice", [alice["recovery_codes"][0]])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    # TOTP still works offline.
    assert a.login("alice", next_step_code(alice["secret"], first)).rc == 0
    a.configure(store_extra="offline_recovery = true\n")
    res = a.conv("alice", [alice["recovery_codes"][1]])
    assert res.pam_rc == PAM_SUCCESS, res.output


def test_offline_max_age_exceeded_denies(fleet, db):
    a = fleet("a", offline="cached", store_extra="offline_max_age = 300\n")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    db.stop()
    entry = a.state / "cache" / "alice"
    text = entry.read_text()
    written = int(re.search(r"^written (\d+)$", text, re.M).group(1))
    entry.write_text(re.sub(r"^written \d+$", f"written {written - 400}", text, flags=re.M))
    res = a.conv("alice", [next_step_code(alice["secret"], first)])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert "offline_max_age" in res.log_text(), res.log_text()
    # Within the bound it lets the user in.
    entry.write_text(re.sub(r"^written \d+$", f"written {written - 200}", text, flags=re.M))
    assert a.login("alice", next_step_code(alice["secret"], first)).rc == 0


def test_offline_max_age_is_checked_in_the_config(fleet, db):
    a = fleet("a", offline="cached")
    a.configure(store_extra="offline_max_age = 10\n")
    proc = a.cli("list", check=False)
    assert proc.returncode != 0 and "offline_max_age" in proc.stderr, proc.stderr


def test_new_recovery_codes_on_another_host_retire_the_old_ones_offline_once_seen(fleet, db):
    extra = "offline_recovery = true\n"
    a = fleet("a", offline="cached", store_extra=extra)
    b = fleet("b", offline="cached", store_extra=extra)
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0  # A caches alice's recovery codes
    old = alice["recovery_codes"][0]
    new = json.loads(b.cli("recovery-codes", "alice", "--json").stdout)["recovery_codes"]
    # A sees the change at its next login through the database.
    assert a.login("alice", next_step_code(alice["secret"], first)).rc == 0
    db.stop()
    res = a.conv("alice", [old])
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    res = a.conv("alice", [new[0]])
    assert res.pam_rc == PAM_SUCCESS, res.output


def test_a_user_removed_on_another_host_leaves_the_cache_once_seen(fleet, db):
    a = fleet("a", offline="cached")
    b = fleet("b", offline="cached")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    assert (a.state / "cache" / "alice").exists()
    b.cli("remove", "alice")
    a.store("refresh-cache")
    assert not (a.state / "cache" / "alice").exists()
    db.stop()
    res = a.conv("alice", [next_step_code(alice["secret"], first)])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output


# --- high availability: host lists -------------------------------------------------------------

def test_host_list_first_down_the_login_goes_to_the_second(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    down = closed_port()
    b = fleet("b", conninfo=db.conninfo("verify-full", host="127.0.0.1,127.0.0.1", port=f"{down},{db.port}"))
    assert b.login("alice", fresh_code(alice["secret"])).rc == 0


@pytest.fixture
def read_only_server(pg, tmp_path):
    """A second PostgreSQL with the same role and password that refuses writes
    (default_transaction_read_only = on), and a CA file trusting both servers."""
    other = PgServer(password=pg.password, max_connections=20)
    try:
        other.start()
        other.psql("ALTER SYSTEM SET default_transaction_read_only = on", db="postgres")
        other.reload()
        time.sleep(0.5)
        both = make_root_dir(tmp_path / "cas") / "both.crt"
        both.write_text(pg.ca.read_text() + other.ca.read_text())
        os.chmod(both, 0o644)
        yield other, both
    finally:
        other.close()


def test_host_list_first_read_only_the_login_goes_to_the_primary(fleet, db, read_only_server):
    other, both = read_only_server
    a = fleet("a")
    alice = a.enroll("alice")
    conninfo = (f"host=127.0.0.1,127.0.0.1 port={other.port},{db.port} dbname=watchword user=watchword "
                f"sslmode=verify-full sslrootcert={both}")
    # Without target_session_attrs the read-only server is taken, and a login cannot write there.
    b = fleet("b", conninfo=conninfo + " target_session_attrs=read-write")
    code = fresh_code(alice["secret"])
    assert b.login("alice", code).rc == 0
    # The code is used in the primary (a replay is refused), so the primary was the one written.
    assert a.login("alice", code).rc != 0
    c = fleet("c", conninfo=conninfo)
    assert c.conv("alice", [next_step_code(alice["secret"], code)]).pam_rc != PAM_SUCCESS


def test_read_only_values_of_target_session_attrs_are_refused(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    b = fleet("b", conninfo=db.conninfo("verify-full", target_session_attrs="standby"))
    res = b.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and "target_session_attrs" in res.log_text(), res.output


# --- nothing from the environment ---------------------------------------------------------------

def test_the_cli_ignores_pg_variables_in_its_environment(fleet, db, tmp_path):
    a = fleet("a")
    a.enroll("alice")
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(f"[evil]\nhost=127.0.0.1\nport={closed_port()}\nsslmode=disable\n")
    env = dict(os.environ, PGHOST="192.0.2.1", PGPORT=str(closed_port()), PGSSLMODE="disable",
               PGPASSWORD="wrong", PGSERVICE="evil", PGSERVICEFILE=str(service_file),
               PGSSLROOTCERT=str(db.wrong_ca), PGOPTIONS="-c default_transaction_read_only=on",
               PGGSSENCMODE="require", PGCONNECT_TIMEOUT="1", PGTARGETSESSIONATTRS="standby",
               PGSSLCRL=str(service_file), PGDATABASE="postgres", PGUSER="postgres")
    for argv in (["list", "--json"], ["enroll", "--allow-unknown-user", "bob", "--totp", "--json"]):
        proc = subprocess.run([str(CLI), *argv, "--state-dir", str(a.state), "--config", str(a.config)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
    # It went where the config says, over TLS.
    proc = subprocess.run([str(CLI), "doctor", "--json", "--state-dir", str(a.state), "--config", str(a.config)],
                          capture_output=True, text=True, env=env, timeout=60)
    connect = [c for c in json.loads(proc.stdout)["checks"] if c["check"] == "store.connect"]
    assert connect and connect[0]["status"] == "ok" and "over TLS" in connect[0]["detail"], connect
    assert db.psql("SELECT count(*) FROM users") == "2"


# --- libpq is loaded only when the store is the database ----------------------------------------

def test_helper_does_not_link_libpq():
    for binary in helper_binaries():
        if is_static(binary):
            continue  # links nothing; hands fleet logins to the dynamic helper
        needed = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
        assert "NEEDED" in needed and "libpq" not in needed
        symbols = subprocess.run(["nm", "-D", "--undefined-only", str(binary)], capture_output=True, text=True).stdout
        assert not re.search(r"\bPQ\w+", symbols), symbols


def traced_login(host_or_service_dir, service: str, user: str, code: str, trace: Path) -> str:
    """pamtester under strace -f (the helper too): the files opened."""
    argv = ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace),
            "pamtester", "-v", service, user, "authenticate"]
    subprocess.run(argv, input=code + "\n", capture_output=True, text=True,
                   env=pam_env(host_or_service_dir), timeout=60)
    return trace.read_text()


def test_a_totp_login_on_the_file_store_never_maps_libpq(helper_dir, service_dir, pam_module, tmp_path):
    from conftest import write_service
    from ww import Watchword
    ww = Watchword(tmp_path / "ww", helper_dir)
    alice = ww.enroll("alice")
    write_service(service_dir, "files", [f"auth required {pam_module} {ww.args()}"])
    from ww import oathtool_totp
    opened = traced_login(service_dir, "files", "alice", oathtool_totp(alice["secret"]), tmp_path / "files.trace")
    assert "watchword-helper" in opened, opened[-2000:]
    assert "libpq.so" not in opened  # (the worktree's path may hold "libpq")


def test_a_fleet_login_maps_libpq(fleet, db, tmp_path):
    a = fleet("a")
    alice = a.enroll("alice")
    opened = traced_login(a.service_dir, a.service, "alice", fresh_code(alice["secret"]), tmp_path / "fleet.trace")
    assert re.search(r'libpq\.so\.5".*= \d', opened), opened[-2000:]


def test_files_under_root_home_are_never_read(fleet, db):
    """libpq's defaults: ~/.pgpass, ~/.postgresql/postgresql.crt, .key, root.crt, root.crl.
    In a private mount namespace /root gets garbage in each; had libpq used any of them the
    connection would fail (a bad client certificate or CRL) or use the wrong password."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    a = fleet("a")
    a.enroll("alice")
    script = (
        "set -e; mount -t tmpfs tmpfs /root; mkdir -m 700 /root/.postgresql; cd /root/.postgresql; "
        "echo garbage > postgresql.crt; echo garbage > postgresql.key; chmod 600 postgresql.key; "
        f"cp {db.wrong_ca} root.crt; echo garbage > root.crl; "
        "echo '*:*:*:*:wrong-password' > /root/.pgpass; chmod 600 /root/.pgpass; "
        f"exec {CLI} list --json --state-dir {a.state} --config {a.config}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [u["user"] for u in json.loads(proc.stdout)] == ["alice"], proc.stdout
