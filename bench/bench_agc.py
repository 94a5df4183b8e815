"""pytest-benchmark: AGC cost per 20 ms frame at 16 kHz, voxwire against WebRTC's AGC1
(webrtc-noise-gain) and AGC2 (pywebrtc-audio), two 10 ms calls each.

    python -m pytest bench/bench_agc.py

Every call gets a different frame from a pool (fresh data): speech-like noise bursts over
a quiet floor. Before anything is timed, the frames are checked to give the same output
through voxwire's public wrapper, the bare native call and one call over the whole pool.
Level spread, pause SNR and word accuracy live in ``voxwire bench --only agc`` (or
``python bench/agc_calls.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.agc import Agc

RATE = 16000
FRAME = RATE // 50
RNG = np.random.default_rng(2026)
HAS_AGC1 = importlib.util.find_spec("webrtc_noise_gain") is not None
HAS_AGC2 = importlib.util.find_spec("pywebrtc_audio") is not None


def frames(count: int) -> list[npt.NDArray[np.int16]]:
    env = np.repeat(RNG.uniform(0.0, 1.0, count) ** 3 * 6000 + 10, FRAME)
    audio = (RNG.standard_normal(count * FRAME) * env).astype(np.int16)
    return [audio[i * FRAME : (i + 1) * FRAME] for i in range(count)]


POOL = frames(4096)


def test_entry_points_agree() -> None:
    a, b, c = Agc(RATE), Agc(RATE), Agc(RATE)
    public = np.concatenate([a.process(f) for f in POOL[:500]])
    native = np.concatenate([b._native.process(f) for f in POOL[:500]])
    whole = c.process(np.concatenate(POOL[:500]))
    np.testing.assert_array_equal(public, native)
    np.testing.assert_array_equal(public, whole)


def implementations() -> dict[str, Callable[[Any], object]]:
    impls: dict[str, Callable[[Any], object]] = {
        "voxwire Agc.process": Agc(RATE).process,
        "voxwire _core": Agc(RATE)._native.process,
    }
    if HAS_AGC1:
        from webrtc_noise_gain import AudioProcessor

        p1 = AudioProcessor(3, 0).Process10ms

        def agc1(frame: npt.NDArray[np.int16]) -> None:
            raw = frame.tobytes()
            p1(raw[:320])
            p1(raw[320:])

        impls["webrtc AGC1"] = agc1
    if HAS_AGC2:
        from pywebrtc_audio import GainController

        p2 = GainController(RATE).process

        def agc2(frame: npt.NDArray[np.int16]) -> None:
            p2(frame[:160])
            p2(frame[160:])

        impls["webrtc AGC2"] = agc2
    return impls


@pytest.mark.parametrize("impl", list(implementations()))
def test_frame(benchmark: Any, impl: str) -> None:
    fn = implementations()[impl]
    it = iter(range(1 << 62))
    n = len(POOL)
    benchmark(lambda: fn(POOL[next(it) % n]))
