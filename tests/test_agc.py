"""Gain control: the limiter's ceiling on any input and settings (property tests), output
independent of chunking, convergence to the target on espeak-ng speech from quiet and loud
lines, the gain held in pauses and noise, hold, reset, and errors."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voxwire.agc import Agc
from voxwire.benchmarks import corpus

RATE = 16000
PCM = npt.NDArray[np.int16]

needs_espeak = pytest.mark.skipif(
    not corpus.espeak_available(), reason="needs espeak-ng: pip install espeakng-loader"
)


def noise(n: int, dbfs: float, seed: int) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).standard_normal(n) * 32768 * 10 ** (dbfs / 20)


def pcm(x: npt.NDArray[np.float64]) -> PCM:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def active_dbfs(x: PCM, rate: int = RATE) -> float:
    """Level of the loud part of speech: the mean power of the 10 ms blocks within 20 dB
    of the loudest one."""
    n = rate // 100
    b = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    p = np.mean(b * b, axis=1)
    loud = p[p >= p.max() / 100]
    return float(10 * np.log10(np.mean(loud) / 32768**2))


_SPEECH: dict[int, PCM] = {}


def speech(seed: int) -> PCM:
    """Two espeak-ng sentences with a pause, peak -6 dBFS, at 16 kHz (cached)."""
    if seed not in _SPEECH:
        from voxwire.sim.speech import synthesize

        a = synthesize("The reference number is four seven two, nine nine one.", RATE, seed=seed)
        b = synthesize("Could you move my appointment to Thursday afternoon?", RATE, seed=seed)
        gap = np.zeros(RATE // 2, dtype=np.int16)
        _SPEECH[seed] = np.concatenate([gap, a, gap, b, gap])
    return _SPEECH[seed]


def at_level(x: PCM, peak_dbfs: float, noise_dbfs: float, seed: int = 0) -> PCM:
    y = x.astype(np.float64) * 10 ** ((peak_dbfs + 6) / 20) + noise(len(x), noise_dbfs, seed)
    return pcm(y)


# --- the API --------------------------------------------------------------------------


def test_latency_shapes_and_types() -> None:
    agc = Agc(RATE)
    assert agc.latency == 0.0
    assert agc.rate == RATE
    x = pcm(noise(1000, -40, 1))
    y = agc.process(x)
    assert y.dtype == np.int16
    assert y.shape == x.shape
    b = agc.process(x.tobytes())
    assert isinstance(b, bytes)
    assert len(b) == 2 * len(x)
    assert agc.process(bytearray(x.tobytes())) == agc.process(memoryview(x.tobytes()))
    out = np.zeros_like(x)
    assert agc.process(x, out=out) is out
    inplace = x.copy()
    assert agc.process(inplace, out=inplace) is inplace
    assert agc.samples == 6 * len(x)
    assert "Agc(rate=16000" in repr(agc)


def test_errors() -> None:
    agc = Agc(8000)
    with pytest.raises(TypeError, match="int16"):
        agc.process(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="even number of bytes"):
        agc.process(b"\x00\x01\x02")
    with pytest.raises(TypeError, match="bytes-like"):
        agc.process("abc")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="out="):
        agc.process(b"\x00\x00", out=np.zeros(1, np.int16))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="out must"):
        agc.process(np.zeros(10, np.int16), out=np.zeros(9, np.int16))
    with pytest.raises(ValueError, match="1-D"):
        agc.process(np.zeros((2, 5), np.int16))
    with pytest.raises(ValueError, match="rate"):
        Agc(11025)
    with pytest.raises(TypeError, match="rate"):
        Agc(16000.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_dbfs": -3.0}, "target_dbfs"),
        ({"max_gain_db": 70.0}, "max_gain_db"),
        ({"min_gain_db": 3.0}, "min_gain_db"),
        ({"initial_gain_db": 40.0}, "initial_gain_db"),
        ({"ceiling_dbfs": 1.0}, "ceiling_dbfs"),
        ({"rise_db_per_s": 0.0}, "rise_db_per_s"),
        ({"fall_db_per_s": -1.0}, "fall_db_per_s"),
        ({"level_window_s": 20.0}, "level_window_s"),
        ({"limiter_release_ms": 0.0}, "limiter_release_ms"),
        ({"vad_sensitivity": 2.0}, "vad_sensitivity"),
        ({"target_dbfs": float("nan")}, "target_dbfs"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Agc(RATE, **kwargs)


# --- the limiter ---------------------------------------------------------------------

# Signals a line can send at its worst: any samples, full-scale runs, and quiet stretches
# that let the limiter release between loud ones.
_SIGNAL = st.lists(
    st.one_of(
        hnp.arrays(np.int16, st.integers(1, 400)),
        st.tuples(st.sampled_from([-32768, 32767, 0, 1, -1]), st.integers(1, 400)).map(
            lambda t: np.full(t[1], t[0], dtype=np.int16)
        ),
        st.integers(1, 2000).map(lambda n: pcm(noise(n, -60, n))),
    ),
    min_size=1,
    max_size=12,
).map(np.concatenate)


@settings(max_examples=80, deadline=None)
@given(
    x=_SIGNAL,
    ceiling=st.floats(-20.0, 0.0),
    gain=st.floats(0.0, 60.0),
    release=st.floats(1.0, 1000.0),
    rate=st.sampled_from([8000, 16000, 48000]),
)
def test_limiter_never_exceeds_the_ceiling(
    x: PCM, ceiling: float, gain: float, release: float, rate: int
) -> None:
    agc = Agc(
        rate,
        max_gain_db=60.0,
        initial_gain_db=gain,
        ceiling_dbfs=ceiling,
        limiter_release_ms=release,
    )
    limit = min(32767, int(np.floor(32768 * 10 ** (ceiling / 20))))
    assert agc.ceiling == limit
    y = agc.process(x)
    assert int(np.abs(y.astype(np.int32)).max()) <= limit


def test_limiter_on_every_int16_value_at_the_largest_gain() -> None:
    values = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    shuffled = np.random.default_rng(3).permutation(values)
    for ceiling in (0.0, -1.0, -12.0):
        agc = Agc(RATE, max_gain_db=60.0, initial_gain_db=60.0, ceiling_dbfs=ceiling)
        for x in (values, shuffled, values[::-1].copy()):
            assert np.abs(agc.process(x).astype(np.int32)).max() <= agc.ceiling


# --- streaming ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 40000), max_size=10))
def test_output_is_independent_of_chunking(cuts: list[int]) -> None:
    x = pcm(noise(40000, -30, 5) * np.repeat(np.random.default_rng(6).uniform(0, 3, 125), 320))
    whole = Agc(RATE, initial_gain_db=10.0).process(x)
    agc = Agc(RATE, initial_gain_db=10.0)
    edges = [0, *sorted(cuts), len(x)]
    parts = [agc.process(x[a:b]) for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_reset_matches_a_fresh_stream_and_hold_freezes_the_gain() -> None:
    x = pcm(noise(32000, -35, 7) * np.repeat(np.random.default_rng(8).uniform(0, 2, 100), 320))
    agc = Agc(RATE)
    first = agc.process(x)
    agc.hold = True
    agc.reset()
    assert not agc.hold
    assert agc.samples == 0
    assert agc.speech_frames == 0
    assert agc.speech_level_dbfs == float("-inf")
    np.testing.assert_array_equal(agc.process(x), first)
    held = Agc(RATE, initial_gain_db=3.0)
    held.hold = True
    held.process(x)
    assert held.target_gain_db == 3.0
    assert held.speech_frames == 0


# --- on speech ------------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize("peak_dbfs", [-40.0, -25.0, -6.0])
def test_speech_reaches_the_target(peak_dbfs: float) -> None:
    clean = speech(1)
    x = at_level(clean, peak_dbfs, peak_dbfs - 50)
    agc = Agc(RATE)
    agc.process(x)  # the first pass converges
    y = agc.process(x)
    assert agc.limited_samples < len(x) // 1000
    assert active_dbfs(y) == pytest.approx(-26.0, abs=3.0)
    # The level it estimated is the input's, within a few dB.
    assert agc.speech_level_dbfs == pytest.approx(active_dbfs(x), abs=4.0)


@needs_espeak
def test_gain_is_held_through_a_long_pause() -> None:
    x = at_level(speech(2), -36.0, -80.0, seed=1)
    agc = Agc(RATE)
    agc.process(x)
    gain, frames = agc.target_gain_db, agc.speech_frames
    assert gain > 8.0
    pause = pcm(noise(RATE * 8, -80.0, 2))
    y = agc.process(pause)
    assert agc.target_gain_db == gain
    assert agc.speech_frames == frames
    # The noise in the pause comes out at the gain the speech had, no more.
    lifted = 10 * np.log10(
        np.mean(y.astype(np.float64) ** 2) / np.mean(pause.astype(np.float64) ** 2)
    )
    assert lifted == pytest.approx(gain, abs=0.2)


def test_line_noise_alone_is_not_amplified() -> None:
    for dbfs in (-70.0, -50.0, -30.0):
        agc = Agc(RATE)
        x = pcm(noise(RATE * 10, dbfs, 4))
        y = agc.process(x)
        assert agc.speech_frames == 0
        np.testing.assert_array_equal(y, x)
