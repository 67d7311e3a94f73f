"""Fleet mode (issue #8): several hosts share one PostgreSQL store.

A "host" here is what a real host has: its own config file (`[store] backend =
"postgres"`), its own local state directory (only its offline cache and lock files) and
its own root-owned password file, all pointing at one real PostgreSQL 15 (pgserver.py)
over TLS with sslmode=verify-full and a test CA. Logins go through the real
pam_watchword.so, real libpam (pam_wrapper + pamtester or pam_client.py) and the real
helper; codes come from oathtool.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (PAM_AUTH_ERR, helper_executables, PAM_AUTHINFO_UNAVAIL, PAM_MAXTRIES, PAM_SUCCESS, make_root_dir,
                      run_pam_client, run_pam_clients_at_once, run_pamtester, run_pamtesters_together,
                      write_service)
from pgserver import PgServer, SilentListener
from test_audit_actor import in_host
from ww import (CLI, Watchword, secret_of, oathtool_hotp, oathtool_totp, wrong_totp_codes, fresh_totp as fresh_code, wrong_of)

AUTH_FAILURE = "Authentication failure"
UNAVAILABLE = "Authentication service cannot retrieve authentication info"
UNAVAILABLE_MSG = "Two-factor authentication is unavailable; contact your administrator."
SCHEMA_VERSION = 2  # Sources/WatchwordPostgres/Schema.swift


# --- the database and the hosts ---------------------------------------------------------

@pytest.fixture(scope="module")
def pg():
    """One PostgreSQL for this file's tests; each test gets it empty (see `db`)."""
    if os.geteuid() != 0:
        pytest.skip("the fleet tests must run as root")
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def db(pg):
    """The server up, serving the right certificate, with an empty watchword database."""
    if not pg.running:
        pg.start()
    pg.use_certificate(pg.server_cert, pg.server_key)
    pg.reset()
    yield pg
    if not pg.running:
        pg.start()


class Host(Watchword):
    """One host of the fleet: config, state directory, password file, helper, PAM service."""

    def __init__(self, name: str, base: Path, helper_dir: Path, pg: PgServer, service_dir: Path,
                 pam_module: Path, *, offline: str = "deny", conninfo: str | None = None,
                 head: str = "", module_args: str = "", store_extra: str = ""):
        super().__init__(base, helper_dir)
        make_root_dir(self.state, 0o700)
        self.name, self.pg = name, pg
        self.service_dir, self.pam_module = service_dir, pam_module
        self.service = f"host-{name}"
        self.pgpass = pg.write_password_file(self.etc / "pgpass")
        self.store_extra = store_extra
        self.configure(offline=offline, conninfo=conninfo or pg.conninfo("verify-full"), head=head)
        self.set_module_args(module_args)

    def configure(self, *, offline: str | None = None, conninfo: str | None = None,
                  head: str | None = None, password_file: Path | None = None,
                  store_extra: str | None = None) -> None:
        """Writes the config: `head` (policy, sms...) first, then the store tables
        (`store_extra`: more [store.postgres] lines)."""
        if store_extra is not None:
            self.store_extra = store_extra
        if offline is not None:
            self.offline = offline
        if conninfo is not None:
            self.conninfo = conninfo
        if head is not None:
            self.head = head
        pw = password_file or self.pgpass
        self.write_config(f'{self.head}\n[store]\nbackend = "postgres"\n\n[store.postgres]\n'
                          f'conninfo = "{self.conninfo}"\npassword_file = "{pw}"\n'
                          f'offline = "{self.offline}"\n{self.store_extra}\n')

    def set_module_args(self, extra: str = "") -> None:
        write_service(self.service_dir, self.service, [f"auth required {self.pam_module} {self.args(extra)}"])

    def login(self, user: str, code: str, **kw):
        """pamtester: one answer on stdin."""
        return run_pamtester(self.service_dir, self.service, user, code + "\n", **kw)

    def conv(self, user: str, responses: list, **kw):
        """pam_client.py: a scripted conversation, with pam_rc and the messages."""
        return run_pam_client(self.service_dir, self.service, user, responses, **kw)

    def store(self, *args: str, check: bool = True, state: Path | None = None):
        """`watchword store ARGS` with this host's config (and another state dir if given)."""
        argv = [str(CLI), "store", *args, "--state-dir", str(state or self.state), "--config", str(self.config)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def state_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.state.rglob("*")) if p.is_file() and not p.is_symlink())


@pytest.fixture
def fleet(db, tmp_path, service_dir, pam_module):
    """fleet(name, **Host options) -> Host; the first host made runs `store init`."""
    hosts: dict[str, Host] = {}

    def make(name: str, **kw) -> Host:
        host = Host(name, tmp_path / f"host-{name}", make_root_dir(tmp_path / f"libexec-{name}"), db,
                    service_dir, pam_module, **kw)
        if not hosts:
            host.store("init")
        hosts[name] = host
        return host

    return make


@pytest.fixture
def abc(fleet):
    return fleet("a"), fleet("b"), fleet("c")


def next_step_code(secret: str, used: str) -> str:
    """A code of a step after the one `used` came from (waits for it if need be)."""
    while True:
        code = fresh_code(secret)
        if code != used:
            return code
        time.sleep(30 - time.time() % 30 + 0.1)


def messages(res) -> str:
    return "\n".join(m["msg"] for m in res.messages)


def last_outcome(res) -> str:
    return res.log_text().splitlines()[-1] if res.syslog else res.output[-200:]


# --- one enrollment, every host -----------------------------------------------------------

def test_enroll_on_a_log_in_on_b_and_a_code_used_on_a_is_refused_on_b(abc):
    a, b, c = abc
    alice = a.enroll("alice")
    assert [u["user"] for u in json.loads(b.cli("list", "--json").stdout)] == ["alice"]
    res = b.login("alice", fresh_code(alice["secret"]), items={"rhost": "192.0.2.7"})
    assert res.rc == 0, res.output
    assert res.logged("user alice from 192.0.2.7: accepted (totp)"), res.log_text()
    assert c.show("alice")["last_success"] is not None
    # The next step's code: accepted on A, then refused on B and on C.
    code = next_step_code(alice["secret"], oathtool_totp(alice["secret"]))
    first = a.login("alice", code)
    assert first.rc == 0, first.output
    for host in (b, c):
        again = host.login("alice", code)
        assert again.rc == 1 and AUTH_FAILURE in again.output, (host.name, again.output)
        assert again.logged("wrong, reused or expired code"), again.log_text()
    assert a.show("alice")["failures"] == 2
    # With offline = "deny" nothing secret is kept on the hosts.
    for host in (a, b, c):
        assert alice["secret"].encode() not in host.state_bytes(), host.name


def test_32_concurrent_logins_over_two_hosts_with_one_code_succeed_exactly_once(fleet, capsys):
    head = "[policy]\nmax_failures = 1000\n"  # the 31 replays must not lock the account mid-race
    a, b = fleet("a", head=head), fleet("b", head=head)
    rounds = 2
    for n in range(rounds):
        user = f"racer{n}"
        secret = a.enroll(user)["secret"]
        code = fresh_code(secret, margin=12)
        hosts = [a, b] * 16
        # All 32 helpers (16 on each host) are waiting at the prompt before the first code is sent.
        runs = run_pamtesters_together(a.service_dir, [(h.service, user, code + "\n") for h in hosts])
        results = list(zip((h.name for h in hosts), runs))
        ok = [name for name, r in results if r.rc == 0]
        outcomes = Counter(last_outcome(r) for _, r in results)
        assert len(ok) == 1, outcomes
        refused = [r for _, r in results if r.rc != 0]
        assert len(refused) == 31 and all(r.logged("outcome=auth_err") for r in refused), outcomes
        assert b.show(user)["failures"] == 31
    with capsys.disabled():
        print(f"\n  fleet race: {rounds} rounds x 32 logins over 2 hosts with one code -> exactly one success each")


def test_the_other_admin_commands_work_from_any_host(abc):
    a, b, c = abc
    alice = a.enroll("alice")
    hal = b.enroll("hal", "--hotp")
    assert c.show("hal")["counter"] == 0
    assert b.login("hal", oathtool_hotp(hal["secret"], 0)).rc == 0
    assert a.show("hal")["counter"] == 1
    # Regenerated on B: the old codes die everywhere, the new ones work on A once.
    new = json.loads(b.cli("recovery-codes", "alice", "--json").stdout)["recovery_codes"]
    assert c.login("alice", alice["recovery_codes"][0]).rc == 1
    assert a.conv("alice", [new[0]]).pam_rc == PAM_SUCCESS
    assert c.conv("alice", [new[0]]).pam_rc == PAM_AUTH_ERR
    assert b.show("alice")["recovery_codes_left"] == 9
    # --force replaces the secret for every host.
    again = c.enroll("alice", "--force")
    assert again["secret"] != alice["secret"]
    assert a.login("alice", fresh_code(alice["secret"])).rc == 1
    # The audit trail and the status are the fleet's, seen from any host.
    events = json.loads(c.cli("log", "alice", "--json").stdout)
    assert [e["outcome"] for e in events if e["event"] == "login"][:3] == ["auth_err", "success", "auth_err"], events
    assert json.loads(c.cli("log", "hal", "--json").stdout)[-1]["outcome"] == "success"
    status = json.loads(a.cli("status", "--json").stdout)
    assert status["users"] == 2 and status["enrolled"]["hotp"] == 1
    # Removed on C: not enrolled anywhere.
    c.cli("remove", "hal")
    assert [u["user"] for u in json.loads(a.cli("list", "--json").stdout)] == ["alice"]
    gone = b.conv("hal", [])
    assert gone.pam_rc == PAM_AUTH_ERR and gone.logged("user hal: not enrolled"), gone.log_text()


# --- failures and lockout are shared ---------------------------------------------------------

def test_failures_on_two_hosts_add_up_to_one_lockout_and_unlock_from_a_third_releases(fleet):
    head = "[policy]\nmax_failures = 3\nlockout_seconds = 600\n"
    a, b, c = fleet("a", head=head), fleet("b", head=head), fleet("c", head=head)
    alice = a.enroll("alice")
    right = fresh_code(alice["secret"])
    assert a.login("alice", wrong_of(right)).rc == 1
    assert b.login("alice", wrong_of(right)[::-1]).rc == 1
    third = a.login("alice", "000000" if right != "000000" else "999999")
    assert third.rc == 1
    assert third.logged("locked out for 600 seconds"), third.log_text()
    for host in (a, b):
        locked = host.conv("alice", [fresh_code(alice["secret"])])
        assert locked.pam_rc == PAM_MAXTRIES, (host.name, locked.output)
        assert not [m for m in locked.messages if m["style"] == 1], locked.messages  # no prompt
    assert b.show("alice")["locked"] is True
    out = c.cli("unlock", "alice").stdout
    assert "Unlocked alice (had 3 failures)" in out
    assert b.login("alice", fresh_code(alice["secret"])).rc == 0
    assert a.show("alice")["failures"] == 0


def test_sms_limits_are_shared(fleet, tmp_path):
    from sms_standins import TwilioStandIn
    outbox = tmp_path / "outbox.txt"
    twilio = TwilioStandIn(outbox)
    try:
        head = twilio.config(max_per_hour=2, resend_interval_seconds=0)
        a, b, c = fleet("a", head=head), fleet("b", head=head), fleet("c", head=head)
        json.loads(a.cli("enroll", "alice", "--sms", "+14155550123", "--json").stdout)
        answer = {"from_file": str(outbox), "pattern": r"is:? (\d{4,10})\b"}
        assert a.conv("alice", [answer]).pam_rc == PAM_SUCCESS
        assert b.conv("alice", [answer]).pam_rc == PAM_SUCCESS
        res = c.conv("alice", [""])
        assert res.pam_rc == PAM_AUTH_ERR, res.output
        assert res.logged("no SMS sent: sms.max_per_hour reached for this user"), res.log_text()
        assert len(twilio.requests) == 2
        assert a.show("alice")["sms_sent_last_hour"] == 2
    finally:
        twilio.stop()


def test_8_concurrent_texts_over_two_hosts_stop_at_max_per_hour_total(fleet, db, tmp_path):
    """The count of texts for all users lives in one row, updated under the user's row
    lock in the same transaction as the send it allows: a login whose check ran twice (the
    compare-and-swap, then the locked retry) counts its text once, and hosts racing each
    other stop at exactly the limit."""
    from concurrent.futures import ThreadPoolExecutor
    from sms_standins import TwilioStandIn
    twilio = TwilioStandIn(tmp_path / "outbox.txt")
    try:
        head = twilio.config(max_per_hour_total=3, resend_interval_seconds=0)
        a, b = fleet("a", head=head), fleet("b", head=head)
        for i in range(8):
            a.cli("enroll", f"u{i}", "--sms", f"+1415555{i:04d}", "--json")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: (a if i % 2 else b).conv(f"u{i}", [None]), range(8)))
        assert len(twilio.requests) == 3, [r.output for r in results]
        refused = [r for r in results if r.logged("no SMS sent: sms.max_per_hour_total reached")]
        assert len(refused) == 5, [r.log_text() for r in results]
        assert global_count(db) == 3
    finally:
        twilio.stop()


def global_count(db) -> int:
    state = db.psql("SELECT state FROM sms_global")
    return sum(int(bucket.split(":")[1]) for line in state.splitlines() if line.startswith("sent ")
               for bucket in line.split()[1:])


def test_the_count_of_texts_for_all_users_is_the_texts_sent_when_logins_of_one_user_race(fleet, db, tmp_path):
    """Logins of the same user on two hosts change the same row: the compare-and-swap
    fails for all but one and the check runs again under the row lock. The count for all
    users must still be the texts that went out, not once per run of the check."""
    from concurrent.futures import ThreadPoolExecutor
    from sms_standins import TwilioStandIn
    twilio = TwilioStandIn(tmp_path / "outbox.txt")
    try:
        head = twilio.config(max_per_hour=100, max_per_hour_total=1000, resend_interval_seconds=0)
        a, b = fleet("a", head=head), fleet("b", head=head)
        a.cli("enroll", "alice", "--sms", "+14155550123", "--json")
        for _ in range(3):
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: (a if i % 2 else b).conv("alice", [None]), range(8)))
        sent = len(twilio.requests)
        assert sent >= 3
        assert global_count(db) == sent, (global_count(db), sent)
        assert a.show("alice")["sms_sent_last_hour"] == sent
    finally:
        twilio.stop()


@pytest.mark.parametrize("provider", ["twilio-verify", "nomado"])
def test_16_concurrent_sms_logins_over_two_hosts_with_one_provider_checked_code_succeed_once(
        fleet, tmp_path, provider):
    """The database store's compare-and-swap, and its retry under the row lock, keep a
    provider-checked code single-use, with a provider that approves it every time."""
    from sms_standins import NomadoStandIn, TwilioVerifyStandIn
    outbox = tmp_path / "outbox.txt"
    standin = (TwilioVerifyStandIn if provider == "twilio-verify" else NomadoStandIn)(outbox)
    standin.approve_repeatedly = True
    try:
        head = "[policy]\nmax_failures = 1000\n\n" + standin.config(resend_interval_seconds=600,
                                                                      code_ttl_seconds=600)
        a, b = fleet("a", head=head), fleet("b", head=head)
        a.cli("enroll", "alice", "--sms", "+14155550123", "--json")
        assert a.conv("alice", [None]).pam_rc == 19  # texted; the user hangs up (PAM_CONV_ERR)
        answer = {"from_file": str(outbox), "pattern": r"is:? (\d{4,10})\b"}
        results = run_pam_clients_at_once(a.service_dir, [a.service, b.service] * 8, "alice", answer,
                                          tmp_path / "barrier")
        codes = sorted(r["rc"] for r in results)
        assert codes.count(PAM_SUCCESS) == 1 and codes.count(PAM_AUTH_ERR) == 15, codes
        assert len(standin.texts) == 1
        checks = [r for r in standin.requests if r.path.endswith(("/VerificationCheck", "/2fa/verify"))]
        assert 1 <= len(checks) <= 3
    finally:
        standin.stop()


@pytest.mark.parametrize("provider", ["twilio-verify", "nomado"])
def test_wrong_sms_answers_are_counted_in_the_database_when_the_provider_cannot_check(fleet, tmp_path, provider):
    from sms_standins import NomadoStandIn, TwilioVerifyStandIn
    outbox = tmp_path / "outbox.txt"
    standin = (TwilioVerifyStandIn if provider == "twilio-verify" else NomadoStandIn)(outbox)
    standin.check_fail = 503
    try:
        head = standin.config(resend_interval_seconds=0, max_per_hour=100)  # max_failures = 5
        a, b = fleet("a", head=head), fleet("b", head=head)
        alice = a.enroll("alice", "--sms", "+14155550123")
        valid = {oathtool_totp(alice["secret"], time.time() + d) for d in range(-120, 301, 30)}
        wrong = [c for c in (f"{n:06d}" for n in range(271_828, 271_840)) if c not in valid][:5]
        # Enter (a text), a wrong code (asked: 503), another at the fallback prompt (asked: 503).
        for n, host in enumerate((a, b), start=1):
            res = host.conv("alice", ["", wrong[2 * n - 2], wrong[2 * n - 1]])
            assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
            assert a.show("alice")["failures"] == 2 * n
        res = a.conv("alice", ["", wrong[4]])
        assert res.pam_rc == PAM_MAXTRIES, res.output
        assert b.show("alice")["failures"] == 5 and b.show("alice")["locked"] is True
        before = len(standin.requests)
        res = b.conv("alice", ["", wrong[0]])
        assert res.pam_rc == PAM_MAXTRIES and len(standin.requests) == before, res.output
    finally:
        standin.stop()


# --- the database goes away ----------------------------------------------------------------

def test_database_stopped_deny_mode_denies_cleanly_then_works_again_without_admin_action(abc, db):
    a, b, c = abc
    alice = a.enroll("alice")
    a.set_module_args("timeout=5")
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0
    db.stop()
    code = next_step_code(alice["secret"], oathtool_totp(alice["secret"]))
    res = a.conv("alice", [code])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert UNAVAILABLE_MSG in messages(res), res.messages
    assert not [m for m in res.messages if m["style"] == 1], res.messages  # no code asked for
    assert "unreachable" in res.log_text().lower(), res.log_text()
    assert res.logged("outcome=unavailable"), res.log_text()
    assert res.elapsed < 5 + 10, res.elapsed  # refused at once; "unreachable", not "timed out"
    # The CLI says so too, clearly and without hanging.
    t = time.monotonic()
    proc = b.cli("list", check=False)
    assert proc.returncode != 0 and proc.stderr.strip() and not proc.stdout, proc
    assert time.monotonic() - t < 30
    # Back: the same code (never accepted) now works, with no admin action.
    db.start()
    ok = b.login("alice", code)
    assert ok.rc == 0, ok.output


def test_database_restarted_between_logins_needs_no_admin_action(abc, db):
    a, b, _ = abc
    alice = a.enroll("alice")
    code = fresh_code(alice["secret"])
    db.restart()
    assert b.login("alice", code).rc == 0
    db.restart()
    assert a.login("alice", code).rc == 1  # and the replay is still known
    assert json.loads(a.cli("show", "alice", "--json").stdout)["failures"] == 1


def _helper_processes(helper: Path) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") in helper_executables(helper):
                out.append(int(pid))
        except OSError:
            pass
    return out


def test_a_database_that_accepts_and_never_answers_denies_within_the_timeout(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    with SilentListener() as silent:
        a.configure(conninfo=db.conninfo("verify-full", port=silent.port))
        a.set_module_args("timeout=5")
        seen: dict[str, bytes] = {}
        done = threading.Event()

        def watch():  # the helper's argv and environment, while it hangs on the database
            while not done.is_set():
                for pid in _helper_processes(a.helper):
                    for what in ("cmdline", "environ"):
                        try:
                            seen[f"{pid}/{what}"] = Path(f"/proc/{pid}/{what}").read_bytes()
                        except OSError:
                            pass
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            res = a.conv("alice", [fresh_code(alice["secret"])], timeout=30)
        finally:
            done.set()
            watcher.join()
        assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
        assert UNAVAILABLE_MSG in messages(res), res.messages
        # The TCP connection was up: not an outage but a server that does not behave.
        assert "cannot use the database" in res.log_text() and "no answer" in res.log_text(), res.log_text()
        assert res.elapsed < 5 + 10, res.elapsed  # the helper's own deadline, not a hang
        assert silent.accepted, "the helper never reached the database port"
        assert seen, "never saw the helper running"
        for key, value in seen.items():
            assert db.password.encode() not in value, key
        assert db.password not in res.output
        # The CLI gives up too, with a clear error.
        t = time.monotonic()
        proc = a.cli("list", check=False)
        assert proc.returncode != 0 and "no answer" in proc.stderr, proc.stderr
        assert time.monotonic() - t < 30


def test_cached_mode_verifies_offline_refuses_replays_and_reconciles(fleet, db):
    head = "[policy]\nmax_failures = 10\n"
    extra = "offline_recovery = true\n"
    a = fleet("a", offline="cached", head=head, store_extra=extra)
    b = fleet("b", offline="cached", head=head, store_extra=extra)
    never = fleet("c", offline="cached", head=head, store_extra=extra)
    alice = a.enroll("alice")
    bob = a.enroll("bob")
    carol = b.enroll("carol")  # enrolled from B: A never touches carol
    # A contacts the database for alice by a login; B for everyone by refresh-cache.
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0
    b.store("refresh-cache")
    code = next_step_code(alice["secret"], first)
    db.stop()

    # Offline on A: the right code once, a recovery code once; then a replay and a wrong code.
    ok = a.login("alice", code)
    assert ok.rc == 0, ok.output
    rec = a.conv("alice", [alice["recovery_codes"][0]])
    assert rec.pam_rc == PAM_SUCCESS, rec.output
    replay = a.login("alice", code)
    assert replay.rc == 1 and AUTH_FAILURE in replay.output, replay.output
    assert a.login("alice", wrong_of(code)).rc == 1
    # B refreshed its cache for every user, so it verifies bob offline too.
    bob_code = fresh_code(bob["secret"])
    assert b.login("bob", bob_code).rc == 0
    # A host that never cached the user denies, whatever the code.
    denied = never.conv("alice", [code])
    assert denied.pam_rc in (PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR), denied.output
    # A never cached carol either.
    assert a.conv("carol", [fresh_code(carol["secret"])]).pam_rc != PAM_SUCCESS

    # Back: A's next contact (a login of another user) hands its offline events over.
    db.start()
    assert a.login("bob", "000000" if fresh_code(bob["secret"]) != "000000" else "111111").rc == 1
    shown = b.show("alice")
    assert shown["failures"] == 2, shown  # the replay and the wrong code
    assert shown["recovery_codes_left"] == 9, shown
    # The step used offline on A is refused on B; the recovery code too.
    late = b.login("alice", code)
    assert late.rc == 1 and late.logged("wrong, reused or expired code"), late.output
    assert b.conv("alice", [alice["recovery_codes"][0]]).pam_rc == PAM_AUTH_ERR
    # B's offline use of bob's code reaches the database at B's refresh-cache.
    b.store("refresh-cache")
    late_bob = a.login("bob", bob_code)
    assert late_bob.rc == 1 and late_bob.logged("wrong, reused or expired code"), late_bob.output


def test_cached_mode_counts_offline_failures_toward_a_local_lockout(fleet, db):
    head = "[policy]\nmax_failures = 3\nlockout_seconds = 600\n"
    a = fleet("a", offline="cached", head=head)
    alice = a.enroll("alice")
    a.store("refresh-cache")
    db.stop()
    right = fresh_code(alice["secret"])
    for wrong in (wrong_of(right), wrong_of(right)[::-1], "000000" if right != "000000" else "999999"):
        assert a.login("alice", wrong).rc == 1
    locked = a.conv("alice", [fresh_code(alice["secret"])])
    assert locked.pam_rc == PAM_MAXTRIES, locked.output
    db.start()
    a.store("refresh-cache")
    assert a.show("alice")["failures"] == 3


def test_cached_mode_does_not_offer_sms_offline(fleet, db, tmp_path):
    from sms_standins import TwilioStandIn
    outbox = tmp_path / "outbox.txt"
    twilio = TwilioStandIn(outbox)
    try:
        a = fleet("a", offline="cached", head=twilio.config(resend_interval_seconds=0))
        a.cli("enroll", "alice", "--sms", "+14155550123", "--json")
        answer = {"from_file": str(outbox), "pattern": r"is:? (\d{4,10})\b"}
        assert a.conv("alice", [answer]).pam_rc == PAM_SUCCESS  # through the database: cached
        db.stop()
        res = a.conv("alice", ["", ""])
        assert res.pam_rc != PAM_SUCCESS, res.output
        assert len(twilio.requests) == 1  # nothing texted while offline
    finally:
        twilio.stop()


# --- moving from the file store --------------------------------------------------------------

def test_import_files_then_every_user_logs_in_through_the_database(fleet, db, tmp_path, helper_dir,
                                                                   service_dir, pam_module):
    # A populated file store, used for a while.
    files = Watchword(tmp_path / "files", helper_dir)
    write_service(service_dir, "files", [f"auth required {pam_module} {files.args()}"])
    alice = files.enroll("alice")
    bob = files.enroll("bob", "--algorithm", "sha256", "--digits", "8", "--period", "60")
    hal = files.enroll("hal", "--hotp")
    carol = files.enroll("carol")
    dave = files.enroll("dave")
    used_alice = fresh_code(alice["secret"])
    assert run_pamtester(service_dir, "files", "alice", used_alice + "\n").rc == 0
    for counter in (0, 1):
        assert run_pamtester(service_dir, "files", "hal", oathtool_hotp(hal["secret"], counter) + "\n").rc == 0
    assert run_pamtester(service_dir, "files", "carol", carol["recovery_codes"][2] + "\n").rc == 0
    for wrong in ("000001", "000002"):
        assert run_pamtester(service_dir, "files", "dave", wrong + "\n").rc == 1
    before = {u: files.show(u) for u in ("alice", "bob", "hal", "carol", "dave")}
    def user_state():  # what the file store knows of its users (the dir may gain host files)
        return {k: v for k, v in files.snapshot().items() if k.startswith("users/") or k == "recovery.key"}
    files_snapshot = user_state()

    a = fleet("a")
    b = fleet("b")
    dry = a.store("import-files", "--dry-run", state=files.state)
    assert "alice" in dry.stdout + dry.stderr
    assert json.loads(b.cli("list", "--json").stdout) == []
    assert not (files.state / "fleet").exists()  # a dry run marks nothing
    a.store("import-files", state=files.state)
    assert user_state() == files_snapshot  # the users' files are read, not changed
    # The imported directory has joined the fleet: its old records never decide a login again.
    assert (files.state / "fleet").stat().st_mode & 0o777 == 0o600
    stale = run_pamtester(service_dir, "files", "alice", next_step_code(alice["secret"], used_alice) + "\n")
    assert stale.rc == 1 and stale.logged("belongs to a fleet"), stale.output
    listed = sorted(u["user"] for u in json.loads(b.cli("list", "--json").stdout))
    assert listed == ["alice", "bob", "carol", "dave", "hal"]
    for user, old in before.items():
        new = b.show(user)
        for key in ("counter", "failures", "recovery_codes_left", "locked"):
            if key in old:
                assert new.get(key) == old[key], (user, key, old, new)

    # Every user logs in through the database on B with what they had.
    again = b.login("alice", used_alice)
    assert again.rc == 1, again.output  # the step used on the file store stays used
    assert b.login("alice", next_step_code(alice["secret"], used_alice)).rc == 0
    assert b.login("bob", fresh_code(bob["secret"], algorithm="sha256", digits=8, period=60)).rc == 0
    assert b.login("hal", oathtool_hotp(hal["secret"], 1)).rc == 1
    assert b.login("hal", oathtool_hotp(hal["secret"], 2)).rc == 0
    assert b.conv("carol", [carol["recovery_codes"][2]]).pam_rc == PAM_AUTH_ERR
    assert b.conv("carol", [carol["recovery_codes"][5]]).pam_rc == PAM_SUCCESS
    assert b.login("dave", fresh_code(dave["secret"])).rc == 0

    # Again: every user is already there, an error unless --force; nothing changes.
    db_before = b.cli("list", "--json").stdout
    rerun = a.store("import-files", state=files.state, check=False)
    assert rerun.returncode != 0 and "alice" in rerun.stderr, rerun
    assert b.cli("list", "--json").stdout == db_before
    a.store("import-files", "--force", state=files.state)

    # init and migrate run again safely.
    for _ in range(2):
        a.store("init")
        b.store("migrate")
    assert len(json.loads(a.cli("list", "--json").stdout)) == 5


def test_joining_a_fleet_marks_the_state_directory(fleet, db):
    a = fleet("a")  # runs store init
    b = fleet("b")
    assert (a.state / "fleet").exists() and not (b.state / "fleet").exists()
    alice = a.enroll("alice")
    code = fresh_code(alice["secret"])
    assert b.login("alice", code).rc == 0  # the first login through the database marks b
    marker = b.state / "fleet"
    st = marker.stat()
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    # b loses its config (or it says files): b's state directory is not a local store,
    # so neither alice nor an unenrolled user is let through, also with nullok.
    b.write_config('[store]\nbackend = "files"\n')
    b.set_module_args("nullok")
    write_service(b.service_dir, b.service, [f"auth required {b.pam_module} {b.args('nullok')}",
                                             "auth required pam_permit.so"])
    for user, answer in (("alice", next_step_code(alice["secret"], code)), ("nobody-here", "")):
        res = b.login(user, answer)
        assert res.rc == 1 and res.logged("belongs to a fleet"), res.output
    assert "belongs to a fleet" in b.cli("list", check=False).stderr


def test_import_files_is_all_or_nothing(fleet, tmp_path, helper_dir):
    files = Watchword(tmp_path / "files", helper_dir)
    for user in ("alice", "bob", "carol"):
        files.enroll(user)
    a = fleet("a")
    a.enroll("bob")  # already in the database
    res = a.store("import-files", state=files.state, check=False)
    assert res.returncode != 0 and "bob" in res.stderr, res
    assert [u["user"] for u in json.loads(a.cli("list", "--json").stdout)] == ["bob"]
    a.cli("remove", "bob")
    files.user_file("carol").write_bytes(b"watchword-user 1\nuser carol\n")  # corrupt
    res = a.store("import-files", state=files.state, check=False)
    assert res.returncode != 0 and "carol" in res.stderr, res
    assert json.loads(a.cli("list", "--json").stdout) == []


def test_store_init_and_migrate_are_safe_to_rerun(fleet, db):
    a = fleet("a")
    tables = db.tables()
    assert tables, "store init made no tables"
    alice = a.enroll("alice")
    for _ in range(2):
        assert a.store("init").returncode == 0
        assert a.store("migrate").returncode == 0
    assert db.tables() == tables
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0


@pytest.mark.parametrize("version, hint", [(99, "newer than this build"), (0, "store migrate")])
def test_a_schema_of_another_version_denies_and_says_why(fleet, db, version, hint):
    a = fleet("a")
    alice = a.enroll("alice")
    db.psql(f"UPDATE watchword_schema SET version = {version}")
    try:
        res = a.conv("alice", [fresh_code(alice["secret"])])
        assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
        assert res.logged(hint), res.log_text()
        assert not [m for m in res.messages if m["style"] == 1], res.messages  # no code asked for
        proc = a.cli("list", "--json", check=False)
        assert proc.returncode != 0 and hint in proc.stderr, proc
    finally:
        db.psql(f"UPDATE watchword_schema SET version = {SCHEMA_VERSION}")
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0


def test_the_fleet_audit_table_names_each_host_and_actor(fleet, db):
    a, b = fleet("a"), fleet("b")
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"} | {"SUDO_USER": "daemon"}
    out = a.cli("enroll", "alice", "--totp", "--json", env=env, preexec_fn=in_host("fleet-a"))
    secret = secret_of(json.loads(out.stdout)["otpauth_uri"])
    res = b.login("alice", fresh_code(secret), items={"rhost": "192.0.2.44"}, preexec_fn=in_host("fleet-b"))
    assert res.rc == 0, res.output
    rows = [r.split("|", 2) for r in db.psql("SELECT host, username, line FROM audit ORDER BY id").splitlines()]
    assert json.loads(rows[0][2])["event"] == "store-init"
    rows = rows[1:]
    assert [(h, u) for h, u, _ in rows] == [("fleet-a", "alice"), ("fleet-b", "alice")], rows
    enroll, login = (json.loads(line) for _, _, line in rows)
    assert (enroll["event"], enroll["actor"], enroll["actor_source"], enroll["host"]) == ("enroll", "daemon", "sudo", "fleet-a")
    assert (login["event"], login["host"], login["service"], login["rhost"]) == ("login", "fleet-b", b.service, "192.0.2.44")
    # Seen from either host, filtered by host and by actor.
    on_b = json.loads(a.cli("log", "--host", "fleet-b", "--json").stdout)
    assert [(e["event"], e["outcome"]) for e in on_b] == [("login", "success")]
    by_daemon = json.loads(b.cli("log", "--actor", "daemon", "--json").stdout)
    assert [(e["event"], e["host"]) for e in by_daemon] == [("enroll", "fleet-a")]


def test_migrating_a_schema_1_database_keeps_its_audit_rows_and_adds_the_host(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    assert a.login("alice", fresh_code(alice["secret"])).rc == 0
    before = db.psql("SELECT id, time, username, line FROM audit ORDER BY id")
    assert len(before.splitlines()) == 3  # store init, enroll, login
    # The database as version 1 left it: no host column.
    db.psql("DROP INDEX audit_host_time; ALTER TABLE audit DROP COLUMN host; UPDATE watchword_schema SET version = 1")
    # A helper facing the old schema denies, as for any other schema mismatch, and says why.
    res = a.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL and res.logged("store migrate"), res.log_text()
    assert a.cli("unlock", "alice", check=False).returncode != 0
    out = a.store("migrate").stdout
    assert db.psql("SELECT version FROM watchword_schema") == str(SCHEMA_VERSION), out
    after = db.psql("SELECT id, time, username, line FROM audit ORDER BY id").splitlines()
    assert after[:3] == before.splitlines()
    assert json.loads(after[3].split("|", 3)[3])["event"] == "store-migrate"
    assert db.psql("SELECT count(*) FROM audit WHERE host IS NULL") == "3"
    assert a.login("alice", next_step_code(alice["secret"], oathtool_totp(alice["secret"]))).rc == 0
    host = db.psql("SELECT host FROM audit ORDER BY id DESC LIMIT 1")
    assert host and host == socket.gethostname(), host
    assert [e["event"] for e in json.loads(a.cli("log", "alice", "--json").stdout)] == ["enroll", "login", "login"]


def test_doctor_reports_the_database(fleet, db):
    a = fleet("a")
    a.enroll("alice")
    names = ("store.connect", "store.tls", "store.schema", "store.clock")

    def store_checks() -> dict[str, set[str]]:
        proc = a.cli("doctor", "--json", check=False)
        out: dict[str, set[str]] = {}
        for c in json.loads(proc.stdout)["checks"]:
            if c["check"].startswith("store."):
                out.setdefault(c["check"], set()).add(c["status"])
        return out

    up = store_checks()
    for name in names:  # connectivity, TLS, schema version, clock skew
        assert up.get(name) == {"ok"}, (name, up)
    db.stop()
    down = store_checks()
    assert "fail" in down.get("store.connect", set()), down
    db.start()
    bad = fleet("bad", conninfo=db.conninfo("verify-full", db.wrong_ca))
    proc = bad.cli("doctor", "--json", check=False)
    assert proc.returncode != 0
    failed = [c for c in json.loads(proc.stdout)["checks"] if c["check"].startswith("store.") and c["status"] == "fail"]
    assert failed and any("certificate" in c["detail"] for c in failed), failed
    # A CA file someone else could rewrite would let them stand in for the server.
    loose = a.etc / "loose-ca.crt"
    shutil.copy(db.ca, loose)
    os.chown(loose, 65534, 65534)
    weak = fleet("weak", conninfo=db.conninfo("verify-full", loose))
    checks = json.loads(weak.cli("doctor", "--json", check=False).stdout)["checks"]
    assert any(c["check"] in ("store.tls", "store.conninfo") and c["status"] == "fail" and "sslrootcert" in c["detail"]
               for c in checks), checks


# --- TLS and the password ---------------------------------------------------------------------

def test_tls_verify_full_with_the_test_ca_works(fleet, db):
    a = fleet("a")
    assert "sslmode=verify-full" in a.conninfo and str(db.ca) in a.conninfo
    alice = a.enroll("alice")
    b = fleet("b", conninfo=db.conninfo("verify-full", host="localhost"))
    assert b.login("alice", fresh_code(alice["secret"])).rc == 0


@pytest.mark.parametrize("case", ["unrelated CA", "host name not in the certificate",
                                  "server certificate for another name"])
def test_a_wrong_server_certificate_is_refused(fleet, db, case):
    a = fleet("a")
    alice = a.enroll("alice")
    if case == "unrelated CA":
        bad = fleet("bad", conninfo=db.conninfo("verify-full", db.wrong_ca))
    elif case == "host name not in the certificate":
        bad = fleet("bad", conninfo=db.conninfo("verify-full", host="127.0.0.2"))
    else:
        bad = fleet("bad")
        db.use_certificate(db.wrongname_cert, db.wrongname_key)
    for args in (["list"], ["show", "alice"], ["enroll", "bob", "--totp"], ["unlock", "alice"],
                 ["recovery-codes", "alice"], ["remove", "alice"], ["status"], ["log"]):
        proc = bad.cli(*args, check=False)
        assert proc.returncode != 0, (args, proc.stdout)
        assert re.search(r"certificate|does not match|SSL|TLS", proc.stderr, re.I), (args, proc.stderr)
    for args in (["init"], ["migrate"], ["refresh-cache"]):
        assert bad.store(*args, check=False).returncode != 0, args
    res = bad.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    db.use_certificate(db.server_cert, db.server_key)
    # Nothing was done by the refused commands.
    assert [u["user"] for u in json.loads(a.cli("list", "--json").stdout)] == ["alice"]
    assert a.show("alice")["recovery_codes_left"] == 10


@pytest.mark.parametrize("case", ["mode 0644", "mode 0640", "owner not root", "missing", "wrong password"])
def test_a_bad_password_file_is_refused(fleet, db, case, tmp_path):
    a = fleet("a")
    alice = a.enroll("alice")
    bad = fleet("bad")
    if case == "mode 0644":
        os.chmod(bad.pgpass, 0o644)
    elif case == "mode 0640":
        os.chmod(bad.pgpass, 0o640)
    elif case == "owner not root":
        os.chown(bad.pgpass, 65534, 65534)
    elif case == "missing":
        os.unlink(bad.pgpass)
    else:
        bad.pgpass.write_text("not-the-password\n")
    proc = bad.cli("list", check=False)
    assert proc.returncode != 0 and proc.stderr.strip(), proc
    res = bad.conv("alice", [fresh_code(alice["secret"])])
    assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
    assert db.password not in proc.stdout + proc.stderr + res.output


def test_the_password_never_reaches_logs_or_output(fleet, db):
    a = fleet("a")
    b = fleet("b", head="[policy]\nmax_failures = 2\n")
    alice = a.enroll("alice")
    seen = [json.dumps(alice)]
    seen.append(b.login("alice", fresh_code(alice["secret"])).output)
    b.set_module_args("debug")
    seen.append(b.login("alice", "000000").output)
    seen.append(b.login("alice", "000001").output)
    for args in (["list", "--json"], ["show", "alice", "--json"], ["log", "--json"], ["status", "--json"],
                 ["unlock", "alice"], ["doctor", "--json"]):
        proc = a.cli(*args, check=False)
        seen.append(proc.stdout + proc.stderr)
    for args in (["init"], ["migrate"], ["refresh-cache"]):
        proc = a.store(*args, check=False)
        seen.append(proc.stdout + proc.stderr)
    db.stop()
    seen.append(b.login("alice", "123456").output)
    proc = a.cli("list", check=False)
    seen.append(proc.stdout + proc.stderr)
    db.start()
    for text in seen:
        assert db.password not in text, text
    for host in (a, b):
        assert db.password.encode() not in host.state_bytes(), host.name
    assert db.password not in db.log.read_text(errors="replace")


# --- more of the same, harder ------------------------------------------------------------------

def test_a_password_with_conninfo_metacharacters_works(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    tricky = "p ss'w\\rd= host=192.0.2.1 sslmode=disable \"x\""
    db.psql("ALTER ROLE watchword PASSWORD " + "'" + tricky.replace("'", "''") + "'", db="postgres")
    old = db.password
    db.password = tricky
    try:
        b = fleet("b")
        assert b.pgpass.read_text() == tricky + "\n"
        assert b.login("alice", fresh_code(alice["secret"])).rc == 0
        assert [u["user"] for u in json.loads(b.cli("list", "--json").stdout)] == ["alice"]
    finally:
        db.password = old
        db.psql(f"ALTER ROLE watchword PASSWORD '{old}'", db="postgres")


def test_concurrent_wrong_codes_on_two_hosts_are_counted_exactly(fleet):
    head = "[policy]\nmax_failures = 1000\n"
    a, b = fleet("a", head=head), fleet("b", head=head)
    codes = wrong_totp_codes(a.enroll("alice")["secret"], 48)
    # All 48 helpers (24 on each host) are waiting at the prompt before the first code is sent.
    results = run_pamtesters_together(a.service_dir, [((a if i % 2 else b).service, "alice", code + "\n")
                                                      for i, code in enumerate(codes)])
    assert all(r.rc == 1 and r.logged("outcome=auth_err") for r in results), \
        [r.log_text() for r in results if not r.logged("outcome=auth_err")][:2]
    assert a.show("alice")["failures"] == 48


def test_concurrent_enrolls_of_one_user_from_two_hosts_one_wins(fleet):
    a, b = fleet("a"), fleet("b")

    def enroll(host):
        return host.cli("enroll", "bob", "--totp", "--json", check=False)

    with ThreadPoolExecutor(8) as pool:
        procs = list(pool.map(enroll, [a, b] * 4))
    won = [p for p in procs if p.returncode == 0]
    assert len(won) == 1, [(p.returncode, p.stderr) for p in procs]
    secret = json.loads(won[0].stdout)["otpauth_uri"]
    assert b.show("bob")["recovery_codes_left"] == 10
    from ww import secret_of
    assert a.login("bob", fresh_code(secret_of(secret))).rc == 0


def _cache_file(host: Host, user: str) -> Path:
    files = [p for p in (host.state / "cache").rglob("*") if p.is_file() and user in p.name]
    assert len(files) == 1, files
    return files[0]


def _tamper_mode(h, path):
    os.chmod(path, 0o644)


def _tamper_owner(h, path):
    os.chown(path, 65534, 65534)


def _tamper_symlink(h, path):
    real = path.with_name(path.name + ".real")
    os.rename(path, real)
    os.symlink(real, path)


def _tamper_other_user(h, path):
    os.replace(_cache_file(h, "mallory"), path)


def _tamper_truncate(h, path):
    path.write_bytes(path.read_bytes()[:200])


CACHE_TAMPERING = {"mode 0644": _tamper_mode, "not root's": _tamper_owner, "a symlink": _tamper_symlink,
                   "another user's": _tamper_other_user, "truncated": _tamper_truncate}


@pytest.mark.parametrize("case", list(CACHE_TAMPERING))
def test_a_tampered_offline_cache_denies(fleet, db, case):
    a = fleet("a", offline="cached")
    alice = a.enroll("alice")
    mallory = a.enroll("mallory")
    a.store("refresh-cache")
    state = a.state_bytes()
    for secret in (alice["secret"], mallory["secret"], *alice["recovery_codes"]):
        assert secret.encode() not in state  # only keyed hashes are cached
    for p in a.state.rglob("*"):
        st = p.lstat()
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, p
    db.stop()
    CACHE_TAMPERING[case](a, _cache_file(a, "alice"))
    # mallory's code, typed for alice: must never pass, nor alice's own code from a bad cache.
    for code in (fresh_code(mallory["secret"]), fresh_code(alice["secret"])):
        res = a.conv("alice", [code])
        assert res.pam_rc in (PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR), (case, res.output)


def test_a_rotated_database_password_takes_effect_on_hosts_that_logged_in_before(fleet, db):
    a = fleet("a")
    alice = a.enroll("alice")
    first = fresh_code(alice["secret"])
    assert a.login("alice", first).rc == 0  # whatever the host keeps of the login, it has it now
    old, new = db.password, os.urandom(18).hex()
    db.psql(f"ALTER ROLE watchword PASSWORD '{new}'", db="postgres")
    db.password = new
    try:
        stale = a.conv("alice", [next_step_code(alice["secret"], first)])
        assert stale.pam_rc == PAM_AUTHINFO_UNAVAIL, stale.output  # the file still has the old one
        db.write_password_file(a.pgpass)
        res = a.login("alice", next_step_code(alice["secret"], first))
        assert res.rc == 0, res.output
        assert a.cli("list").returncode == 0
    finally:
        db.password = old
        db.psql(f"ALTER ROLE watchword PASSWORD '{old}'", db="postgres")


def test_bytes_injected_before_the_tls_handshake_are_refused(fleet, db):
    """A man in the middle answers the TLS request with 'S' and, in the same packet, a
    plaintext AuthenticationOk and ReadyForQuery. Had the client kept those bytes, it would
    take them as coming through TLS (libpq's CVE-2021-23222). It must refuse at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    seen = []

    def serve():
        listener.settimeout(10)
        try:
            while True:
                conn, _ = listener.accept()
                request = conn.recv(8)
                seen.append(request)
                conn.sendall(b"S" + b"R\0\0\0\x08\0\0\0\0" + b"Z\0\0\0\x05I")
                time.sleep(0.5)
                conn.close()
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        a = fleet("a")
        alice = a.enroll("alice")
        mitm = fleet("mitm", conninfo=db.conninfo("verify-full", port=port))
        proc = mitm.cli("list", "--json", check=False)
        # libpq (15.2+, CVE-2021-23222 fixed) refuses bytes that came with the 'S'.
        assert proc.returncode != 0 and "cannot use the database" in proc.stderr, proc
        assert "alice" not in proc.stdout, proc
        res = mitm.conv("alice", [fresh_code(alice["secret"])])
        assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
        assert seen and seen[0] == b"\0\0\0\x08\x04\xd2\x16\x2f", seen  # it was asked, and refused
    finally:
        listener.close()


# --- a helper killed in the middle of a transaction -----------------------------------

class RowHolder:
    """A session of postgres (over the private socket) that holds alice's row lock until
    released: BEGIN; SELECT ... FOR UPDATE, then ROLLBACK on release()."""

    def __init__(self, pg: PgServer, user: str):
        from pgserver import PG_BIN, PG_USER
        self.proc = subprocess.Popen(
            ["runuser", "-u", PG_USER, "--", str(PG_BIN / "psql"), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-h", str(pg.sock), "-p", str(pg.port), "-d", "watchword"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=pg.base, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"})
        self.proc.stdin.write(f"BEGIN;\nSELECT 'locked' FROM users WHERE name = '{user}' FOR UPDATE;\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("ROLLBACK;\n\\q\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


def row_is_locked(pg: PgServer, user: str) -> bool:
    """Whether some transaction holds the user's row lock (NOWAIT fails at once if so)."""
    out = pg.psql(f"BEGIN; SELECT 'free' FROM users WHERE name = '{user}' FOR UPDATE NOWAIT; ROLLBACK",
                  check=False)
    return "free" not in out


def helper_pids(host: Host) -> list[int]:
    """The running helpers of a host: processes executing its helper binary."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/exe") in helper_executables(host.helper):
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_helper_killed_while_it_holds_the_row_lock_leaves_the_row_unlocked_and_whole(fleet, db):
    """The helper on host A reads alice's record, prompts; meanwhile a wrong code on B
    changes the record (so A's compare-and-swap conflicts) and the test holds the row lock.
    A's helper then waits in SELECT ... FOR UPDATE; it is stopped (SIGSTOP), the test lets
    go, so A's transaction now holds the row lock, and A's helper is SIGKILLed with its
    process group. The server must roll back at once: the row unlocked well before any
    idle-in-transaction timeout (20 s with timeout=30), the record the one before the kill,
    and the next login on B promptly through with the very code A's helper was checking."""
    a, b = fleet("a", module_args="timeout=30"), fleet("b", module_args="timeout=30")
    alice = a.enroll("alice")
    code = fresh_code(alice["secret"], margin=10)
    done = {}
    login = threading.Thread(target=lambda: done.update(res=a.conv("alice", [{"delay": 2, "answer": code}])))
    login.start()
    holder = None
    stopped = []
    try:
        [pid] = wait_for(lambda: helper_pids(a), 10, "A's helper to start")
        # While A's helper waits for the answer: B changes the record, the test locks the row.
        assert b.login("alice", wrong_of(code)).rc == 1
        before = db.psql("SELECT record FROM users WHERE name = 'alice'")
        holder = RowHolder(db, "alice")
        # A's answer comes; its swap conflicts and its FOR UPDATE waits on the test's lock.
        wait_for(lambda: db.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'watchword' "
                                 "AND wait_event_type = 'Lock'") == "1", 10, "A's helper to wait for the row lock")
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        holder.release()
        # Now A's (stopped) helper holds the row lock in its open transaction.
        sessions = "SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE usename = 'watchword'"
        wait_for(lambda: db.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'watchword' "
                                 "AND state = 'idle in transaction'") == "1", 5,
                 "A's helper to hold the lock: " + db.psql(sessions))
        assert row_is_locked(db, "alice"), "A's helper did not take the row lock: " + db.psql(sessions)
        killed = time.monotonic()
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        wait_for(lambda: not row_is_locked(db, "alice"), 3, "the row lock to be released after the kill")
        released = time.monotonic() - killed
        assert db.psql("SELECT record FROM users WHERE name = 'alice'") == before, "half-written record"
        login.join(30)
        assert done["res"].pam_rc not in (None, PAM_SUCCESS), done["res"].output
        # The next login, on B, goes through at once with the code A never used.
        res = b.login("alice", code)
        assert res.rc == 0, res.output
        assert res.elapsed < 5, res.elapsed
        assert b.show("alice")["failures"] == 0
        print(f"\n  row lock released {released:.2f} s after SIGKILL; next login {res.elapsed:.2f} s")
    finally:
        if holder:
            holder.release()
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        login.join(30)


def test_an_exempt_login_is_audited_in_the_database_and_needs_no_record(fleet, db):
    """exempt_from= on a fleet host: not asked, PAM_IGNORE, the audit line in the shared
    audit table with the host and the reason, and the user's row untouched."""
    a = fleet("a", module_args="exempt_from=10.0.0.0/8")
    alice = a.enroll("alice")
    before = db.psql("SELECT record FROM users WHERE name = 'alice'")
    res = a.conv("alice", [fresh_code(alice["secret"])], items={"rhost": "10.1.2.3"})
    assert res.pam_rc == 6 and res.logged("outcome=exempt result=PAM_IGNORE"), res.output  # PAM_PERM_DENIED: nothing said yes
    assert not [m for m in res.messages if m["style"] == 1], res.messages  # not asked
    line = db.psql("SELECT line FROM audit ORDER BY id DESC LIMIT 1")
    entry = json.loads(line)
    assert (entry["event"], entry["user"], entry["outcome"], entry["reason"], entry["rhost"]) == (
        "login", "alice", "exempt", "exempt: from 10.1.2.3 in 10.0.0.0/8", "10.1.2.3")
    assert entry["host"] and db.psql("SELECT host FROM audit ORDER BY id DESC LIMIT 1") == entry["host"]
    assert db.psql("SELECT record FROM users WHERE name = 'alice'") == before
    # From elsewhere the code is asked as always.
    other = a.conv("alice", [fresh_code(alice["secret"])], items={"rhost": "192.0.2.9"})
    assert other.pam_rc == PAM_SUCCESS, other.output
