"""SMS over HTTPS: certificate and host-name checks, no redirects, no proxy from the
environment (Sources/WatchwordSMS/Curl.swift), through the real module, helper and CLI
against TLS stand-ins of the Twilio API.

The helper trusts what libcurl trusts by default: the system bundle
/etc/ssl/certs/ca-certificates.crt (and the hashed /etc/ssl/certs). The test makes its own
CA with the openssl CLI and runs the PAM client and the CLI in a private mount namespace
(mountns.py) where that bundle also holds the test CA, and /etc/hosts maps the stand-in's
names to 127.0.0.1; the machine's own files are not changed. The stand-in is reached as
https://sms.watchword.test:PORT, a name that is not loopback, so the https rule and the
proxy rules apply to it as to a real provider.
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_SUCCESS
from mountns import private_mounts
from sms_standins import ConnectionRecorder, TwilioStandIn, sms_config
from ww import CLI, Watchword

PHONE = "+14155550123"
MASKED = "••••••0123"
HOST = "sms.watchword.test"
OTHER = "other.watchword.test"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NOT_SENT = "The text message could not be sent; enter a recovery code or try again later."
PROXY_VARIABLES = ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def leaf(pki: Path, name: str, san: str) -> None:
    """name.key and name.pem: a server certificate for san, signed by the test CA."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={san}", cwd=pki)
    (pki / f"{name}.ext").write_text(
        f"subjectAltName = DNS:{san}\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=pki)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A test CA; certificates for HOST (right), OTHER (wrong name), both from the CA, and
    a self-signed one for HOST (unknown CA)."""
    pki = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=watchword test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=pki)
    leaf(pki, "right", HOST)
    leaf(pki, "wrongname", OTHER)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "selfsigned.key", "-out", "selfsigned.pem", "-days", "2", "-subj", f"/CN={HOST}",
            "-addext", f"subjectAltName=DNS:{HOST}", cwd=pki)
    (pki / "bundle.crt").write_text(Path(SYSTEM_BUNDLE).read_text() + (pki / "ca.pem").read_text())
    (pki / "hosts").write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {HOST} {OTHER}\n")
    return pki


@pytest.fixture(scope="module")
def namespace(pki):
    """The preexec_fn: the test CA in the system bundle, the stand-in names in /etc/hosts."""
    return private_mounts(binds={SYSTEM_BUNDLE: pki / "bundle.crt", "/etc/hosts": pki / "hosts"})


def server_context(pki: Path, name: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    return ctx



@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "outbox.txt"


@pytest.fixture
def standins(outbox, pki):
    """make(cert) -> a TLS Twilio stand-in named HOST serving that certificate."""
    made = []

    def make(cert: str = "right") -> TwilioStandIn:
        s = TwilioStandIn(outbox, tls=server_context(pki, cert), host=HOST)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def proxy():
    p = ConnectionRecorder()
    yield p
    p.stop()


def enroll_sms(ww: Watchword) -> dict:
    return json.loads(ww.cli("enroll", "alice", "--sms", PHONE, "--json").stdout)


def code_from(outbox: Path) -> dict:
    return {"from_file": str(outbox), "pattern": r"is:? (\d{4,10})\b"}


def errors(res) -> list[str]:
    return [m["msg"] for m in res.messages if m["style"] == 3]


def sms_test(ww: Watchword, namespace, env: dict | None = None) -> subprocess.CompletedProcess:
    """`watchword sms-test alice` in the namespace, with env added to a plain environment."""
    argv = [str(CLI), "sms-test", "alice", "--state-dir", str(ww.state), "--config", str(ww.config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, preexec_fn=namespace,
                          env={"PATH": os.environ["PATH"], **(env or {})})


def proxy_env(proxy: ConnectionRecorder) -> dict:
    return {name: proxy.url for name in PROXY_VARIABLES}


def test_right_certificate_and_name_sends_the_text_and_no_proxy_is_used(
        ww, run_pam_conv, standins, outbox, namespace, proxy):
    twilio = standins("right")
    ww.write_config(twilio.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [code_from(outbox)], preexec_fn=namespace,
                       env_extra=proxy_env(proxy))
    assert res.pam_rc == PAM_SUCCESS, res.output
    [req] = twilio.requests
    assert req.form["To"] == PHONE
    assert res.logged(f"user alice: SMS code sent to {MASKED} (twilio)"), res.log_text()
    # The CLI sends through the same code, with the proxy variables in its own environment.
    proc = sms_test(ww, namespace, proxy_env(proxy))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"Sent a test message to {MASKED} through twilio."
    assert len(twilio.requests) == 2 and "test message from watchword" in twilio.requests[1].form["Body"]
    assert proxy.connections == [], "a proxy from the environment was used"


@pytest.mark.parametrize("cert, why", [
    ("wrongname", "no alternative certificate subject name matches"),
    ("selfsigned", "self-signed certificate"),
])
def test_a_certificate_that_does_not_check_out_sends_nothing(
        ww, run_pam_conv, standins, outbox, namespace, cert, why):
    twilio = standins(cert)
    ww.write_config(twilio.config())
    alice = enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""], preexec_fn=namespace)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res)[0] == NOT_SENT, res.messages
    assert res.logged(f"user alice: SMS to {MASKED} not sent (twilio): cannot reach the provider"), res.log_text()
    assert why in res.log_text(), res.log_text()
    assert twilio.requests == [] and not outbox.exists()
    proc = sms_test(ww, namespace)
    assert proc.returncode != 0 and "cannot reach the provider" in proc.stderr and why in proc.stderr, proc.stderr
    assert twilio.requests == [] and not outbox.exists()
    # The recovery code still logs in.
    ok = run_pam_conv(ww.args(), "alice", [alice["recovery_codes"][0]], preexec_fn=namespace)
    assert ok.pam_rc == PAM_SUCCESS, ok.output


def test_the_right_certificate_is_refused_without_the_test_ca(ww, run_pam_conv, standins, outbox, pki):
    """The control for the namespace: the same stand-in, with the machine's own bundle
    (only /etc/hosts private), is an unknown CA: the CA file is what the helper trusts."""
    twilio = standins("right")
    ww.write_config(twilio.config())
    enroll_sms(ww)
    hosts_only = private_mounts(binds={"/etc/hosts": pki / "hosts"})
    res = run_pam_conv(ww.args(), "alice", [""], preexec_fn=hosts_only)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert res.logged("unable to get local issuer certificate"), res.log_text()
    assert twilio.requests == []


def test_a_redirect_is_not_followed(ww, run_pam_conv, standins, outbox, namespace):
    first, second = standins("right"), standins("right")
    first.redirect = f"{second.base}/2010-04-01/Accounts/{second.sid}/Messages.json"
    ww.write_config(first.config())
    enroll_sms(ww)
    res = run_pam_conv(ww.args(), "alice", [""], preexec_fn=namespace)
    assert res.pam_rc == PAM_AUTH_ERR, res.output
    assert errors(res)[0] == NOT_SENT, res.messages
    assert res.logged("not sent (twilio): twilio: HTTP 302"), res.log_text()
    assert len(first.requests) == 1 and second.requests == []
    proc = sms_test(ww, namespace)
    assert proc.returncode != 0 and "HTTP 302" in proc.stderr, proc.stderr
    assert len(first.requests) == 2 and second.requests == []


def test_plain_http_to_a_provider_that_is_not_loopback_is_refused(ww, run_pam_conv, outbox, namespace):
    twilio = TwilioStandIn(outbox, host=HOST)  # plain HTTP
    try:
        enroll_sms(ww)
        ww.write_config(twilio.config())
        res = run_pam_conv(ww.args(), "alice", [""], preexec_fn=namespace)
        assert res.pam_rc == PAM_AUTHINFO_UNAVAIL, res.output
        assert res.logged("sms.twilio.api_base"), res.log_text()
        assert res.logged("must be an https:// URL"), res.log_text()
        assert twilio.requests == []
    finally:
        twilio.stop()
