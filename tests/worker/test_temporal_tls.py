"""Stanch reaches Temporal over mTLS: a TLS front (client certificates required, HTTP/2)
in front of the real dev server, with a CA, server and client certificates made here."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.testing import WorkflowEnvironment

from stanch.config import ConfigError, Settings
from stanch.temporal import connect

SERVER_NAME = "temporal.stanch.internal"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          san: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.subject if issuer else name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(hours=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


@pytest.fixture()
def pki(tmp_path: Path) -> Path:
    ca_key = _key()
    ca = _cert("stanch test CA", ca_key, None, ca_key, ca=True)
    _write(tmp_path / "ca", ca, ca_key)
    server_key, client_key = _key(), _key()
    _write(tmp_path / "server", _cert(SERVER_NAME, server_key, ca, ca_key, san=SERVER_NAME),
           server_key)
    _write(tmp_path / "client", _cert("stanch-worker", client_key, ca, ca_key), client_key)
    other_key = _key()  # a CA Temporal does not trust
    other = _cert("someone else", other_key, None, other_key, ca=True)
    _write(tmp_path / "rogue", _cert("rogue", client_key, other, other_key), client_key)
    return tmp_path


@pytest_asyncio.fixture()
async def mtls_front(dev_env: WorkflowEnvironment, pki: Path) -> AsyncIterator[str]:
    """TLS on a free port, client certificates signed by our CA required, bytes piped to
    the dev server (which speaks plain gRPC)."""
    target = dev_env.client.service_client.config.target_host
    host, _, port = target.rpartition(":")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    front = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield front
    finally:
        server.close()


def _settings(address: str, pki: Path, *, client: str | None = "client",
              ca: bool = True) -> Settings:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    s.temporal.address = address
    s.temporal.tls = True
    s.temporal.tls_server_name = SERVER_NAME
    s.temporal.tls_ca_file = str(pki / "ca.pem") if ca else None
    if client:
        s.temporal.tls_cert_file = str(pki / f"{client}.pem")
        s.temporal.tls_key_file = str(pki / f"{client}.key")
    return s


async def test_mtls_with_our_client_certificate_reaches_temporal(mtls_front: str,
                                                                 pki: Path) -> None:
    client = await connect(_settings(mtls_front, pki))
    assert await client.service_client.check_health()
    assert (await client.count_workflows("WorkflowType = 'NoSuchType'")).count == 0


@pytest.mark.parametrize("case", ["no client certificate", "certificate of another CA",
                                  "server CA not trusted"])
async def test_without_the_right_certificates_nothing_gets_through(mtls_front: str, pki: Path,
                                                                   case: str) -> None:
    settings = {
        "no client certificate": _settings(mtls_front, pki, client=None),
        "certificate of another CA": _settings(mtls_front, pki, client="rogue"),
        "server CA not trusted": _settings(mtls_front, pki, ca=False),
    }[case]
    with pytest.raises(Exception):  # noqa: B017 - the SDK's connect error
        client = await connect(settings)
        await client.service_client.check_health()


def test_a_client_certificate_needs_its_key_and_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tls_cert_file and temporal\.tls_key_file"):
        Settings(_env_file=None, temporal={"tls_cert_file": "c.pem"})  # type: ignore[call-arg]
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    s.temporal.tls_ca_file = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"temporal\.tls_ca_file: cannot read"):
        asyncio.run(connect(s))
