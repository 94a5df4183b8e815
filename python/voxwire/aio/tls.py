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
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "server_context"]


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
