"""Streaming resampling: voxwire against soxr, libsamplerate, scipy and audioop.

Every implementation is driven the way a voice agent drives it: 20 ms int16 chunks, one
stream per direction, for each of the pairs a voice pipeline meets (8k <-> 16k, 8k <-> 24k,
24k -> 16k, 16k <-> 48k, 44.1k -> 16k, 22.05k -> 8k). All figures come from the same run:

latency
    ``held + delay``. *held* is the input not yet out, ``n_in / in_rate - n_out / out_rate``
    after each chunk, averaged over the stream after its first 200 ms. *delay* is the group
    delay of what did come out, measured, not taken from documentation: the integer lag of the
    cross-correlation with the ideal output, refined by the phases of the signal's tones.
SNR
    eleven tones from 150 Hz to 3 kHz (-15 dBFS RMS, int16), against the ideal: the same
    tones synthesised in float64 at the output instants, delayed by the measured delay.
alias / image
    the worst of several tones: downsampling feeds tones past 1.15 x the output Nyquist and
    takes the whole output as alias; upsampling feeds passband tones and takes the output
    spectrum above 1.15 x the input Nyquist (Kaiser-windowed FFT) as image.
ripple
    gain at 3.4 kHz, in dB.
time
    per 20 ms call on fresh data (a pool of distinct chunks), every call timed on its own,
    implementations interleaved batch by batch; the mean is the median over batches of the
    batch mean (a batch in which the process was preempted does not move it), the 99th
    percentile is over all calls; and the mean as a ratio to soxr HQ's.

scipy's ``resample_poly`` is a one-shot reference: it sees the whole signal, so it has no
latency, and its time is that of one 1 s call divided by 50. libsamplerate and audioop take
float32 and bytes; their times include the conversions from and to int16 a caller needs.
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire.benchmarks._harness import Table, environment_note, fmt_ratio
from voxwire.resample import Resampler

__all__ = [
    "PAIRS",
    "Stream",
    "chunk_pool",
    "implementations",
    "measure_quality",
    "run",
    "time_calls",
]

PAIRS: list[tuple[int, int]] = [
    (8000, 16000),
    (16000, 8000),
    (8000, 24000),
    (24000, 8000),
    (24000, 16000),
    (16000, 48000),
    (48000, 16000),
    (44100, 16000),
    (22050, 8000),
]
"""The (in_rate, out_rate) pairs measured."""

CHUNK_S = 0.02
TONES_HZ = (150.0, 233.0, 347.0, 512.0, 733.0, 1021.0, 1409.0, 1789.0, 2203.0, 2617.0, 3011.0)
RIPPLE_HZ = 3400.0
TONE_AMP = 0.08  # each of the eleven: -14.5 dBFS RMS in all

# Goals for "voice", relative to soxr HQ in the same run.
LATENCY_MAX_S = 0.003
TIME_RATIO_MAX = 0.5


@dataclass(frozen=True)
class Stream:
    """A streaming resampler behind one interface: int16 chunks in, int16 arrays out."""

    process: Callable[[npt.NDArray[np.int16]], npt.NDArray[np.int16]]
    flush: Callable[[], npt.NDArray[np.int16]]


@dataclass(frozen=True)
class Impl:
    """One implementation: a stream factory, or a one-shot function for whole signals."""

    name: str
    make: Callable[[int, int], Stream] | None
    oneshot: Callable[[npt.NDArray[np.int16], int, int], npt.NDArray[np.int16]] | None = None


def _to_int16(y: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype(np.int16)


def _voxwire(quality: Literal["voice", "high"]) -> Callable[[int, int], Stream]:
    def make(fi: int, fo: int) -> Stream:
        r = Resampler(fi, fo, quality)
        return Stream(r.process, r.flush)

    return make


def _soxr(soxr: ModuleType, quality: str) -> Callable[[int, int], Stream]:
    def make(fi: int, fo: int) -> Stream:
        s = soxr.ResampleStream(fi, fo, 1, dtype="int16", quality=quality)
        return Stream(s.resample_chunk, lambda: s.resample_chunk(np.zeros(0, np.int16), last=True))

    return make


def _samplerate(samplerate: ModuleType, converter: str) -> Callable[[int, int], Stream]:
    def make(fi: int, fo: int) -> Stream:
        r = samplerate.Resampler(converter, channels=1)
        ratio = fo / fi
        scale = np.float32(1 / 32768)

        def process(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
            return _to_int16(r.process(x.astype(np.float32) * scale, ratio))

        def flush() -> npt.NDArray[np.int16]:
            return _to_int16(r.process(np.zeros(0, np.float32), ratio, end_of_input=True))

        return Stream(process, flush)

    return make


def _audioop(audioop: ModuleType) -> Callable[[int, int], Stream]:
    def make(fi: int, fo: int) -> Stream:
        state: list[object] = [None]
        ratecv = audioop.ratecv

        def process(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
            out, state[0] = ratecv(x.tobytes(), 2, 1, fi, fo, state[0])
            return np.frombuffer(out, np.int16)

        return Stream(process, lambda: np.zeros(0, np.int16))

    return make


def _import(name: str) -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module(name)
        except ImportError:
            return None


def implementations() -> tuple[list[Impl], list[str]]:
    """The implementations to compare, and notes on the peers that are not installed."""
    impls = [Impl("voxwire voice", _voxwire("voice")), Impl("voxwire high", _voxwire("high"))]
    notes = []
    soxr = _import("soxr")
    if soxr is None:
        notes.append("soxr not installed (pip install soxr): skipped")
    else:
        impls.extend(Impl(f"soxr {q}", _soxr(soxr, q)) for q in ("QQ", "LQ", "MQ", "HQ", "VHQ"))
    samplerate = _import("samplerate")
    if samplerate is None:
        notes.append("libsamplerate not installed (pip install samplerate): skipped")
    else:
        impls.extend(
            Impl(f"libsamplerate {c}", _samplerate(samplerate, c))
            for c in ("sinc_fastest", "sinc_medium", "sinc_best")
        )
    signal = _import("scipy.signal")
    if signal is None:
        notes.append("scipy not installed (pip install scipy): resample_poly skipped")
    else:

        def poly(x: npt.NDArray[np.int16], fi: int, fo: int) -> npt.NDArray[np.int16]:
            g = math.gcd(fi, fo)
            return _to_int16(signal.resample_poly(x / 32768.0, fo // g, fi // g))

        impls.append(Impl("scipy resample_poly", None, poly))
    audioop = _import("audioop")
    if audioop is None:
        notes.append("audioop not available (Python >= 3.13 without audioop-lts): skipped")
    else:
        impls.append(Impl("audioop ratecv", _audioop(audioop)))
    return impls, notes


# -- signals and the ideal -----------------------------------------------------------------------


def _synth(
    freqs: Sequence[float],
    amps: Sequence[float] | npt.NDArray[Any],
    phases: Sequence[float] | npt.NDArray[Any],
    t: npt.NDArray[Any],
) -> npt.NDArray[np.float64]:
    y = np.zeros(len(t))
    for f, a, p in zip(freqs, amps, phases, strict=True):
        y += a * np.sin(2 * np.pi * f * t + p)
    return y


@dataclass
class _Run:
    out: npt.NDArray[np.int16]
    held_s: float  # mean input not yet out, after the first 200 ms
    first_out_s: float  # input fed before the first sample came out


def _drive(impl: Impl, fi: int, fo: int, x: npt.NDArray[np.int16]) -> _Run:
    if impl.make is None:
        assert impl.oneshot is not None
        return _Run(impl.oneshot(x, fi, fo), 0.0, 0.0)
    s = impl.make(fi, fo)
    n = round(CHUNK_S * fi)
    parts = []
    held = []
    n_in = n_out = 0
    first = math.nan
    for k in range(0, len(x) - n + 1, n):
        y = s.process(x[k : k + n])
        parts.append(np.asarray(y, np.int16))
        n_in += n
        n_out += len(y)
        if n_out > 0 and math.isnan(first):
            first = n_in / fi
        if n_in / fi > 0.2:
            held.append(n_in / fi - n_out / fo)
    parts.append(np.asarray(s.flush(), np.int16))
    return _Run(np.concatenate(parts), float(np.mean(held)), first)


def _fit_tones(
    y: npt.NDArray[Any], freqs: Sequence[float], rate: int, lo: int, hi: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Least-squares amplitude and phase of each tone (y ~ sum a sin(2 pi f t + p))."""
    t = np.arange(lo, hi) / rate
    cols = []
    for f in freqs:
        cols += [np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, 1), y[lo:hi].astype(np.float64), rcond=None)
    s, c = coef[0::2], coef[1::2]
    return np.hypot(s, c), np.arctan2(c, s)


@dataclass
class Quality:
    """What :func:`measure_quality` found for one implementation and pair."""

    held_s: float
    delay_s: float
    first_out_s: float
    snr_db: float
    reject_db: float
    ripple_db: float

    @property
    def latency_s(self) -> float:
        return self.held_s + self.delay_s


def measure_quality(impl: Impl, fi: int, fo: int, seconds: float) -> Quality:
    """Latency, SNR, alias/image rejection and ripple of one implementation on one pair."""
    rng = np.random.default_rng(fi * 7 + fo)
    n = round(seconds * fi)
    phases = rng.uniform(0, 2 * np.pi, len(TONES_HZ))
    amps = np.full(len(TONES_HZ), TONE_AMP)
    x = _synth(TONES_HZ, amps, phases, np.arange(n) / fi)
    x16 = np.rint(x * 32768).astype(np.int16)
    run = _drive(impl, fi, fo, x16)
    y = run.out.astype(np.float64) / 32768
    m = len(y)
    ideal = _synth(TONES_HZ, amps, phases, np.arange(m) / fo)
    # Integer lag: the cross-correlation peak over -10 ms .. +300 ms.
    size = 1 << math.ceil(math.log2(2 * m))
    xc = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(ideal, size)), size)
    lags = np.r_[np.arange(0, round(0.3 * fo)), np.arange(-round(0.01 * fo), 0)]
    lag = int(lags[np.argmax(xc[lags])])
    # Fractional part: each tone's phase, against the ideal's, shifted by the lag.
    lo, hi = max(lag, 0) + round(0.1 * fo), m - round(0.1 * fo)
    if hi - lo < fo // 10:
        return Quality(run.held_s, math.nan, run.first_out_s, math.nan, math.nan, math.nan)
    _, got = _fit_tones(y, TONES_HZ, fo, lo, hi)
    w = 2 * np.pi * np.asarray(TONES_HZ)
    resid = np.angle(np.exp(1j * (got - phases + w * lag / fo)))
    delay = lag / fo - float(np.sum(w * resid) / np.sum(w * w))
    aligned = _synth(TONES_HZ, amps, phases, np.arange(m) / fo - delay)
    err = y[lo:hi] - aligned[lo:hi]
    snr = 10 * math.log10(float(np.sum(aligned[lo:hi] ** 2) / max(np.sum(err**2), 1e-30)))
    return Quality(
        run.held_s,
        delay,
        run.first_out_s,
        snr,
        _rejection(impl, fi, fo, seconds),
        _ripple(impl, fi, fo, seconds),
    )


def _tone_run(impl: Impl, fi: int, fo: int, f: float, amp: float, seconds: float) -> Any:
    n = round(seconds * fi)
    x = np.rint(amp * 32768 * np.sin(2 * np.pi * f * np.arange(n) / fi)).astype(np.int16)
    return _drive(impl, fi, fo, x).out.astype(np.float64) / 32768


def _rejection(impl: Impl, fi: int, fo: int, seconds: float) -> float:
    amp = 0.9
    worst = -math.inf
    skip = round(0.15 * fo)
    if fi > fo:
        # Tones that must not fold into the output band: the whole output is alias.
        for frac in (1.15, 1.5, 1.9):
            f = frac * fo / 2
            if f >= 0.97 * fi / 2:
                continue
            y = _tone_run(impl, fi, fo, f, amp, seconds)[skip:-skip]
            rms = math.sqrt(float(np.mean(y * y)) + 1e-30)
            worst = max(worst, 20 * math.log10(rms / (amp / math.sqrt(2))))
        return worst
    # Upsampling: passband tones; their images lie above 1.15 x the input Nyquist.
    edge = 1.15 * fi / 2
    for frac in (0.3, 0.6, 0.85):
        f = frac * fi / 2
        y = _tone_run(impl, fi, fo, f, amp, seconds)[skip:-skip]
        win = np.kaiser(len(y), 20.0)
        spec = np.abs(np.fft.rfft(y * win)) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / fo)
        tone = float(np.sum(spec[np.abs(freqs - f) < 60]))
        image = float(np.sum(spec[freqs >= edge]))
        worst = max(worst, 10 * math.log10(image / tone + 1e-30))
    return worst


def _ripple(impl: Impl, fi: int, fo: int, seconds: float) -> float:
    amp = 0.5
    y = _tone_run(impl, fi, fo, RIPPLE_HZ, amp, seconds)
    skip = round(0.15 * fo)
    got, _ = _fit_tones(y, [RIPPLE_HZ], fo, skip, len(y) - skip)
    return 20 * math.log10(float(got[0]) / amp)


# -- timing -------------------------------------------------------------------------------------


def chunk_pool(fi: int, count: int, seed: int) -> list[npt.NDArray[np.int16]]:
    """Distinct 20 ms chunks of speech-like noise at a random level each."""
    rng = np.random.default_rng(seed)
    n = round(CHUNK_S * fi)
    levels = np.exp(rng.uniform(np.log(100.0), np.log(8000.0), size=(count, 1)))
    x = np.clip(rng.laplace(0.0, 1.0, size=(count, n)) * levels, -32768, 32767)
    return list(x.astype(np.int16))


def time_calls(
    calls: dict[str, Callable[[npt.NDArray[np.int16]], object]],
    pool: Sequence[npt.NDArray[np.int16]],
    *,
    batch: int,
    rounds: int,
    before: dict[str, Callable[[], object]] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Per-call microseconds of each call, interleaved batch by batch in a rotating order,
    each call on the next chunk of the pool (every stream sees the pool in order)."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    pos = dict.fromkeys(names, 0)
    clock = time.perf_counter_ns
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if before is not None and name in before:
                before[name]()
            fn = calls[name]
            out = times[name]
            p = pos[name]
            for _ in range(batch):
                x = pool[p]
                p = p + 1 if p + 1 < len(pool) else 0
                t0 = clock()
                fn(x)
                out.append((clock() - t0) / 1000.0)
            pos[name] = p
    return {name: np.asarray(v) for name, v in times.items()}


def robust_mean(t: npt.NDArray[np.float64], batch: int) -> float:
    """The median over batches of each batch's mean call time: the mean cost of a call,
    without the batches in which the process was preempted (the machine is shared)."""
    return float(np.median(t[: len(t) // batch * batch].reshape(-1, batch).mean(axis=1)))


def _time_pair(
    impls: Sequence[Impl], fi: int, fo: int, quick: bool
) -> dict[str, tuple[float, float]]:
    pool = chunk_pool(fi, 256, fi + fo)
    calls: dict[str, Callable[[npt.NDArray[np.int16]], object]] = {}
    slow: dict[str, Callable[[npt.NDArray[np.int16]], object]] = {}
    for impl in impls:
        if impl.make is None:
            continue
        s = impl.make(fi, fo)
        for x in pool[:10]:  # warm up: first calls fill filter delay lines, allocate
            s.process(x)
        (slow if impl.name.startswith("libsamplerate") else calls)[impl.name] = s.process
    result: dict[str, tuple[float, float]] = {}
    rounds = 16 if quick else 80
    for group, batch in ((calls, 25), (slow, 10)):
        if not group:
            continue
        times = time_calls(group, pool, batch=batch, rounds=rounds if group is calls else 4)
        for name, t in times.items():
            result[name] = (robust_mean(t, batch), float(np.percentile(t, 99)))
    for impl in impls:
        if impl.oneshot is not None:
            x = np.concatenate(pool[:50])  # 1 s
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter_ns()
                impl.oneshot(x, fi, fo)
                best = min(best, (time.perf_counter_ns() - t0) / 1000.0 / 50)
            result[impl.name] = (best, math.nan)
    return result


def _time_gil(fi: int, fo: int, quick: bool) -> tuple[float, float]:
    """Mean us per 20 ms call of "voice" with the GIL kept and with it released."""
    pool = chunk_pool(fi, 256, fi * 3 + fo)
    keep = Resampler(fi, fo)
    release = Resampler(fi, fo)
    default = _core._resample_release_gil_samples()
    try:
        times = time_calls(
            {"keep": keep.process, "release": release.process},
            pool,
            batch=25,
            rounds=16 if quick else 80,
            before={
                "keep": lambda: _core._resample_release_gil_samples(1 << 30),
                "release": lambda: _core._resample_release_gil_samples(0),
            },
        )
    finally:
        _core._resample_release_gil_samples(default)
    return robust_mean(times["keep"], 25), robust_mean(times["release"], 25)


# -- report ---------------------------------------------------------------------------------------


def _ms(s: float) -> str:
    return "-" if math.isnan(s) else f"{1000 * s:.2f}"


def _db(x: float) -> str:
    if x < -200:
        return "silent"  # every output sample rounded to 0
    return "-" if math.isnan(x) else f"{x:.1f}"


def _us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"


def run(quick: bool = False) -> list[Table]:
    """Measure every implementation on every pair; one table per pair plus summaries."""
    impls, skipped = implementations()
    seconds = 0.6 if quick else 1.5
    tables: list[Table] = []
    summary_rows: list[list[str]] = []
    gil_rows: list[list[str]] = []
    for fi, fo in PAIRS:
        timing = _time_pair(impls, fi, fo, quick)
        quality = {impl.name: measure_quality(impl, fi, fo, seconds) for impl in impls}
        hq = timing.get("soxr HQ", (math.nan, math.nan))[0]
        rows = []
        for impl in impls:
            q = quality[impl.name]
            mean, p99 = timing[impl.name]
            oneshot = impl.make is None
            rows.append(
                [
                    impl.name,
                    "one-shot" if oneshot else _ms(q.latency_s),
                    "-" if oneshot else _ms(q.held_s),
                    _ms(q.delay_s),
                    "-" if oneshot else _ms(q.first_out_s),
                    _db(q.snr_db),
                    _db(q.reject_db),
                    f"{q.ripple_db:+.3f}",
                    _us(mean),
                    _us(p99),
                    "-" if math.isnan(hq) else fmt_ratio(mean / hq),
                ]
            )
        tables.append(
            Table(
                title=f"Resampling {fi} -> {fo} Hz, 20 ms int16 chunks",
                columns=[
                    "implementation",
                    "latency ms",
                    "held ms",
                    "delay ms",
                    "first out ms",
                    "SNR dB",
                    "alias/image dB",
                    "3.4k dB",
                    "mean us",
                    "p99 us",
                    "vs soxr HQ",
                ],
                rows=rows,
            )
        )
        v = quality["voxwire voice"]
        vt = timing["voxwire voice"][0]
        if "soxr HQ" in quality:
            s = quality["soxr HQ"]
            ok = (
                v.latency_s <= LATENCY_MAX_S
                and v.snr_db >= min(s.snr_db, 80.0)
                and v.reject_db <= max(s.reject_db, -80.0)
                and vt / hq <= TIME_RATIO_MAX
            )
            summary_rows.append(
                [
                    f"{fi} -> {fo}",
                    f"{_ms(v.latency_s)} / {_ms(s.latency_s)}",
                    f"{_db(v.snr_db)} / {_db(s.snr_db)}",
                    f"{_db(v.reject_db)} / {_db(s.reject_db)}",
                    f"{_us(vt)} / {_us(hq)}",
                    fmt_ratio(vt / hq),
                    "yes" if ok else "NO",
                ]
            )
        keep, release = _time_gil(fi, fo, quick)
        gil_rows.append([f"{fi} -> {fo}", _us(keep), _us(release), fmt_ratio(release / keep)])
    notes = [
        "latency = held (input not yet out, mean after 200 ms) + delay (measured group delay)",
        "SNR: 11 tones 150-3011 Hz vs float64 synthesis at the output rate, delay-aligned",
        "times: each 20 ms call timed alone, implementations interleaved, fresh chunks;",
        "  mean = median of batch means (robust to preemption), p99 over all calls",
        '"silent": every output sample rounded to 0 (below int16 resolution)',
        *skipped,
        environment_note(),
    ]
    for t in tables:
        t.notes = notes
    if summary_rows:
        tables.append(
            Table(
                title='Resampling: voxwire "voice" / soxr HQ, goals per pair',
                columns=[
                    "pair",
                    "latency ms",
                    "SNR dB",
                    "alias/image dB",
                    "mean us",
                    "time ratio",
                    "goals met",
                ],
                rows=summary_rows,
                notes=[
                    "goals met: latency <= 3 ms; SNR >= soxr HQ's or >= 80 dB; alias/image",
                    "<= soxr HQ's or <= -80 dB; mean time per 20 ms call <= 0.5x soxr HQ's",
                ],
            )
        )
    tables.append(
        Table(
            title='Resampler.process per 20 ms chunk ("voice"): GIL kept vs released',
            columns=["pair", "kept us", "released us", "released / kept"],
            rows=gil_rows,
            notes=[
                "voxwire keeps the GIL for blocks under 4096 samples "
                "(_core._resample_release_gil_samples)",
            ],
        )
    )
    return tables
