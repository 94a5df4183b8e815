"""Keep long garbage-collection pauses out of the real-time socket tests (as tests/aio does);
a self-signed certificate for the TLS tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxwire.aio.tls import NoCertificate, self_signed


@pytest.fixture(autouse=True)
def _no_long_gc_pauses() -> Iterator[None]:
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """(certificate, key) files of a self-signed certificate for 127.0.0.1 and localhost."""
    try:
        return self_signed(tmp_path)
    except NoCertificate as exc:
        pytest.skip(f"{exc} (pip install cryptography, or apt-get install openssl)")
