"""voxwire.Resampler / voxwire.resample against an ideal reference.

The reference is the same sum of tones synthesised in float64 at the output instants
k / out_rate: the resampler is specified to have zero group delay (output sample k is the
input signal at time k / out_rate), so it is compared sample for sample, without alignment.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire
from voxwire import Resampler, resample

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]
PAIRS = [(a, b) for a in RATES for b in RATES]
BUDGET = {"voice": 0.003, "high": 0.005}
PASSBAND = {"voice": 0.85, "high": 0.90}
STOPBAND = {"voice": 1.15, "high": 1.10}
REJECTION_DB = {"voice": 80.0, "high": 100.0}


def tones(
    freqs: list[float], amps: list[float], phases: list[float], rate: int, n: int
) -> npt.NDArray[np.float64]:
    t = np.arange(n) / rate
    y = np.zeros(n)
    for f, a, p in zip(freqs, amps, phases, strict=True):
        y += a * np.sin(2 * np.pi * f * t + p)
    return y


def multitone(
    fi: int, fo: int, quality: str, seconds: float, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Eight tones spread over the passband: input at fi and the ideal output at fo."""
    rng = np.random.default_rng(seed)
    edge = PASSBAND[quality] * min(fi, fo) / 2
    freqs = list(np.linspace(0.03, 1.0, 8) * edge)
    amps = [0.06] * 8
    phases = list(rng.uniform(0, 2 * np.pi, 8))
    n = int(seconds * fi)
    x = tones(freqs, amps, phases, fi, n)
    y = tones(freqs, amps, phases, fo, math.ceil(n * fo / fi))
    return x, y


def snr_db(y: npt.NDArray[Any], ideal: npt.NDArray[np.float64], skip: int) -> float:
    """SNR over the steady part (start-up and flush transients excluded)."""
    e = y[skip:-skip].astype(np.float64) - ideal[skip:-skip]
    s = ideal[skip:-skip]
    return float(10 * np.log10(np.sum(s * s) / np.sum(e * e)))


def amplitude(
    y: npt.NDArray[Any], f: float, rate: int, skip: int, others: tuple[float, ...] = ()
) -> float:
    """Amplitude of the sinusoid at f in the steady part of y, fitted by least squares jointly
    with the sinusoids at `others` (so that their window leakage does not count)."""
    k = np.arange(skip, len(y) - skip) / rate
    cols = []
    for g in (f, *others):
        cols += [np.sin(2 * np.pi * g * k), np.cos(2 * np.pi * g * k)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, 1), y[skip:-skip].astype(np.float64), rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def stream(r: Resampler[Any], x: npt.NDArray[Any], cuts: list[int]) -> npt.NDArray[Any]:
    parts = []
    pos = 0
    for c in cuts:
        parts.append(r.process(x[pos : pos + c]))
        pos += c
    parts.append(r.process(x[pos:]))
    parts.append(r.flush())
    return np.concatenate(parts)


# -- quality against the ideal ---------------------------------------------------------------


@pytest.mark.parametrize("quality", ["voice", "high"])
@pytest.mark.parametrize(("fi", "fo"), PAIRS)
def test_every_pair_meets_latency_and_snr(fi: int, fo: int, quality: str) -> None:
    r = Resampler(fi, fo, quality, dtype=np.float32)
    assert r.latency <= BUDGET[quality]
    x, ideal = multitone(fi, fo, quality, 0.12)
    y = r.process(x.astype(np.float32))
    y = np.concatenate([y, r.flush()])
    assert len(y) == len(ideal)
    skip = fo // 100
    assert snr_db(y, ideal, skip) >= (80.0 if quality == "voice" else 98.0)


@pytest.mark.parametrize(("fi", "fo"), [(8000, 16000), (16000, 8000), (44100, 16000)])
def test_int16_snr_is_int16_limited(fi: int, fo: int) -> None:
    x, ideal = multitone(fi, fo, "voice", 0.5, seed=1)
    y = resample(np.round(x * 32767).astype(np.int16), fi, fo)
    assert snr_db(y / 32767, ideal, fo // 50) >= 78.0


@pytest.mark.parametrize("quality", ["voice", "high"])
@pytest.mark.parametrize(("fi", "fo"), [(8000, 16000), (16000, 8000), (22050, 8000), (8000, 48000)])
def test_passband_is_flat(fi: int, fo: int, quality: str) -> None:
    nyq = min(fi, fo) / 2
    for frac in (0.05, 0.3, 0.6, 0.8, PASSBAND[quality]):
        f = frac * nyq
        x = tones([f], [0.5], [0.3], fi, fi // 5)
        y = resample(x.astype(np.float32), fi, fo, quality)
        gain = amplitude(y, f, fo, fo // 50) / 0.5
        assert abs(20 * np.log10(gain)) <= 0.1, (f, gain)


@pytest.mark.parametrize("quality", ["voice", "high"])
@pytest.mark.parametrize(
    ("fi", "fo"), [(16000, 8000), (48000, 16000), (44100, 16000), (24000, 16000)]
)
def test_aliasing_is_rejected(fi: int, fo: int, quality: str) -> None:
    # Input tones past the stopband edge that fold into the output band.
    for frac in (STOPBAND[quality], 1.4, 1.9):
        f = frac * fo / 2
        if f >= fi / 2:
            continue
        x = tones([f], [0.9], [0.0], fi, fi // 5)
        y = resample(x.astype(np.float32), fi, fo, quality)
        alias = abs(fo * round(f / fo) - f)
        level = 20 * np.log10(amplitude(y, alias, fo, fo // 50) / 0.9 + 1e-30)
        assert level <= -REJECTION_DB[quality], (f, alias, level)


@pytest.mark.parametrize("quality", ["voice", "high"])
@pytest.mark.parametrize(
    ("fi", "fo"), [(8000, 16000), (8000, 24000), (16000, 48000), (8000, 11025)]
)
def test_images_are_rejected(fi: int, fo: int, quality: str) -> None:
    # An input tone f in the passband images at fi - f, fi + f, ...; those below fo / 2 must be
    # at least the rejection down.
    f = PASSBAND[quality] * fi / 2
    x = tones([f], [0.9], [0.0], fi, fi // 5)
    y = resample(x.astype(np.float32), fi, fo, quality)
    images = [m * fi + s * f for m in range(1, 8) for s in (-1, 1)]
    checked = 0
    for im in images:
        if im < fo / 2:
            level = 20 * np.log10(amplitude(y, im, fo, fo // 50, (f,)) / 0.9 + 1e-30)
            assert level <= -REJECTION_DB[quality], (im, level)
            checked += 1
    assert checked > 0


def test_high_is_better_than_voice() -> None:
    x, ideal = multitone(16000, 8000, "voice", 0.3)
    voice = snr_db(resample(x.astype(np.float32), 16000, 8000, "voice"), ideal, 160)
    high = snr_db(resample(x.astype(np.float32), 16000, 8000, "high"), ideal, 160)
    assert high > voice + 10


# -- streaming, accounting, exactness ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(
        [(8000, 16000), (48000, 16000), (44100, 16000), (8000, 11025), (22050, 8000)]
    ),
    quality=st.sampled_from(["voice", "high"]),
    dtype=st.sampled_from([np.int16, np.float32]),
    cuts=st.lists(st.one_of(st.integers(0, 2), st.integers(0, 1500)), max_size=20),
)
def test_streaming_equals_one_shot(
    pair: tuple[int, int], quality: str, dtype: type[Any], cuts: list[int]
) -> None:
    fi, fo = pair
    rng = np.random.default_rng(sum(cuts))
    n = 4000
    if dtype is np.int16:
        x: npt.NDArray[Any] = rng.integers(-30000, 30000, n).astype(np.int16)
    else:
        x = rng.uniform(-1, 1, n).astype(np.float32)
    whole = resample(x, fi, fo, quality)
    r = Resampler(fi, fo, quality, dtype=dtype)
    y = stream(r, x, cuts)
    assert y.dtype == whole.dtype
    np.testing.assert_array_equal(y.view(np.uint8), whole.view(np.uint8))


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    cuts=st.lists(st.integers(0, 1200), min_size=1, max_size=12),
)
def test_accounting_is_exact(pair: tuple[int, int], cuts: list[int]) -> None:
    fi, fo = pair
    g = math.gcd(fi, fo)
    up, down = fo // g, fi // g
    r = Resampler(fi, fo)
    lookahead = round(r.latency * fi)
    assert lookahead / fi == r.latency
    n = m = 0
    for c in cuts:
        expect = r.output_size(c)
        got = r.process(np.zeros(c, np.int16))
        assert len(got) == expect
        n += c
        m += len(got)
        assert m == max(0, -(-(n - lookahead) * up // down))  # ceil((n - lookahead) L / M)
        assert (r.samples_in, r.samples_out) == (n, m)
        # The ideal count less the reported latency, within one sample.
        assert abs(m - max(0.0, (n / fi - r.latency) * fo)) <= 1
    assert m + len(r.flush()) == -(-n * up // down)
    assert (r.samples_in, r.samples_out) == (0, 0)


def test_first_chunk_produces_output() -> None:
    for fi, fo in PAIRS:
        r = Resampler(fi, fo)
        assert len(r.process(np.ones(fi // 50, np.int16))) > 0


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_silence_gives_exact_zeros(dtype: type[Any]) -> None:
    for fi, fo in [(8000, 16000), (44100, 16000), (48000, 8000), (11025, 24000)]:
        r = Resampler(fi, fo, dtype=dtype)
        y = stream(r, np.zeros(3000, dtype), [100, 1, 0, 700])
        assert y.dtype == dtype
        assert not np.any(y.view(np.uint8))  # +0.0 only: no -0.0, no denormals
        # After a burst, the output returns to exact zeros once it has left the window.
        r.process(np.full(500, 20000 if dtype is np.int16 else 0.6, dtype))
        tail = r.process(np.zeros(2000, dtype))
        assert not np.any(tail[len(tail) // 2 :])


def test_flush_completes_and_restarts() -> None:
    r = Resampler(8000, 16000)
    x = np.arange(-800, 800, dtype=np.int16) * 20
    a = np.concatenate([r.process(x), r.flush()])
    assert len(a) == 2 * len(x)
    b = np.concatenate([r.process(x), r.flush()])  # a new stream: same result
    np.testing.assert_array_equal(a, b)
    assert len(r.flush()) == 0  # nothing pending


def test_reset_returns_to_the_initial_state() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-9000, 9000, 1000).astype(np.int16)
    r = Resampler(24000, 16000)
    first = r.process(x)
    r.process(x[:333])
    r.reset()
    assert (r.samples_in, r.samples_out, r.clipped) == (0, 0, 0)
    np.testing.assert_array_equal(r.process(x), first)


def test_clipping_is_saturated_and_counted() -> None:
    # A full-scale square wave overshoots after band limiting (Gibbs).
    x = np.where((np.arange(4000) // 40) % 2 == 0, 32767, -32768).astype(np.int16)
    r = Resampler(16000, 48000)
    y = np.concatenate([r.process(x), r.flush()])
    yf = resample(x.astype(np.float32) / 32768, 16000, 48000)
    v = np.rint(yf.astype(np.float64) * 32768)
    np.testing.assert_array_equal(y, np.clip(v, -32768, 32767))
    expected = int(np.count_nonzero((v > 32767) | (v < -32768)))
    assert expected > 100
    assert r.clipped == expected
    r.reset()
    assert r.clipped == 0


def test_int16_path_is_the_float_path_rounded() -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(-20000, 20000, 5000).astype(np.int16)
    y16 = resample(x, 44100, 16000)
    yf = resample(x.astype(np.float32) / 32768, 44100, 16000)
    np.testing.assert_array_equal(y16, np.rint(yf.astype(np.float64) * 32768))


def test_equal_rates_are_the_identity() -> None:
    x = np.arange(-500, 500, dtype=np.int16)
    r = Resampler(16000, 16000)
    assert r.latency == 0
    np.testing.assert_array_equal(r.process(x), x)
    assert len(r.flush()) == 0


def test_one_shot_length_and_alignment() -> None:
    for n in (0, 1, 7, 161, 1000):
        x = np.ones(n, np.float32)
        assert len(resample(x, 44100, 16000)) == math.ceil(n * 16000 / 44100)
        assert len(resample(x, 8000, 48000)) == 6 * n
    # Integer-factor upsampling keeps every input sample in place.
    x = np.random.default_rng(2).integers(-30000, 30000, 800).astype(np.int16)
    np.testing.assert_array_equal(resample(x, 8000, 24000)[::3], x)


# -- numpy in / out -----------------------------------------------------------------------------


def test_out_is_filled_in_place() -> None:
    x = np.random.default_rng(3).integers(-1000, 1000, 160).astype(np.int16)
    expect = Resampler(8000, 16000).process(x)
    r = Resampler(8000, 16000)
    out = np.empty(r.output_size(len(x)), np.int16)
    assert r.process(x, out=out) is out
    np.testing.assert_array_equal(out, expect)
    r.reset()
    big = np.full(1000, 7, np.int16)
    y = r.process(x, out=big)
    assert y.base is big
    np.testing.assert_array_equal(y, expect)
    assert big[len(expect)] == 7
    tail = np.empty(r.flush_size(), np.int16)
    assert r.flush(out=tail) is tail


def test_out_errors() -> None:
    r = Resampler(8000, 16000)
    x = np.zeros(160, np.int16)
    need = r.output_size(len(x))
    with pytest.raises(ValueError, match=f"at least {need} samples, got {need - 1}"):
        r.process(x, out=np.empty(need - 1, np.int16))
    with pytest.raises(TypeError, match="dtype int16"):
        r.process(x, out=np.empty(400, np.float32))
    with pytest.raises(ValueError, match="writeable"):
        r.process(x, out=np.empty((20, 20), np.int16))
    buf = np.zeros(1000, np.int16)
    with pytest.raises(ValueError, match="overlap"):
        r.process(buf[:160], out=buf[100:])
    assert r.samples_in == 0  # nothing consumed by the failed calls


def test_input_errors() -> None:
    r = Resampler(8000, 16000)
    with pytest.raises(TypeError, match=r"dtype int16 .* got dtype float64"):
        r.process(np.zeros(10))
    with pytest.raises(TypeError, match="dtype int16"):
        r.process(np.zeros(10, np.float32))
    with pytest.raises(TypeError, match="numpy int16 array, got bytes"):
        r.process(b"\x00\x00")
    with pytest.raises(ValueError, match="1-D"):
        r.process(np.zeros((2, 10), np.int16))
    with pytest.raises(ValueError, match="C-contiguous"):
        r.process(np.zeros(20, np.int16)[::2])
    f = Resampler(8000, 16000, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        f.process(np.zeros(10, np.int16))


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((0, 8000), ValueError, "in_rate must be between 1000 and 384000 Hz, got 0"),
        ((8000, -1), ValueError, "out_rate must be between"),
        ((8000, 400000), ValueError, "out_rate"),
        ((44100, 44099), ValueError, "polyphase branches"),
        ((384000, 1000), ValueError, "taps"),
        ((8000, 16000, "best"), ValueError, "'voice' or 'high'"),
    ],
)
def test_constructor_errors(args: tuple[Any, ...], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        Resampler(*args)


def test_bad_dtype_and_one_shot_errors() -> None:
    with pytest.raises(TypeError, match="float64"):
        Resampler(8000, 16000, dtype=np.float64)
    with pytest.raises(TypeError, match="list"):
        resample([1, 2, 3], 8000, 16000)
    with pytest.raises(TypeError, match="float64"):
        resample(np.zeros(3), 8000, 16000)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((3, 3), np.int16), 8000, 16000)


def test_attributes_and_repr() -> None:
    r = Resampler(44100, 16000, "high", dtype=np.float32)
    assert (r.in_rate, r.out_rate, r.quality, r.dtype) == (44100, 16000, "high", np.float32)
    assert r.taps > 0
    assert repr(r) == (
        "Resampler(in_rate=44100, out_rate=16000, quality='high', dtype=numpy.float32)"
    )
    assert voxwire.Resampler is Resampler
    assert voxwire.resample is resample
    with pytest.raises(AttributeError):
        r.anything = 1


def test_large_blocks_in_threads_match() -> None:
    # Blocks this large run with the GIL released; streams in parallel threads stay exact.
    rng = np.random.default_rng(4)
    x = rng.integers(-20000, 20000, 48000).astype(np.int16)
    expect = resample(x, 48000, 16000)
    results: list[npt.NDArray[np.int16]] = [np.empty(0, np.int16)] * 4

    def work(i: int) -> None:
        r = Resampler(48000, 16000)
        results[i] = np.concatenate([r.process(x), r.flush()])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for y in results:
        np.testing.assert_array_equal(y, expect)
