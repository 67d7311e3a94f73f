"""Something that answers on the database's address and is not the database.

In fleet mode whoever answers for the database decides every login. An ``Impostor``
listens on a TCP port and speaks just enough of the PostgreSQL protocol (v3) to be
believed by a careless client, and records what it was told:

- SSLRequest: answered ``N`` (no TLS), or ``S`` and then a TLS handshake with the
  certificate it was given (never one the client should accept);
- authentication: ``ok`` (AuthenticationOk at once, no password asked), ``cleartext``
  (AuthenticationCleartextPassword; the PasswordMessage is recorded), ``scram`` (a whole
  SCRAM-SHA-256 exchange with the impostor's own salt and nonce: the client-final proof it
  receives lets it guess the password offline, so it counts as the password learnt),
  ``sasl-final-first`` (AuthenticationSASL, then a SASLFinal and AuthenticationOk before
  any SASLContinue: a server that claims to have checked what it never saw);
- then ParameterStatus, BackendKeyData, ReadyForQuery, and every Query or
  Parse/Bind/Describe/Execute/Sync answered with rows of its choosing: schema version
  ``schema_version`` for ``watchword_schema``, ``record`` (a user file's text) for the
  user named ``user``, and no row for anyone else (a "not enrolled" that ``nullok`` lets
  through), ``recovery_key`` (hex) as the fleet's recovery-code key, "1" for
  ``... RETURNING`` (every compare-and-swap "succeeds").

    imp = Impostor(tls=(cert, key), auth="cleartext", user="alice", record=text)
    ...  # point a host's conninfo at 127.0.0.1 port imp.port, log in
    imp.connections        # how many TCP connections it accepted
    imp.tls_negotiated     # whether any TLS handshake completed
    imp.passwords          # cleartext passwords and SCRAM client-final messages received
    imp.queries            # every SQL text received (Query or Parse)
    imp.received           # every (connection, type, payload) after the startup packet
    imp.close()

It stops by itself: the listener and every connection run in daemon threads, each read
is bounded by ``io_timeout`` and the listener closes after ``lifetime`` seconds.
"""
from __future__ import annotations

import base64
import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
TEXT_OID = 25

AUTH_KINDS = ("ok", "cleartext", "scram", "sasl-final-first")


def make_self_signed(dir: Path, name: str, cn: str, san: str) -> tuple[Path, Path]:
    """A self-signed server certificate (no CA at all) for cn with subjectAltName san."""
    from pgserver import _openssl
    key, crt = Path(dir) / f"{name}.key", Path(dir) / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", "3", "-subj", f"/CN={cn}",
             "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "extendedKeyUsage=serverAuth", cwd=Path(dir))
    return crt, key


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _auth(code: int, data: bytes = b"") -> bytes:
    return _message(b"R", struct.pack("!i", code) + data)


def _cstrings(data: bytes) -> list[bytes]:
    return data.split(b"\0")


class _Closed(Exception):
    pass


class _Conn:
    """One accepted connection (buffered reads over a socket, plain or TLS)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise _Closed()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class Impostor:
    """See the module docstring."""

    def __init__(self, *, tls: tuple[Path, Path] | None = None, auth: str = "ok",
                 user: str = "alice", record: str | None = None, recovery_key: str | None = None,
                 schema_version: int = 2,
                 host: str = "127.0.0.1", port: int = 0, io_timeout: float = 3.0,
                 lifetime: float = 60.0):
        assert auth in AUTH_KINDS, auth
        self.tls, self.auth = tls, auth
        self.user, self.record, self.schema_version = user, record, schema_version
        self.recovery_key = recovery_key
        self.io_timeout = io_timeout
        self.lock = threading.Lock()
        self.connections = 0
        self.ssl_requests = 0
        self.tls_negotiated = False
        self.tls_errors: list[str] = []
        self.startups: list[dict[str, str]] = []
        self.passwords: list[bytes] = []
        self.queries: list[str] = []
        self.received: list[tuple[int, str, bytes]] = []
        self.raw = bytearray()  # every byte received, after TLS decryption where there was TLS
        self.errors: list[str] = []
        self._ctx = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"impostor-{self.port}")
        self._thread.start()

    # --- what it learnt -------------------------------------------------------------------
    @property
    def got_password(self) -> bool:
        return bool(self.passwords)

    @property
    def got_query(self) -> bool:
        return bool(self.queries)

    def summary(self) -> str:
        with self.lock:
            return (f"impostor port {self.port} tls={'cert' if self.tls else 'refused'} auth={self.auth}: "
                    f"{self.connections} connection(s), {self.ssl_requests} SSLRequest(s), "
                    f"TLS negotiated={self.tls_negotiated}, TLS errors={self.tls_errors}, "
                    f"startups={self.startups}, passwords={self.passwords}, queries={self.queries}, "
                    f"messages={[(c, t) for c, t, _ in self.received]}, errors={self.errors}")

    def saw(self, secret: str | bytes) -> bool:
        """Whether secret appears anywhere in what the impostor received."""
        data = secret.encode() if isinstance(secret, str) else secret
        with self.lock:
            return data in bytes(self.raw)

    # --- serving --------------------------------------------------------------------------
    def _accept(self) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                sock, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            n += 1
            with self.lock:
                self.connections += 1
                self._open.append(sock)
            t = threading.Thread(target=self._serve, args=(sock, n), daemon=True)
            self._threads.append(t)
            t.start()
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self, sock: socket.socket, n: int) -> None:
        sock.settimeout(self.io_timeout)
        conn = _Conn(sock)
        try:
            self._session(conn, n)
        except (_Closed, OSError, ssl.SSLError, struct.error, ValueError, IndexError) as e:
            if not isinstance(e, _Closed):
                with self.lock:
                    self.errors.append(f"{n}: {type(e).__name__}: {e}")
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass

    def _record(self, n: int, kind: str, payload: bytes) -> None:
        with self.lock:
            self.received.append((n, kind, payload))
            self.raw += kind.encode("latin-1") + payload

    def _startup(self, conn: _Conn, n: int) -> dict[str, str] | None:
        """Reads startup-phase packets (SSLRequest, GSSENCRequest, then the startup
        message); returns its parameters, or None when the client gave up."""
        while True:
            length = struct.unpack("!i", conn.read(4))[0]
            if not 8 <= length <= 10000:
                raise ValueError(f"startup packet of length {length}")
            body = conn.read(length - 4)
            with self.lock:
                self.raw += body
            code = struct.unpack("!i", body[:4])[0]
            if code == SSL_REQUEST:
                with self.lock:
                    self.ssl_requests += 1
                if self._ctx is None:
                    conn.send(b"N")
                    continue
                conn.send(b"S")
                try:
                    tls = self._ctx.wrap_socket(conn.sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self.lock:
                        self.tls_errors.append(f"{type(e).__name__}: {e}")
                    return None
                tls.settimeout(self.io_timeout)
                conn.sock = tls
                with self.lock:
                    self.tls_negotiated = True
                    self._open.append(tls)
                continue
            if code == GSSENC_REQUEST:
                conn.send(b"N")
                continue
            if code == CANCEL_REQUEST:
                return None
            if code != PROTOCOL_3:
                raise ValueError(f"startup code {code}")
            parts = _cstrings(body[4:])
            params = {parts[i].decode(errors="replace"): parts[i + 1].decode(errors="replace")
                      for i in range(0, len(parts) - 1, 2) if parts[i]}
            with self.lock:
                self.startups.append(params)
            return params

    def _read_message(self, conn: _Conn, n: int) -> tuple[str, bytes]:
        kind = conn.read(1).decode("latin-1")
        length = struct.unpack("!i", conn.read(4))[0]
        if not 4 <= length <= 1 << 20:
            raise ValueError(f"message {kind!r} of length {length}")
        payload = conn.read(length - 4)
        self._record(n, kind, payload)
        return kind, payload

    def _session(self, conn: _Conn, n: int) -> None:
        params = self._startup(conn, n)
        if params is None:
            return
        if not self._authenticate(conn, n):
            return
        conn.send(b"".join(_message(b"S", k.encode() + b"\0" + v.encode() + b"\0") for k, v in (
            ("server_version", "15.8"), ("server_encoding", "UTF8"), ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"), ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
            ("TimeZone", "UTC"), ("is_superuser", "off"),
            ("session_authorization", params.get("user", "watchword")))))
        conn.send(_message(b"K", struct.pack("!ii", 4242, 0x5EC2E7)))
        conn.send(_message(b"Z", b"I"))
        self._queries(conn, n)

    def _authenticate(self, conn: _Conn, n: int) -> bool:
        """Plays the chosen authentication; True when the client went on to the session."""
        if self.auth == "ok":
            conn.send(_auth(0))
            return True
        if self.auth == "cleartext":
            conn.send(_auth(3))
            kind, payload = self._read_message(conn, n)
            if kind == "p":
                with self.lock:
                    self.passwords.append(payload.rstrip(b"\0"))
            conn.send(_auth(0))
            return True
        # SASL: the client's first message names the mechanism and carries no secret.
        conn.send(_auth(10, b"SCRAM-SHA-256\0\0"))
        kind, payload = self._read_message(conn, n)
        if kind != "p":
            return False
        mech, rest = payload.split(b"\0", 1)
        size = struct.unpack("!i", rest[:4])[0]
        client_first = rest[4:4 + size] if size >= 0 else b""
        if self.auth == "sasl-final-first":
            conn.send(_auth(12, b"v=" + base64.b64encode(os.urandom(32))))
            conn.send(_auth(0))
            return True
        # scram: the impostor's own salt and nonce; the proof that comes back is enough to
        # try passwords offline.
        bare = client_first.split(b",", 2)[2] if client_first.count(b",") >= 2 else client_first
        client_nonce = dict(a.split(b"=", 1) for a in bare.split(b",") if b"=" in a).get(b"r", b"")
        nonce = client_nonce + base64.b64encode(os.urandom(18))
        server_first = b"r=" + nonce + b",s=" + base64.b64encode(os.urandom(16)) + b",i=4096"
        conn.send(_auth(11, server_first))
        kind, payload = self._read_message(conn, n)
        if kind == "p":
            with self.lock:
                self.passwords.append(payload)
        conn.send(_auth(12, b"v=" + base64.b64encode(os.urandom(32))))
        conn.send(_auth(0))
        return True

    # --- the "database" -------------------------------------------------------------------
    def _rows(self, sql: str, args: list[str | None]) -> tuple[list[list[str | None]], str]:
        """The rows and the command tag for one statement."""
        s = " ".join(sql.lower().split())
        verb = (s.split(" ", 1)[0] or "select").upper()
        name = next((a for a in args if a is not None), None)
        mine = self.record if (name in (None, self.user)) else None
        if "watchword_schema" in s and s.startswith("select"):
            rows = [[str(self.schema_version)]]
        elif s.startswith("select name, record from users"):
            rows = [[self.user, self.record]] if self.record is not None else []
        elif s.startswith("select name from users"):
            rows = [[self.user]] if self.record is not None else []
        elif s.startswith("select record from users"):
            rows = [[mine]] if mine is not None else []
        elif "returning" in s:
            rows = [["1"]]
        elif "clock_timestamp" in s:
            rows = [[f"{time.time():.6f}"]]
        elif s.startswith("select value from settings"):
            rows = [[self.recovery_key]] if self.recovery_key else []
        elif s.startswith("select state from sms_global"):
            rows = [[""]]
        elif s.startswith("select"):
            rows = []
        else:
            return [], {"INSERT": "INSERT 0 1", "UPDATE": "UPDATE 1", "DELETE": "DELETE 1"}.get(verb, verb)
        tag = {"INSERT": f"INSERT 0 {len(rows)}"}.get(verb, f"{verb} {len(rows)}")
        return rows, tag

    @staticmethod
    def _row_description(width: int) -> bytes:
        fields = b"".join(f"c{i}".encode() + b"\0" + struct.pack("!ihihih", 0, 0, TEXT_OID, -1, -1, 0)
                          for i in range(width))
        return _message(b"T", struct.pack("!h", width) + fields)

    @staticmethod
    def _data_row(row: list[str | None]) -> bytes:
        out = struct.pack("!h", len(row))
        for v in row:
            out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v.encode())) + v.encode()
        return _message(b"D", out)

    def _width(self, sql: str) -> int:
        s = " ".join(sql.lower().split())
        if s.startswith("select name, record"):
            return 2
        return 1 if (s.startswith("select") or "returning" in s) else 0

    def _queries(self, conn: _Conn, n: int) -> None:
        sql = ""
        planned: tuple[list, str] = ([], "SELECT 0")
        failed = False
        while True:
            kind, payload = self._read_message(conn, n)
            if kind == "X":
                return
            if kind == "Q":
                text = payload.rstrip(b"\0").decode(errors="replace")
                with self.lock:
                    self.queries.append(text)
                out = b""
                for stmt in [p for p in text.split(";") if p.strip()] or [""]:
                    rows, tag = self._rows(stmt, [])
                    if self._width(stmt):
                        out += self._row_description(self._width(stmt))
                    out += b"".join(self._data_row(r) for r in rows) + _message(b"C", tag.encode() + b"\0")
                conn.send(out + _message(b"Z", b"I"))
            elif kind == "P":
                parts = payload.split(b"\0", 2)
                sql = parts[1].decode(errors="replace")
                with self.lock:
                    self.queries.append(sql)
                conn.send(_message(b"1"))
            elif kind == "B":
                portal, rest = payload.split(b"\0", 1)
                _stmt, rest = rest.split(b"\0", 1)
                nformats = struct.unpack("!h", rest[:2])[0]
                rest = rest[2 + 2 * nformats:]
                nparams = struct.unpack("!h", rest[:2])[0]
                rest = rest[2:]
                args: list[str | None] = []
                for _ in range(nparams):
                    size = struct.unpack("!i", rest[:4])[0]
                    rest = rest[4:]
                    if size < 0:
                        args.append(None)
                    else:
                        args.append(rest[:size].decode(errors="replace"))
                        rest = rest[size:]
                planned = self._rows(sql, args)
                conn.send(_message(b"2"))
            elif kind == "D":
                if payload[:1] == b"S":
                    conn.send(_message(b"t", struct.pack("!h", 0)))
                width = self._width(sql)
                conn.send(self._row_description(width) if width else _message(b"n"))
            elif kind == "E":
                rows, tag = planned
                conn.send(b"".join(self._data_row(r) for r in rows) + _message(b"C", tag.encode() + b"\0"))
            elif kind == "C":
                conn.send(_message(b"3"))
            elif kind == "S":
                conn.send(_message(b"Z", b"I"))
            elif kind in ("H", "d", "c", "f", "F"):
                continue
            else:
                failed = True
            if failed:
                return

    # --- stopping -------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self.lock:
            socks = list(self._open)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Impostor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _self_test() -> None:
    """Against libpq itself (psql): believed where libpq trusts it, refused under verify-full."""
    import subprocess
    import tempfile
    psql = "/usr/lib/postgresql/15/bin/psql"
    secret = "self-test-" + os.urandom(4).hex()
    env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": secret, "HOME": "/nonexistent", "PGCONNECT_TIMEOUT": "3"}
    with tempfile.TemporaryDirectory() as d:
        cert = make_self_signed(Path(d), "self", "localhost", "DNS:localhost,IP:127.0.0.1")
        for tls, auth, mode, believed in ((None, "ok", "disable", True), (cert, "cleartext", "require", True),
                                          (cert, "scram", "require", False), (None, "sasl-final-first", "prefer", False),
                                          (cert, "ok", "verify-full", False)):
            with Impostor(tls=tls, auth=auth, record="watchword-user 1\n") as imp:
                conninfo = f"host=127.0.0.1 port={imp.port} user=watchword dbname=watchword sslmode={mode}"
                if mode == "verify-full":
                    conninfo += " sslrootcert=/etc/ssl/certs/ca-certificates.crt"
                proc = subprocess.run([psql, "-X", "-A", "-t", "-d", conninfo, "-c",
                                       "SELECT record FROM users WHERE name = 'alice'"],
                                      capture_output=True, text=True, env=env, timeout=15)
                print(f"{mode:12} {auth:17} psql rc={proc.returncode} password learnt={imp.got_password} "
                      f"in clear={imp.saw(secret)} queries={len(imp.queries)} {proc.stderr.strip()[-70:]}")
                assert (proc.returncode == 0) == believed, imp.summary()
                assert imp.saw(secret) == (auth == "cleartext"), imp.summary()
                assert imp.got_password == (auth in ("cleartext", "scram")), imp.summary()
    print("ok")


if __name__ == "__main__":
    _self_test()
