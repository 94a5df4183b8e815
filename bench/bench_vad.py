"""pytest-benchmark: VAD cost per 20 ms frame, voxwire vs webrtcvad, at 8 and 16 kHz.

    python -m pytest bench/bench_vad.py --benchmark-group-by=param:rate

Every call gets a different frame from a pool (fresh data). Before anything is timed, the
frames are checked to give the same decisions through every voxwire entry point (the public
``Vad.process``, the bare native call, and the batch call). Accuracy lives in
``voxwire bench --only vad`` (or ``python bench/vad_corpus.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import voxwire

RNG = np.random.default_rng(2026)
HAS_WEBRTCVAD = importlib.util.find_spec("webrtcvad") is not None


def speechy_frames(rate: int, count: int) -> list[npt.NDArray[np.int16]]:
    """Noise whose level jumps frame to frame (quiet floor, loud bursts): fresh per frame."""
    f = rate // 50
    env = np.repeat(RNG.uniform(0.0, 1.0, count) ** 3 * 8000 + 30, f)
    audio = (RNG.standard_normal(count * f) * env).astype(np.int16)
    return [audio[i * f : (i + 1) * f] for i in range(count)]


POOLS = {rate: speechy_frames(rate, 4096) for rate in (8000, 16000)}


def check_entry_points(rate: int) -> None:
    frames = POOLS[rate][:500]
    a, b, c = voxwire.Vad(rate), voxwire.Vad(rate), voxwire.Vad(rate)
    public = [a.process(f).speech for f in frames]
    native = [bool(b._native.process(f)[1] & 1) for f in frames]
    batch = c.process_batch(np.concatenate(frames)).speech.tolist()
    assert public == native == batch


def implementations(rate: int) -> dict[str, Callable[[Any], object]]:
    impls: dict[str, Callable[[Any], object]] = {
        "voxwire Vad.process": voxwire.Vad(rate).process,
        "voxwire _core": voxwire.Vad(rate)._native.process,
    }
    if HAS_WEBRTCVAD:
        import webrtcvad

        w = webrtcvad.Vad(3)
        impls["webrtcvad"] = lambda frame: w.is_speech(frame, rate)
    return impls


CASES = [(rate, name) for rate in (8000, 16000) for name in implementations(rate)]


@pytest.mark.parametrize(("rate", "impl"), CASES)
def test_frame(benchmark: Any, rate: int, impl: str) -> None:
    check_entry_points(rate)
    fn = implementations(rate)[impl]
    pool: list[Any] = POOLS[rate]
    if impl == "webrtcvad":
        pool = [f.tobytes() for f in pool]
    it = iter(range(1 << 62))
    n = len(pool)
    benchmark(lambda: fn(pool[next(it) % n]))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_batch_per_second(benchmark: Any, rate: int) -> None:
    """The offline batch call over one second (50 frames) of fresh audio."""
    blocks = [np.concatenate(POOLS[rate][i : i + 50]) for i in range(0, 4000, 50)]
    vad = voxwire.Vad(rate)
    it = iter(range(1 << 62))
    benchmark(lambda: vad.process_batch(blocks[next(it) % len(blocks)]))
