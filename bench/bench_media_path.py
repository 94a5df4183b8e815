"""pytest-benchmark: one Twilio media message each way, voxwire against json+base64+audioop+soxr.

    python -m pytest bench/bench_media_path.py --benchmark-group-by=param:direction

inbound: a ``media`` JSON message with 20 ms of 8 kHz mu-law -> 16 kHz PCM16; outbound:
20 ms of 24 kHz PCM16 -> a ``media`` JSON message with 8 kHz mu-law. Every call gets the
next message of a pool of distinct ones (fresh data), and every implementation's output is
checked (bit for bit against voxwire's kernels, by aligned correlation for soxr) before it is
timed. The pure-Python path is skipped when audioop (audioop-lts on 3.13+) or soxr is
missing. For the side-by-side ratio table run ``voxwire bench --only media``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import load_audioop
from voxwire.benchmarks._harness import Impl
from voxwire.benchmarks.media_path import (
    check,
    inbound_implementations,
    inbound_messages,
    outbound_implementations,
    tts_chunks,
)

try:
    import soxr
except ImportError:  # pragma: no cover - optional peer
    soxr = None

AUDIOOP = load_audioop()
RNG = np.random.default_rng(2026)
POOLS: dict[str, list[Any]] = {
    "inbound": list(inbound_messages(RNG, 1024)),
    "outbound": list(tts_chunks(RNG, 1024)),
}
FACTORIES: dict[str, Callable[[], list[Impl]]] = {
    "inbound": lambda: inbound_implementations(AUDIOOP, soxr),
    "outbound": lambda: outbound_implementations(AUDIOOP, soxr),
}
NAMES = ["voxwire codec", "voxwire one call", "voxwire kernels", "pure Python"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_message(benchmark: Any, direction: str, name: str) -> None:
    check(direction, POOLS[direction], FACTORIES[direction])
    impls = {impl.name: impl for impl in FACTORIES[direction]()}
    if name not in impls:
        pytest.skip("audioop or soxr is not installed")
    fn = impls[name].fn
    items = itertools.cycle(POOLS[direction])
    benchmark(lambda: fn(next(items)))
