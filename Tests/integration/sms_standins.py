"""Stand-ins for the SMS providers, on 127.0.0.1, speaking each API as DESIGN.md describes.

No real text is ever sent. Each stand-in is a ThreadingHTTPServer in a daemon thread of
the test process; it checks HTTP Basic credentials, the path and the form or JSON fields,
answers with the status codes and JSON shapes of the real service, and records every
request (``requests``) and every text it "sent" (``texts``, also appended to
``outbox`` so that pam_client.py can type the code: {"from_file": outbox, ...}).

``fail`` makes the next requests fail instead: an int is an HTTP status with the
provider's error JSON, "hang" never answers (until the server stops). ``redirect`` (a
URL) answers every request with 302 to it instead.

With ``tls`` (an ssl.SSLContext with the server's certificate) a stand-in speaks HTTPS,
and ``host`` is the name its ``base`` URL uses (the test maps it to 127.0.0.1).
``ConnectionRecorder`` is a TCP listener that records who connected and what they said
first (a proxy that must never be used).

The services that check codes (twilio-verify, nomado) have two more switches, for the
checks only (sending still works): ``check_fail``, an HTTP status answered to every
check, as a provider that is down just when the code is checked; and
``approve_repeatedly``, which approves the right code every time it is checked instead of
once, as a provider that cannot be trusted to make a code single-use.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass
class Request:
    method: str
    path: str
    auth: str | None  # "user:password" from HTTP Basic, or None
    content_type: str
    body: bytes
    form: dict = field(default_factory=dict)  # single values
    json: object = None


class StandIn:
    """Base: the server, the recording, and the failure switch."""

    name = "standin"

    def __init__(self, outbox: Path, user: str, password: str, *,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.outbox = Path(outbox)
        self.user, self.password = user, password
        self.requests: list[Request] = []
        self.texts: list[tuple[str, str]] = []  # (to, message)
        self.fail: int | str | None = None
        self.redirect: str | None = None
        self.tls, self.host = tls, host
        self.check_fail: int | None = None
        self.approve_repeatedly = False
        self._release = threading.Event()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                req = Request("POST", self.path, _basic(self.headers.get("Authorization")),
                              self.headers.get("Content-Type", ""), body)
                if req.content_type.startswith("application/x-www-form-urlencoded"):
                    req.form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
                elif req.content_type.startswith("application/json"):
                    try:
                        req.json = json.loads(body)
                    except ValueError:
                        req.json = None
                standin.requests.append(req)
                if standin.redirect:
                    self.send_response(302)
                    self.send_header("Location", standin.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if standin.fail == "hang":
                    standin._release.wait(120)
                    return
                status, answer = standin.answer(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                standin.requests.append(Request("GET", self.path, _basic(self.headers.get("Authorization")),
                                                self.headers.get("Content-Type", ""), b""))
                self.send_error(405)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.server.server_address[1]}"

    def stop(self):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def deliver(self, to: str, message: str):
        self.texts.append((to, message))
        with open(self.outbox, "a", encoding="utf-8") as f:
            f.write(message.replace("\n", " ") + "\n")

    def authorized(self, req: Request) -> bool:
        return req.auth == f"{self.user}:{self.password}"

    def answer(self, req: Request) -> tuple[int, object]:
        raise NotImplementedError


def _basic(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:]).decode()
    except ValueError:
        return None


class TwilioStandIn(StandIn):
    """Messages API: POST /2010-04-01/Accounts/{sid}/Messages.json, form To/From/Body."""

    name = "twilio"

    def __init__(self, outbox, sid="AC0123456789abcdef0123456789abcdef", token="tw-secret-token-1", **kw):
        super().__init__(outbox, sid, token, **kw)
        self.sid, self.token = sid, token

    def config(self, **sms) -> str:
        return sms_config("twilio", f'[sms.twilio]\naccount_sid = "{self.sid}"\nauth_token = "{self.token}"\n'
                                    f'from = "+15550000000"\napi_base = "{self.base}"\n', **sms)

    def answer(self, req):
        if isinstance(self.fail, int):
            return self.fail, {"code": 20000 + self.fail, "message": f"stand-in failure {self.fail}",
                               "more_info": "https://www.twilio.com/docs/errors", "status": self.fail}
        if not self.authorized(req):
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        if req.path != f"/2010-04-01/Accounts/{self.sid}/Messages.json":
            return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
        to, sender, body = req.form.get("To"), req.form.get("From"), req.form.get("Body")
        if not to or not E164.fullmatch(to):
            return 400, {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                         "status": 400}
        if not sender or not body:
            return 400, {"code": 21602, "message": "Message body is required.", "status": 400}
        self.deliver(to, body)
        return 201, {"sid": "SM" + secrets.token_hex(16), "status": "queued", "to": to, "from": sender,
                     "body": body}


class TwilioVerifyStandIn(StandIn):
    """Verify: /v2/Services/{sid}/Verifications and /VerificationCheck; it makes the codes."""

    name = "twilio-verify"

    def __init__(self, outbox, sid="AC0123456789abcdef0123456789abcdef", token="tv-secret-token-2",
                 service="VA0123456789abcdef0123456789abcdef"):
        super().__init__(outbox, sid, token)
        self.sid, self.token, self.service = sid, token, service
        self.codes: dict[str, str] = {}

    def config(self, **sms) -> str:
        return sms_config("twilio-verify",
                          f'[sms.twilio-verify]\naccount_sid = "{self.sid}"\nauth_token = "{self.token}"\n'
                          f'service_sid = "{self.service}"\napi_base = "{self.base}"\n', **sms)

    def answer(self, req):
        if isinstance(self.fail, int):
            return self.fail, {"code": 60000 + self.fail, "message": f"stand-in failure {self.fail}",
                               "status": self.fail}
        if not self.authorized(req):
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        prefix = f"/v2/Services/{self.service}/"
        to = req.form.get("To")
        if not to or not E164.fullmatch(to):
            return 400, {"code": 60200, "message": "Invalid parameter `To`", "status": 400}
        if req.path == prefix + "Verifications":
            if req.form.get("Channel") != "sms":
                return 400, {"code": 60200, "message": "Invalid parameter `Channel`", "status": 400}
            code = f"{secrets.randbelow(10**6):06d}"
            self.codes[to] = code
            self.deliver(to, f"Your verification code is: {code}")
            return 201, {"sid": "VE" + secrets.token_hex(16), "status": "pending", "to": to, "channel": "sms"}
        if req.path == prefix + "VerificationCheck":
            if self.check_fail is not None:
                return self.check_fail, {"code": 60000 + self.check_fail,
                                         "message": f"stand-in check failure {self.check_fail}",
                                         "status": self.check_fail}
            if to not in self.codes:
                return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
            if req.form.get("Code") == self.codes[to]:
                if not self.approve_repeatedly:
                    del self.codes[to]
                return 200, {"status": "approved", "valid": True, "to": to}
            return 200, {"status": "pending", "valid": False, "to": to}
        return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}


class NomadoStandIn(StandIn):
    """nomado OTP: /2fa/create and /2fa/verify with JSON bodies; it makes the codes."""

    name = "nomado"

    def __init__(self, outbox, user="nomado-user", password="nm-secret-pass-3"):
        super().__init__(outbox, user, password)
        self.codes: dict[str, str] = {}

    def config(self, **sms) -> str:
        return sms_config("nomado", f'[sms.nomado]\nusername = "{self.user}"\npassword = "{self.password}"\n'
                                    f'api_base = "{self.base}"\n', **sms)

    def answer(self, req):
        if isinstance(self.fail, int):
            return self.fail, {"code": self.fail, "message": f"stand-in failure {self.fail}"}
        if not self.authorized(req):
            return 401, {"code": 401, "message": "Unauthorized"}
        if not isinstance(req.json, dict):
            return 400, {"code": 400, "message": "Invalid JSON"}
        if req.path == "/2fa/create":
            j = req.json
            if not (isinstance(j.get("to"), str) and E164.fullmatch(j["to"]) and "{{CODE}}" in j.get("template", "")
                    and j.get("type") == "NUMERIC" and isinstance(j.get("length"), int)
                    and isinstance(j.get("expiry"), int)):
                return 400, {"code": 400, "message": "Invalid parameters"}
            code = "".join(str(secrets.randbelow(10)) for _ in range(j["length"]))
            self.codes[j["to"]] = code
            self.deliver(j["to"], j["template"].replace("{{CODE}}", code))
            return 200, {"code": 200, "message": "OK", "data": {"id": secrets.token_hex(8), "to": j["to"]}}
        if req.path == "/2fa/verify":
            if self.check_fail is not None:
                return self.check_fail, {"code": self.check_fail,
                                         "message": f"stand-in check failure {self.check_fail}"}
            number, token = req.json.get("number"), req.json.get("token")
            ok = isinstance(token, str) and self.codes.get(number) == token
            if ok and not self.approve_repeatedly:
                del self.codes[number]
            return 200, {"code": 200, "message": "OK", "verify": ok}
        return 404, {"code": 404, "message": "Not found"}


class ConnectionRecorder:
    """A TCP listener on 127.0.0.1 that records every connection's first bytes and
    closes it: a proxy stand-in that must get nothing."""

    def __init__(self):
        self.connections: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096)
                except OSError:
                    first = b""
                self.connections.append(first)

    def stop(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def sms_config(provider: str, section: str, **sms) -> str:
    """A config with [sms] provider and the given keys (code_ttl_seconds=..., ...)."""
    lines = ["[sms]", f'provider = "{provider}"']
    for key, value in sms.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n\n" + section
