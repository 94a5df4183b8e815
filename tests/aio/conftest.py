"""Keep long garbage-collection pauses out of the real-time socket tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_long_gc_pauses() -> Iterator[None]:
    """Real-time socket tests pace audio on the event loop: a full garbage collection of
    everything the suite has allocated so far can stall it for tens of ms (measured 30-47
    ms late in a full run), long enough for the pacer to skip a frame. What exists before
    the test is frozen out of the collector for the test's length."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
