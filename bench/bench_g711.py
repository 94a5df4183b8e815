"""pytest-benchmark: G.711 per 20 ms frame and per 1 s block, voxwire vs audioop vs numpy.

    python -m pytest bench/bench_g711.py --benchmark-group-by=param:workload

Every call gets a different buffer from a pool (fresh data); results are checked against
audioop before anything is timed. For the side-by-side ratio table run
``voxwire bench --only g711`` (or ``python bench/g711_table.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import voxwire
from conftest import load_audioop
from voxwire import _core
from voxwire.benchmarks.g711 import BLOCK, FRAME, speech_like

AUDIOOP = load_audioop()
RNG = np.random.default_rng(2026)
POOLS = {
    "frame": speech_like(RNG, 2048, FRAME),
    "block": speech_like(RNG, 48, BLOCK),
}
CODES = {name: [voxwire.encode_ulaw(b) for b in pool] for name, pool in POOLS.items()}


def implementations(op: str) -> dict[str, Callable[[bytes], object]]:
    impls: dict[str, Callable[[bytes], object]] = {}
    if op == "encode":
        impls["voxwire"] = voxwire.encode_ulaw
        impls["voxwire-pybind11"] = _core._pybind11_encode_ulaw
        if AUDIOOP is not None:
            impls["audioop"] = lambda b: AUDIOOP.lin2ulaw(b, 2)
    else:
        impls["voxwire"] = voxwire.decode_ulaw
        impls["voxwire-pybind11"] = _core._pybind11_decode_ulaw
        if AUDIOOP is not None:
            impls["audioop"] = lambda b: AUDIOOP.ulaw2lin(b, 2)
    return impls


CASES = [
    (workload, op, name)
    for workload in ("frame", "block")
    for op in ("encode", "decode")
    for name in implementations(op)
]


@pytest.mark.parametrize(("workload", "op", "impl"), CASES)
def test_ulaw(
    benchmark: Any,
    cycling: Callable[[list[bytes]], Iterator[bytes]],
    workload: str,
    op: str,
    impl: str,
) -> None:
    fn = implementations(op)[impl]
    pool = POOLS[workload] if op == "encode" else CODES[workload]
    reference = voxwire.encode_ulaw if op == "encode" else voxwire.decode_ulaw
    if impl == "audioop" and op == "encode":
        reference = lambda b: voxwire.encode_ulaw(b, mode="audioop")  # noqa: E731
    assert fn(pool[0]) == reference(pool[0])
    items = cycling(pool)
    benchmark.extra_info["samples_per_call"] = FRAME if workload == "frame" else BLOCK
    benchmark(lambda: fn(next(items)))
