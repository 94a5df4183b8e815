"""pytest-benchmark: one 20 ms int16 chunk through a streaming resampler, per pair.

    python -m pytest bench/bench_resample.py --benchmark-group-by=param:pair

voxwire ("voice" and "high") against soxr's ResampleStream (HQ and VHQ) and libsamplerate
(sinc_medium), each peer skipped when it is not installed. Every call gets the next chunk of
a pool of distinct chunks (fresh data); each implementation's output is checked against the
ideal before it is timed. For the full side-by-side table with latency and quality, run
``voxwire bench --only resample`` (or ``python bench/resample_table.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.benchmarks.resample import PAIRS, chunk_pool, implementations, measure_quality

WANTED = (
    "voxwire voice",
    "voxwire high",
    "soxr HQ",
    "soxr VHQ",
    "libsamplerate sinc_medium",
)
IMPLS = {impl.name: impl for impl in implementations()[0] if impl.name in WANTED}


@pytest.mark.parametrize("name", [n for n in WANTED if n in IMPLS])
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_chunk(benchmark: Any, pair: tuple[int, int], name: str) -> None:
    fi, fo = pair
    impl = IMPLS[name]
    assert impl.make is not None
    quality = measure_quality(impl, fi, fo, 0.5)
    assert quality.snr_db > 75.0, quality  # the output is right before it is timed
    stream = impl.make(fi, fo)
    pool = chunk_pool(fi, 256, fi + fo)
    chunks = itertools.cycle(pool)
    for x in pool[:10]:
        stream.process(x)
    process: Callable[[npt.NDArray[np.int16]], object] = stream.process
    benchmark.extra_info["latency_ms"] = round(1000 * quality.latency_s, 3)
    benchmark.extra_info["snr_db"] = round(quality.snr_db, 1)
    benchmark(lambda: process(next(chunks)))
