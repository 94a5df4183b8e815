"""Time-stretching: the kernel through Python, and Playout between a jitter buffer and a
fixed-frame output."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.jitter import JitterBuffer, PlayoutUnit
from voxwire.stretch import Playout, TimeStretcher

PCM = npt.NDArray[np.int16]
N = 160


def voiced(seconds: float, rate: int = 8000, seed: int = 0) -> PCM:
    """A harmonic signal with a gliding pitch (120-200 Hz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 160 + 40 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(h * phase) / h for h in range(1, 7))
    return np.asarray(np.round(5000 * x), dtype=np.int16)


def test_shorten_and_lengthen_by_one_period() -> None:
    ts = TimeStretcher(8000)
    frame = voiced(0.02)
    short, long = ts.shorten(frame), ts.lengthen(frame)
    assert 20 <= short.period <= 80
    assert short.correlation > 0.85
    assert len(short.pcm) == N - short.period
    assert len(long.pcm) == N + long.period
    assert short.pcm[0] == frame[0]
    assert short.pcm[-1] == frame[-1]
    assert long.pcm[0] == frame[0]
    assert long.pcm[-1] == frame[-1]
    assert ts.max_period == 80


def test_unvoiced_and_quiet_frames_are_left_as_they_are() -> None:
    ts = TimeStretcher(16000)
    noise = np.random.default_rng(1).normal(0, 3000, 320).astype(np.int16)
    for frame in (noise, np.full(320, 30, dtype=np.int16)):
        r = ts.shorten(frame)
        assert r.period == 0
        np.testing.assert_array_equal(r.pcm, frame)


def test_cut_takes_any_amount_from_noise_or_silence_only() -> None:
    ts = TimeStretcher(8000)
    noise = np.random.default_rng(2).normal(0, 2000, N).astype(np.int16)
    r = ts.cut(noise, 37)
    assert (r.period, len(r.pcm)) == (37, N - 37)
    assert r.pcm[0] == noise[0]
    assert r.pcm[-1] == noise[-1]
    assert ts.cut(np.zeros(N, dtype=np.int16), 80).period == 80
    frame = voiced(0.02)
    kept = ts.cut(frame, 20)
    assert kept.period == 0
    np.testing.assert_array_equal(kept.pcm, frame)
    with pytest.raises(ValueError, match="half the frame"):
        ts.cut(noise, 81)


def test_bad_input_and_configuration() -> None:
    ts = TimeStretcher(8000)
    with pytest.raises(TypeError, match="int16"):
        ts.shorten(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int16"):
        ts.lengthen(np.zeros((2, 80), dtype=np.int16))
    with pytest.raises(ValueError, match="max_frame"):
        ts.shorten(np.zeros(321, dtype=np.int16))
    with pytest.raises(ValueError, match="sample_rate"):
        TimeStretcher(96000)
    with pytest.raises(ValueError, match="min_correlation"):
        TimeStretcher(8000, min_correlation=1.5)
    # a strided view is copied, not refused
    assert len(ts.shorten(voiced(0.04)[::2]).pcm) <= N


def _payload(i: int) -> bytes:
    return struct.pack("<i", i)


def _playout(audio: PCM, buffer: JitterBuffer) -> Playout:
    def decode(unit: PlayoutUnit) -> tuple[PlayoutUnit, PCM]:
        if unit.kind == "normal":
            i = struct.unpack("<i", unit.payload)[0]
            return unit, audio[i * N : (i + 1) * N].copy()
        return unit, np.zeros(N, dtype=np.int16)

    return Playout(buffer, decode, N, TimeStretcher(8000))


def test_playout_lowers_the_delay_by_a_frame_without_skipping_one() -> None:
    # The target starts at 15 ms and falls to the 2 ms of the network: the buffer is a
    # frame behind. With time-stretching it gets back by shortening voiced frames.
    audio = voiced(4.0)
    jb = JitterBuffer(8000, time_stretch=True, initial_delay=0.015)
    po = _playout(audio, jb)
    out = []
    units: list[PlayoutUnit] = []
    for k in range(200):
        jb.insert(k, 160 * k, _payload(k), (20 * k + 2) / 1000)
        pcm, _, started = po.pull((20 * k + 3) / 1000)
        assert len(pcm) == N
        out.append(pcm)
        units += [u for u, _ in started]
    played = [u.frame for u in units if u.kind == "normal"]
    assert played == list(range(played[0], played[0] + len(played)))  # nothing skipped
    assert all(u.adjustment == "none" for u in units if u.kind == "normal")
    assert po.shortened >= 2  # the requested one, then the queue drained
    stats = jb.stats()
    assert 0 < stats.removed_samples_for_acceleration < N + 80
    assert po.held < 80  # what is left is less than a period


def test_playout_drains_what_periods_leave_over_at_the_next_quiet_frame() -> None:
    # Voiced audio with a pause every 40 frames (not hinted: the buffer does not know).
    audio = voiced(4.0)
    for k in range(30, 200, 40):
        audio[k * N : (k + 2) * N] = 0
    jb = JitterBuffer(8000, time_stretch=True, initial_delay=0.015)
    po = _playout(audio, jb)
    held = []
    for k in range(200):
        jb.insert(k, 160 * k, _payload(k), (20 * k + 2) / 1000)
        po.pull((20 * k + 3) / 1000)
        held.append(po.held)
    first = next(i for i, h in enumerate(held) if h > 0)  # the shortening
    assert first < 30
    assert all(h > 0 for h in held[first:30])  # less than a period left: kept ...
    assert all(h == 0 for h in held[31:])  # ... until the pause takes it
    assert po.shortened >= 2


def test_playout_plays_a_frame_reordered_behind_the_next_and_catches_up() -> None:
    # Frame 100 arrives 55 ms after its send time, after frame 101 and before the pull
    # after its own deadline: the buffer waits a pull for it instead of giving it up, and
    # the frame of delay this adds is shortened away.
    audio = voiced(4.0)
    jb = JitterBuffer(8000, time_stretch=True, min_delay=0.030)
    po = _playout(audio, jb)
    arrivals = sorted((20 * k + (55 if k == 100 else 2), k) for k in range(200))
    units: list[PlayoutUnit] = []
    at = 0
    for t in range(200):
        now = 20 * t + 10
        while at < len(arrivals) and arrivals[at][0] <= now:
            ms, k = arrivals[at]
            jb.insert(k, 160 * k, _payload(k), ms / 1000)
            at += 1
        units += [u for u, _ in po.pull(now / 1000)[2]]
    played = [u.frame for u in units if u.kind == "normal"]
    assert played == list(range(played[0], played[0] + len(played)))  # 100 included
    waits = [u for u in units if u.kind == "concealed"]
    assert [(u.frame, u.adjustment) for u in waits] == [(100, "expand")]
    stats = jb.stats()
    assert stats.packets_late == 0
    assert po.shortened >= 1
    assert 0 < stats.removed_samples_for_acceleration < N + 80


def test_playout_refuses_a_decoder_that_returns_nothing() -> None:
    jb = JitterBuffer(8000, time_stretch=True)
    jb.insert(1, 0, _payload(0), 0.0)
    empty = np.zeros(0, dtype=np.int16)
    po = Playout(jb, lambda u: (u, empty), N, TimeStretcher(8000))
    with pytest.raises(ValueError, match="no audio"):
        po.pull(0.0)
    with pytest.raises(ValueError, match="frame_samples"):
        Playout(jb, lambda u: (u, empty), 0, TimeStretcher(8000))


@settings(max_examples=60, deadline=None)
@given(
    transit=st.lists(st.integers(0, 90), min_size=50, max_size=200),
    phase=st.integers(0, 19),
)
def test_playout_invariants_on_arbitrary_arrivals(transit: list[int], phase: int) -> None:
    audio = voiced(len(transit) * 0.02 + 0.1)
    jb = JitterBuffer(8000, time_stretch=True)
    po = _playout(audio, jb)
    arrivals = sorted((20 * k + d, k) for k, d in enumerate(transit))
    a = 0
    last = -(10**9)  # frame indexes count from the first packet to arrive: may go negative
    for tick in range(len(transit) + 10):
        now = 20 * tick + phase
        while a < len(arrivals) and arrivals[a][0] <= now:
            t, k = arrivals[a]
            jb.insert(k, 160 * k, _payload(k), t / 1000)
            a += 1
        pcm, first, started = po.pull(now / 1000)
        assert len(pcm) == N
        assert 0 <= po.held < N + po.stretcher.max_period
        for u, offset in started:
            assert 0 <= offset < N
            if u.kind == "normal":
                assert u.frame > last  # in order, never twice
                last = u.frame
        assert first is not None
    assert po.shortened + po.lengthened <= len(transit) + 10
