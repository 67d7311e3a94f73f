"""A real PostgreSQL 15 for the fleet tests and the fleet benchmark.

One throw-away cluster in a fresh directory under /tmp owned by the ``postgres`` OS user
(postgres refuses to run as root), listening on 127.0.0.1 and 127.0.0.2 on a free port
with TLS on, and on a private unix socket directory that only ``psql`` as ``postgres``
uses. Certificates come from the openssl CLI:

- ``ca`` (``ca.crt``): the test CA; it signed the server certificate, CN=localhost with
  SAN DNS:localhost and IP:127.0.0.1 (so 127.0.0.2 is the same server under a name the
  certificate does not carry: the "host name does not match" case);
- ``wrong_ca`` (``wrong-ca.crt``): an unrelated CA that signed nothing the server shows.

pg_hba lets role ``watchword`` in over ``host`` and ``hostssl`` from 127.0.0.0/8 with
scram-sha-256 only; ``postgres`` gets in over the socket (trust) for set-up and resets.

    pg = PgServer()
    pg.start()
    pg.conninfo(sslmode="verify-full")   # host=127.0.0.1 port=... sslrootcert=<ca.crt> ...
    pg.password                          # the watchword role's password
    pg.reset()                           # DROP DATABASE watchword; CREATE DATABASE ...
    pg.stop(); pg.start(); pg.restart()
    pg.close()                           # stop (immediate if need be) and remove it all

Run this file directly for a self-test (start, psql over TLS verify-full with the CA,
refusals with the wrong CA and the wrong name, stop, restart).
"""
from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("WATCHWORD_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
ROLE = "watchword"
DATABASE = "watchword"


def _free_port(hosts=("127.0.0.1", "127.0.0.2")) -> int:
    """A TCP port free on every one of hosts (picked by the kernel on the first)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_ca(dir: Path, name: str, cn: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256): returns (cert, key)."""
    key, crt = dir / f"{name}.key", dir / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", "3", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
    return crt, key


def make_cert(dir: Path, name: str, cn: str, san: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A server certificate for cn with subjectAltName san, signed by ca: (cert, key)."""
    key, csr, crt, ext = dir / f"{name}.key", dir / f"{name}.csr", dir / f"{name}.crt", dir / f"{name}.ext"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=dir)
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(crt), "-days", "3", "-extfile", str(ext), cwd=dir)
    csr.unlink()
    ext.unlink()
    return crt, key


class PgServer:
    """One private PostgreSQL cluster; see the module docstring."""

    def __init__(self, *, max_connections: int = 300, durable: bool = False, password: str | None = None,
                 extra_conf: str = ""):
        self.pw = pwd.getpwnam(PG_USER)
        self.base = Path(tempfile.mkdtemp(prefix="ww-pg-", dir="/tmp"))
        os.chmod(self.base, 0o755)  # the CA must be readable by root's libpq; nothing secret here but keys
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.tls = self.base / "tls"
        self.log = self.base / "postgres.log"
        self.port = _free_port()
        # The watchword role's password (give one to make a second server of the same fleet).
        self.password = password or os.urandom(18).hex()
        # More postgresql.conf lines (e.g. default_transaction_read_only = on: a read-only server).
        self.extra_conf = extra_conf
        self.max_connections = max_connections
        # Tests run without fsync for speed; benchmarks want a server that commits for real.
        self.durable = durable
        self._running = False
        self._initialised = False
        self._closed = False
        atexit.register(self.close)
        self.tls.mkdir()
        self.sock.mkdir()
        ca = make_ca(self.tls, "ca", "watchword test CA")
        wrong = make_ca(self.tls, "wrong-ca", "unrelated test CA")
        self.ca, self.wrong_ca = ca[0], wrong[0]
        self.server_cert, self.server_key = make_cert(
            self.tls, "server", "localhost", "DNS:localhost,IP:127.0.0.1", ca)
        # A certificate from the right CA for another name, should a test want to swap it in.
        self.wrongname_cert, self.wrongname_key = make_cert(
            self.tls, "wrongname", "db.invalid", "DNS:db.invalid", ca)
        # A self-signed server certificate (signed by the unrelated CA), likewise.
        self.wrongca_cert, self.wrongca_key = make_cert(
            self.tls, "wrongca-server", "localhost", "DNS:localhost,IP:127.0.0.1", wrong)
        for p in (self.ca.with_suffix(".key"), self.wrong_ca.with_suffix(".key")):
            p.unlink()  # no one signs anything else
        for p in (self.base, self.sock, self.tls):
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)
        for p in self.tls.iterdir():
            # The CAs are the clients' trust anchors: root's, as `watchword doctor` wants them.
            if p not in (self.ca, self.wrong_ca):
                os.chown(p, self.pw.pw_uid, self.pw.pw_gid)
            os.chmod(p, 0o600 if p.suffix == ".key" else 0o644)
        os.chmod(self.sock, 0o700)

    # --- running postgres as its own user ---------------------------------------------
    def _as_postgres(self, argv: list, *, check: bool = True, timeout: float = 60,
                     input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(["runuser", "-u", PG_USER, "--", *map(str, argv)], cwd=self.base,
                              capture_output=True, text=True, timeout=timeout, input=input,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"})
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                               f"--- server log tail:\n{self.log_tail()}")
        return proc

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _initdb(self) -> None:
        self._as_postgres([PG_BIN / "initdb", "-D", self.data, "-U", PG_USER, "--no-sync",
                           "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C"])
        self.configure(self.server_cert, self.server_key)
        (self.data / "pg_hba.conf").write_text(
            "# watchword tests: postgres over the private socket, watchword by password only\n"
            f"local   all       {PG_USER}   trust\n"
            f"local   {DATABASE} {ROLE}  scram-sha-256\n"
            f"hostssl {DATABASE} {ROLE}  127.0.0.0/8  scram-sha-256\n"
            f"host    {DATABASE} {ROLE}  127.0.0.0/8  scram-sha-256\n")
        self._initialised = True

    def configure(self, cert: Path, key: Path) -> None:
        """(Re)write postgresql.auto.conf with this certificate and key; takes effect at the
        next start or reload()."""
        self._cert = (cert, key)
        (self.data / "postgresql.auto.conf").write_text(
            f"listen_addresses = '127.0.0.1,127.0.0.2'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.sock}'\n"
            f"max_connections = {self.max_connections}\n"
            "shared_buffers = 16MB\n"
            + ("" if self.durable else "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n") +
            "ssl = on\n"
            f"ssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "log_connections = off\nlog_min_messages = warning\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n" + self.extra_conf)
        os.chown(self.data / "postgresql.auto.conf", self.pw.pw_uid, self.pw.pw_gid)

    def start(self) -> "PgServer":
        if self._running:
            return self
        if not self._initialised:
            self._initdb()
        self._as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                           *([] if self.durable else ["-o", "-c fsync=off"]), "start"])
        self._running = True
        if not getattr(self, "_role_made", False):
            self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'", db="postgres")
            self.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}", db="postgres")
            self._role_made = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (fast shutdown: sessions are ended, no waiting for them)."""
        if not self._running:
            return
        self._as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"])
        self._running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        self._as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "reload"])

    def use_certificate(self, cert: Path, key: Path) -> None:
        """Serve another certificate from now on (the config is rewritten, then reloaded)."""
        if getattr(self, "_cert", None) == (cert, key):
            return
        self.configure(cert, key)
        if self._running:
            self.reload()
            time.sleep(0.3)  # the postmaster re-reads its config asynchronously

    @property
    def running(self) -> bool:
        return self._running

    # --- SQL as postgres ---------------------------------------------------------------
    def psql(self, sql: str, *, db: str = DATABASE, check: bool = True) -> str:
        """Runs sql as postgres over the private socket; returns unaligned tuples-only output."""
        proc = self._as_postgres([PG_BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                  "-h", self.sock, "-p", self.port, "-d", db, "-c", sql], check=check)
        return proc.stdout.strip()

    def reset(self) -> None:
        """An empty watchword database again (the product's schema lives in its public
        schema): drop it, ending any session still in it, and make it anew."""
        self.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", db="postgres")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}", db="postgres")

    def tables(self) -> list[str]:
        out = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [t for t in out.splitlines() if t]

    # --- what a client needs --------------------------------------------------------------
    def conninfo(self, sslmode: str = "verify-full", rootcert: Path | str | None = None, *,
                 host: str = "127.0.0.1", port: int | None = None, dbname: str = DATABASE,
                 user: str = ROLE, **extra) -> str:
        """A libpq conninfo string without the password (rootcert defaults to the test CA
        for the verifying modes)."""
        parts = [f"host={host}", f"port={port or self.port}", f"dbname={dbname}", f"user={user}",
                 f"sslmode={sslmode}"]
        if rootcert is None and sslmode in ("verify-ca", "verify-full"):
            rootcert = self.ca
        if rootcert is not None:
            parts.append(f"sslrootcert={rootcert}")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def client_psql(self, sql: str, conninfo: str, *, check: bool = True,
                    timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs sql as role watchword over TCP with conninfo (the password through PGPASSWORD,
        a test-side convenience only)."""
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10",
               "LANG": "C", "LC_ALL": "C", "HOME": str(self.base)}
        proc = subprocess.run([PG_BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", conninfo, "-c", sql], capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql {conninfo!r} failed:\n{proc.stderr}")
        return proc

    def write_password_file(self, path: Path, *, mode: int = 0o600, uid: int = 0) -> Path:
        """The password on one line, root-owned 0600 unless told otherwise."""
        path = Path(path)
        path.write_text(self.password + "\n")
        os.chown(path, uid, 0)
        os.chmod(path, mode)
        return path

    # --- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._running:
            try:
                self.stop("fast")
            except Exception:
                try:
                    self.stop("immediate")
                except Exception:
                    self._kill_postmaster()
        self._running = False
        shutil.rmtree(self.base, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class SilentListener:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word: a database
    host that is up at the TCP level but hangs (a stuck server, a black-holing middlebox)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)  # held open, never read from or written to
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        for c in self.accepted:
            c.close()
        self.sock.close()

    def __enter__(self) -> "SilentListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _self_test() -> None:
    t0 = time.monotonic()
    with PgServer() as pg:
        print(f"started on port {pg.port} in {time.monotonic() - t0:.2f} s ({pg.base})")
        good = pg.client_psql("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                              pg.conninfo("verify-full"))
        print("verify-full, test CA:", good.stdout.strip())
        assert good.stdout.strip().startswith("t|TLS"), good.stdout
        assert pg.client_psql("SELECT current_user", pg.conninfo("verify-full", host="localhost")
                              ).stdout.strip() == ROLE
        bad = pg.client_psql("SELECT 1", pg.conninfo("verify-full", pg.wrong_ca), check=False)
        assert bad.returncode != 0 and "certificate verify failed" in bad.stderr, bad.stderr
        print("verify-full, wrong CA: refused:", bad.stderr.strip().splitlines()[-1])
        name = pg.client_psql("SELECT 1", pg.conninfo("verify-full", host="127.0.0.2"), check=False)
        assert name.returncode != 0 and "does not match" in name.stderr, name.stderr
        print("verify-full, 127.0.0.2: refused:", name.stderr.strip().splitlines()[-1])
        env_pw = dict(os.environ, PGPASSWORD="not-it")
        wrong_pw = subprocess.run([PG_BIN / "psql", "-X", "-d", pg.conninfo(), "-c", "SELECT 1"],
                                  capture_output=True, text=True, env=env_pw)
        assert wrong_pw.returncode != 0 and "password authentication failed" in wrong_pw.stderr
        pg.client_psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", pg.conninfo())
        t = time.monotonic()
        pg.stop()
        down = pg.client_psql("SELECT 1", pg.conninfo(), check=False)
        assert down.returncode != 0 and "Connection refused" in down.stderr, down.stderr
        print(f"stopped in {time.monotonic() - t:.2f} s; connecting now: refused")
        t = time.monotonic()
        pg.start()
        assert pg.client_psql("SELECT x FROM t", pg.conninfo()).stdout.strip() == "1"
        print(f"started again in {time.monotonic() - t:.2f} s, data kept")
        t = time.monotonic()
        pg.restart()
        print(f"restart in {time.monotonic() - t:.2f} s")
        pg.reset()
        assert pg.tables() == []
        print("reset: no tables")
        pg.use_certificate(pg.wrongname_cert, pg.wrongname_key)
        sw = pg.client_psql("SELECT 1", pg.conninfo("verify-full"), check=False)
        assert sw.returncode != 0 and "does not match" in sw.stderr, sw.stderr
        pg.use_certificate(pg.server_cert, pg.server_key)
        pg.client_psql("SELECT 1", pg.conninfo("verify-full"))
        print("certificate swapped to another name: refused; swapped back: accepted")
        with SilentListener() as silent:
            t = time.monotonic()
            hang = subprocess.run([PG_BIN / "psql", "-X", "-d", pg.conninfo(port=silent.port, connect_timeout=2),
                                   "-c", "SELECT 1"], capture_output=True, text=True, env=env_pw)
            assert hang.returncode != 0
            print(f"silent listener: psql gave up after {time.monotonic() - t:.2f} s (connect_timeout=2)")
        base = pg.base
    assert not base.exists()
    print(f"closed, {base} removed; total {time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    _self_test()
