"""Make the RTP test peers in tests/aio importable as ``rtp_peers``; keep long
garbage-collection pauses out of the real-time socket tests (as tests/aio does)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_AIO = str(Path(__file__).resolve().parents[1] / "aio")
if _AIO not in sys.path:
    sys.path.insert(0, _AIO)


@pytest.fixture(autouse=True)
def _no_long_gc_pauses() -> Iterator[None]:
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
