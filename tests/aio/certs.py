"""A self-signed certificate for the test that needs it (:func:`voxwire.aio.tls.self_signed`);
the test is skipped when neither the ``cryptography`` package nor ``openssl`` is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxwire.aio.tls import NoCertificate
from voxwire.aio.tls import self_signed as make


def self_signed(directory: Path, *, use_openssl: bool = False) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``; return their paths."""
    try:
        return make(directory, use_openssl=use_openssl)
    except NoCertificate:
        pytest.skip("making a test certificate needs the cryptography package or openssl")
