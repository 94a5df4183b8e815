"""TLS contexts for the servers (``wss://``, AudioSocket over TLS) and their clients.

::

    from voxwire.aio.tls import server_context
    from voxwire.aio.websockets_server import serve

    async with serve(handler, "twilio", "0.0.0.0", 443, ssl=server_context("cert.pem", "key.pem")):
        ...

The server context is :func:`ssl.create_default_context` for client authentication
(Python's secure defaults) with TLS 1.2 as the oldest version accepted. Asterisk's
AudioSocket has no TLS of its own: put a TLS tunnel (stunnel, or a proxy) on the Asterisk
side, or use the ``tls://`` listener with a peer that speaks TLS.

For tests and local benchmarks, :func:`self_signed` writes a certificate for 127.0.0.1
and ``localhost`` that is its own CA: a client trusts it by taking the certificate file
as its CA bundle (``client_context(cafile=cert)``, or ``SSL_CERT_FILE`` for clients that
build the default context).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

from voxwire.errors import VoxwireError

__all__ = ["NoCertificate", "client_context", "self_signed", "server_context"]


class NoCertificate(VoxwireError):
    """:func:`self_signed` needs the ``cryptography`` package or the ``openssl`` command."""


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server-side context with the certificate chain ``cert`` and its private ``key``
    (PEM files); raises :class:`OSError` or :class:`ssl.SSLError` when they cannot be
    loaded or do not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


def client_context(cafile: str | Path | None = None) -> ssl.SSLContext:
    """A client-side context verifying the server against the system's trusted
    certificates, or against ``cafile`` (a PEM bundle, e.g. a self-signed certificate)."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if cafile is None else str(cafile)
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --- a self-signed certificate, for tests and local benchmarks ----------------------


def _with_cryptography(cert: Path, key: Path) -> bool:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return True


def _with_openssl(cert: Path, key: Path) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return True


def self_signed(directory: str | Path, *, use_openssl: bool = False) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (a one-day self-signed certificate for 127.0.0.1
    and ``localhost``, its own CA) into ``directory``; return their paths. Made with the
    ``cryptography`` package when it is installed (unless ``use_openssl``), else with the
    ``openssl`` command; raises :class:`NoCertificate` when neither is there."""
    folder = Path(directory)
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not use_openssl and _with_cryptography(cert, key):
        return cert, key
    if _with_openssl(cert, key):
        return cert, key
    raise NoCertificate("making a certificate needs the cryptography package or openssl")
