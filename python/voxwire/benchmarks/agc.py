"""Automatic gain control: voxwire's Agc against WebRTC's AGC1 and AGC2 and a fixed gain.

Calls are built fresh each run from espeak-ng speech (:func:`voxwire.sim.speech.synthesize`,
random voices, sentences, speeds and pitches) at 16 kHz, with 0.6-2 s pauses and white line
noise at -70 dBFS throughout. The speech level moves over -40..-6 dBFS (peak) two ways:

* **steps**: groups of three utterances, each group at a new random level (a caller who
  moves the handset, a transfer to a louder line);
* **drift**: the level glides from -6 to -40 dBFS and back over the call, within
  utterances too.

Each method hears the same call. Figures, per method:

* **level**: the active level of each utterance's output (mean power of the 10 ms blocks
  where the clean speech is within 20 dB of its loudest block), median over utterances, and
  the **spread**: their standard deviation and 10th-90th percentile range, over the
  utterances that start after the first 3 s (every method gets time to settle);
* **pause SNR**: each utterance's output level less the output noise level in the pause
  after it, and its change from the input's (0 dB: the noise between words is lifted no
  more than the speech; negative: the method amplifies line noise in pauses);
* **clipped**: output samples at int16 full scale.

Methods: the input as it is; a fixed gain (the one that brings the call's median level to
-26 dBFS, saturating like a plain multiply); WebRTC's AGC1 (the ``webrtc-noise-gain``
wheel, ``auto_gain=3``, noise suppression off: ``auto_gain`` 3, 15 and 31 gave the same
output, a gain of about +11 dB compressed above about -20 dBFS); WebRTC's AGC2 (the
``pywebrtc-audio`` wheel's ``GainController`` with its defaults: adaptive digital gain
from its RNN VAD's speech level, at most 6 dB/s, output noise held under -50 dBFS, and a
limiter), both in 10 ms chunks; and voxwire's Agc with its defaults.

Word accuracy: short caller phrases by espeak-ng voices at fixed peak levels from -40 to
-6 dBFS (noise as above), each level one call (the gain control's state carries across its
phrases), recognised by :class:`~voxwire.services.stt_pocketsphinx.PocketSphinxStt`
streamed in 20 ms pushes, with and without the gain control (1 - WER over all phrases),
and with voxwire's Agc set to boost only (``min_gain_db=0``: it lifts quiet lines and
leaves loud ones as they are), the setting the voice agent uses.

CPU: per 20 ms frame, voxwire's ``Agc.process`` (and the bare native call) against two
10 ms calls of each WebRTC AGC, timed interleaved on fresh frames of a call.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voxwire._types import PCM as PCM
from voxwire.agc import Agc
from voxwire.benchmarks import corpus
from voxwire.benchmarks._harness import Impl, Table, environment_note, time_interleaved

__all__ = [
    "Call",
    "LevelScores",
    "agc1_available",
    "agc2_available",
    "build_call",
    "methods",
    "run",
    "score_levels",
    "word_accuracy",
]

RATE = 16000
TARGET_DBFS = -26.0
NOISE_DBFS = -70.0
LOW_DBFS, HIGH_DBFS = -40.0, -6.0
_BLOCK = RATE // 100
_SETTLE_S = 3.0
_AGC1_TARGET = 3  # webrtc-noise-gain's auto_gain; 3, 15 and 31 gave the same output
AGC1 = "webrtc AGC1 (webrtc-noise-gain)"
AGC2 = "webrtc AGC2 (pywebrtc-audio)"
BOOST = "voxwire Agc, boost only (min_gain_db=0)"
STT_LEVELS = (-40.0, -30.0, -20.0, -10.0, -6.0)

_VOICES = ("en-us", "en-us+m3", "en-us+f2", "en-gb-x-rp", "en-us+f4", "en-us+m7")
PHRASES = (
    "what time do you open on saturday",
    "i would like to book a table for two",
    "can you move my appointment to thursday",
    "how much does a haircut cost",
    "my name is sarah johnson",
    "yes that is right",
    "where are you located",
    "i need to cancel my booking for tomorrow",
    "no thank you goodbye",
    "could i come in at ten in the morning",
    "what is the price of a full service",
    "are you open on sunday",
)


def agc1_available() -> bool:
    """Whether the ``webrtc-noise-gain`` wheel (WebRTC's AGC1 and noise suppression) is
    installed."""
    return importlib.util.find_spec("webrtc_noise_gain") is not None


def agc2_available() -> bool:
    """Whether the ``pywebrtc-audio`` wheel (WebRTC's audio processing module, with AGC2)
    is installed."""
    return importlib.util.find_spec("pywebrtc_audio") is not None


# ---- calls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A call's audio with where each utterance is and how loud its clean speech is."""

    audio: PCM
    clean: npt.NDArray[np.float64]  # the speech alone, as heard (level program applied)
    utterances: tuple[tuple[int, int], ...]  # sample bounds
    pauses: tuple[tuple[int, int], ...]  # the pause after each utterance
    texts: tuple[str, ...]


def _say(text: str, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    from voxwire.sim.speech import synthesize

    pcm = synthesize(
        text,
        RATE,
        voice=str(rng.choice(_VOICES)),
        wpm=int(rng.integers(140, 190)),
        pitch=int(rng.integers(30, 70)),
        seed=int(rng.integers(1, 1 << 30)),
    )
    return pcm.astype(np.float64)  # peak -6 dBFS


def _assemble(
    pieces: Sequence[npt.NDArray[np.float64]],
    gaps: Sequence[int],
    texts: Sequence[str],
    rng: np.random.Generator,
    envelope: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | None = None,
    levels: Sequence[float] | None = None,
) -> Call:
    total = gaps[0] + sum(len(p) + g for p, g in zip(pieces, gaps[1:], strict=True))
    clean = np.zeros(total)
    utts: list[tuple[int, int]] = []
    pauses: list[tuple[int, int]] = []
    at = gaps[0]
    for i, (p, g) in enumerate(zip(pieces, gaps[1:], strict=True)):
        gain = 10 ** ((levels[i] + 6.0) / 20) if levels is not None else 1.0
        clean[at : at + len(p)] = p * gain
        utts.append((at, at + len(p)))
        pauses.append((at + len(p), at + len(p) + g))
        at += len(p) + g
    if envelope is not None:
        clean *= envelope(np.arange(total) / total)
    line = rng.standard_normal(total) * 32768 * 10 ** (NOISE_DBFS / 20)
    audio = np.clip(np.round(clean + line), -32768, 32767).astype(np.int16)
    return Call(audio, clean, tuple(utts), tuple(pauses), tuple(texts))


def build_call(kind: str, seconds: float, rng: np.random.Generator) -> Call:
    """A fresh call of about ``seconds``: ``kind`` is ``"steps"`` or ``"drift"``."""
    sentences = corpus._SENTENCES + corpus._SHORT
    pieces: list[npt.NDArray[np.float64]] = []
    texts: list[str] = []
    gaps = [int(rng.uniform(0.6, 2.0) * RATE)]
    while sum(map(len, pieces)) + sum(gaps) < seconds * RATE:
        text = str(rng.choice(sentences))
        pieces.append(_say(text, rng))
        texts.append(text)
        gaps.append(int(rng.uniform(0.6, 2.0) * RATE))
    if kind == "steps":
        levels: list[float] = []
        while len(levels) < len(pieces):
            levels += [float(rng.uniform(LOW_DBFS, HIGH_DBFS))] * 3
        return _assemble(pieces, gaps, texts, rng, levels=levels[: len(pieces)])
    if kind == "drift":
        span = HIGH_DBFS - LOW_DBFS

        def envelope(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            db = -span * (1 - np.abs(2 * u - 1))  # 0 -> -34 dB -> 0 over the call
            return np.asarray(10 ** (db / 20), dtype=np.float64)

        return _assemble(pieces, gaps, texts, rng, envelope=envelope)
    raise ValueError(f"kind must be 'steps' or 'drift', got {kind!r}")


# ---- methods -----------------------------------------------------------------------------

Method = Callable[[PCM], PCM]


def _voxwire(**kwargs: float) -> Method:
    def run(x: PCM) -> PCM:
        return Agc(RATE, **kwargs).process(x)

    return run


def _fixed(gain_db: float) -> Method:
    def run(x: PCM) -> PCM:
        y = np.round(x.astype(np.float64) * 10 ** (gain_db / 20))
        return np.clip(y, -32768, 32767).astype(np.int16)

    return run


def _agc2(x: PCM) -> PCM:
    from pywebrtc_audio import GainController  # type: ignore[import-untyped,unused-ignore]

    g = GainController(RATE)
    n = len(x) // 160 * 160
    y = [g.process(np.ascontiguousarray(x[i : i + 160])) for i in range(0, n, 160)]
    return np.concatenate([*y, np.zeros(len(x) - n, np.int16)])


def _webrtc(target: int) -> Method:
    def run(x: PCM) -> PCM:
        from webrtc_noise_gain import AudioProcessor  # type: ignore[import-untyped,unused-ignore]

        p = AudioProcessor(target, 0)
        raw = x[: len(x) // 160 * 160].tobytes()
        out = b"".join(p.Process10ms(raw[i : i + 320]).audio for i in range(0, len(raw), 320))
        y = np.frombuffer(out, dtype=np.int16)
        return np.concatenate([y, np.zeros(len(x) - len(y), np.int16)])

    return run


def methods(call: Call | None = None) -> tuple[dict[str, Method], list[str]]:
    """The methods compared (name -> function of the whole input) and notes on missing
    peers. The fixed gain is fitted to ``call`` (0 dB without one)."""
    fixed = 0.0
    if call is not None:
        fixed = TARGET_DBFS - float(np.median(_levels(call, call.audio)))
    out: dict[str, Method] = {
        "input (no gain)": _fixed(0.0),
        f"fixed gain ({fixed:+.0f} dB)": _fixed(fixed),
    }
    notes: list[str] = []
    if agc1_available():
        out[AGC1] = _webrtc(_AGC1_TARGET)
    else:
        notes.append("WebRTC AGC1 skipped: pip install webrtc-noise-gain")
    if agc2_available():
        out[AGC2] = _agc2
    else:
        notes.append("WebRTC AGC2 skipped: pip install pywebrtc-audio")
    out["voxwire Agc"] = _voxwire()
    return out, notes


# ---- level figures -----------------------------------------------------------------------


def _block_power(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = len(x) // _BLOCK * _BLOCK
    b = x[:n].reshape(-1, _BLOCK)
    p: npt.NDArray[np.float64] = np.mean(b * b, axis=1)
    return p


def _db(p: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(10 * np.log10(np.maximum(p, 1e-3) / 32768**2), dtype=np.float64)


def _levels(call: Call, y: PCM) -> npt.NDArray[np.float64]:
    """Active level (dBFS) of each utterance of ``y``, on the clean speech's loud blocks."""
    out = []
    for a, b in call.utterances:
        ref = _block_power(call.clean[a:b])
        got = _block_power(y[a:b].astype(np.float64))
        mask = ref >= ref.max() / 100
        out.append(float(_db(float(np.mean(got[mask])))))
    return np.asarray(out)


def _pause_levels(call: Call, y: PCM) -> npt.NDArray[np.float64]:
    """Noise level (dBFS) in the pause after each utterance (its middle, clear of the
    speech's tails)."""
    out = []
    for a, b in call.pauses:
        margin = min((b - a) // 4, RATE // 5)
        seg = y[a + margin : b - margin].astype(np.float64)
        out.append(float(_db(float(np.mean(seg * seg)))) if len(seg) else np.nan)
    return np.asarray(out)


@dataclass
class LevelScores:
    """One method's figures on one call."""

    median_dbfs: float
    spread_db: float
    range_db: float
    pause_snr_db: float
    snr_change_db: float
    clipped: int


def score_levels(call: Call, y: PCM) -> LevelScores:
    """The level figures of output ``y`` of ``call`` (see the module docstring)."""
    lv = _levels(call, y)
    settled = np.asarray([a >= _SETTLE_S * RATE for a, _ in call.utterances])
    s = lv[settled] if settled.sum() >= 3 else lv
    snr_out = lv - _pause_levels(call, y)
    snr_in = _levels(call, call.audio) - _pause_levels(call, call.audio)
    clipped = int(np.sum((y == 32767) | (y == -32768)))
    return LevelScores(
        median_dbfs=float(np.median(lv)),
        spread_db=float(np.std(s)),
        range_db=float(np.percentile(s, 90) - np.percentile(s, 10)),
        pause_snr_db=float(np.nanmedian(snr_out)),
        snr_change_db=float(np.nanmedian(snr_out - snr_in)),
        clipped=clipped,
    )


def _level_tables(quick: bool, rng: np.random.Generator) -> tuple[list[Table], Call]:
    seconds = 40.0 if quick else 120.0
    tables = []
    last: Call | None = None
    for kind in ("steps", "drift"):
        call = build_call(kind, seconds, rng)
        last = call
        meths, notes = methods(call)
        rows = []
        inp = score_levels(call, call.audio)
        for name, fn in meths.items():
            s = score_levels(call, fn(call.audio))
            rows.append(
                [
                    name,
                    f"{s.median_dbfs:.1f}",
                    f"{s.spread_db:.1f}",
                    f"{s.range_db:.1f}",
                    f"{s.pause_snr_db:.1f}",
                    f"{s.snr_change_db:+.1f}",
                    str(s.clipped),
                ]
            )
        tables.append(
            Table(
                f"AGC on a call with level {kind} over -40..-6 dBFS peak "
                f"({len(call.audio) / RATE:.0f} s, {len(call.utterances)} utterances)",
                [
                    "method",
                    "level dBFS",
                    "spread std dB",
                    "p90-p10 dB",
                    "pause SNR dB",
                    "SNR change",
                    "clipped",
                ],
                rows,
                [
                    *notes,
                    f"input: active levels {inp.median_dbfs:.1f} dBFS median, spread "
                    f"{inp.spread_db:.1f} dB std; line noise {NOISE_DBFS:.0f} dBFS; voxwire "
                    f"target {TARGET_DBFS:.0f} dBFS",
                    "spread over utterances starting after 3 s; SNR change: output pause SNR "
                    "less the input's (negative: noise lifted in pauses)",
                ],
            )
        )
    assert last is not None
    return tables, last


# ---- speech recognition ------------------------------------------------------------------


async def _recognise(stt: object, pcm: PCM) -> str:
    texts: list[str] = []
    async with stt.stream() as s:  # type: ignore[attr-defined]
        for i in range(0, len(pcm), 320):
            s.push(pcm[i : i + 320])
        s.finalize()
        s.end_input()
        texts = [t.text async for t in s if t.final and t.text]
    return " ".join(texts)


def word_accuracy(
    levels: Sequence[float], phrases: Sequence[str], voices: Sequence[str], seed: int = 0
) -> dict[str, dict[float, float]]:
    """1 - WER per method and peak level: each level is one call of every phrase in every
    voice, 0.8 s apart, processed whole by each method and recognised phrase by phrase."""
    from voxwire.services.stt_pocketsphinx import PocketSphinxStt
    from voxwire.sim.speech import synthesize, word_errors

    rng = np.random.default_rng(seed)
    stt = PocketSphinxStt()
    stt.warm_up()
    said = [(p, v) for v in voices for p in phrases]
    pieces = [synthesize(p, RATE, voice=v).astype(np.float64) for p, v in said]
    gap = int(0.8 * RATE)
    names = ["no gain control", "voxwire Agc", BOOST]
    if agc2_available():
        names.append(AGC2)
    result: dict[str, dict[float, float]] = {n: {} for n in names}
    for level in levels:
        call = _assemble(pieces, [gap] * (len(pieces) + 1), [p for p, _ in said], rng,
                         levels=[level] * len(pieces))  # fmt: skip
        for name in names:
            if name == "voxwire Agc":
                y = _voxwire()(call.audio)
            elif name == BOOST:
                y = _voxwire(min_gain_db=0.0)(call.audio)
            elif name == AGC2:
                y = _agc2(call.audio)
            else:
                y = call.audio
            errors = words = 0
            for (a, b), text in zip(call.utterances, call.texts, strict=True):
                seg = y[max(0, a - RATE // 4) : b + RATE // 4]
                hyp = asyncio.run(_recognise(stt, seg))
                errors += word_errors(text.split(), hyp.split())
                words += len(text.split())
            result[name][level] = 1.0 - errors / max(1, words)
    return result


def _stt_table(quick: bool) -> Table:
    from voxwire.services.stt_pocketsphinx import pocketsphinx_available

    if not pocketsphinx_available():
        return Table(
            "AGC and speech recognition", ["method"], [], ["skipped: pip install pocketsphinx"]
        )
    # Quick mode (as CI runs every benchmark) keeps to three levels and four phrases.
    phrases = PHRASES[::3] if quick else PHRASES
    voices = _VOICES[:1] if quick else _VOICES[:3]
    levels = STT_LEVELS[::2] if quick else STT_LEVELS
    acc = word_accuracy(levels, phrases, voices)
    rows = [[name, *(f"{acc[name][lv]:.3f}" for lv in levels)] for name in acc]
    n = len(phrases) * len(voices)
    return Table(
        "PocketSphinx word accuracy (1 - WER) by input peak level, with and without AGC",
        ["method", *(f"{lv:.0f} dBFS" for lv in levels)],
        rows,
        [
            f"{n} phrases ({len(voices)} voices) per level, each level one call; line noise "
            f"{NOISE_DBFS:.0f} dBFS; PocketSphinxStt streamed in 20 ms pushes",
        ],
    )


# ---- CPU ---------------------------------------------------------------------------------


def _cpu(quick: bool, call: Call) -> Table:
    frame = RATE // 50
    n = len(call.audio) // frame
    # Each item carries the frame as an array (voxwire) and as bytes (webrtc), so all are
    # timed interleaved on the same fresh frames, each through a one-line adaptor.
    pool: list[object] = []
    for i in range(n):
        f = np.ascontiguousarray(call.audio[i * frame : (i + 1) * frame])
        pool.append((f, f.tobytes()))
    agc = Agc(RATE)
    wrapped, native = agc.process, agc._native.process
    impls = [
        Impl("voxwire Agc.process", lambda item: wrapped(item[0])),
        Impl("voxwire _core", lambda item: native(item[0])),
    ]
    notes = []
    if agc1_available():
        from webrtc_noise_gain import AudioProcessor

        pw = AudioProcessor(_AGC1_TARGET, 0).Process10ms

        def agc1_frame(item: tuple[PCM, bytes]) -> None:
            pw(item[1][:320])
            pw(item[1][320:])

        impls.append(Impl(AGC1, agc1_frame))
    if agc2_available():
        from pywebrtc_audio import GainController

        gp = GainController(RATE).process

        def agc2_frame(item: tuple[PCM, bytes]) -> None:
            gp(item[0][:160])
            gp(item[0][160:])

        impls.append(Impl(AGC2, agc2_frame))
    times = time_interleaved(impls, pool, batch=200, rounds=20 if quick else 60)
    per_call = {k: float(np.median(v)) for k, v in times.items()}
    # The whole call through one native call (no per-frame Python).
    best = float("inf")
    for _ in range(5):
        a = Agc(RATE)
        t0 = time.perf_counter_ns()
        a.process(call.audio)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    ref = per_call.get(AGC2, per_call.get(AGC1))
    ref_name = AGC2 if AGC2 in per_call else AGC1
    rows = [
        [
            "voxwire whole call (C++ only)",
            f"{best / 1000:.2f}",
            f"{best / ref:.2f}x" if ref else "-",
        ]
    ]
    for name, ns in per_call.items():
        rows.append([name + " (per call)", f"{ns / 1000:.2f}", f"{ns / ref:.2f}x" if ref else "-"])
    notes += [
        f"per 20 ms frame at 16 kHz (two 10 ms calls for WebRTC); ratios against {ref_name}",
        "webrtc-noise-gain runs WebRTC's high-pass filter, VAD and AGC1 (noise suppression "
        "off); pywebrtc-audio's GainController runs AGC2 with its RNN VAD",
        environment_note(),
    ]
    return Table("AGC CPU per 20 ms frame (us)", ["call", "us/frame", "ratio"], rows, notes)


def run(quick: bool = False) -> list[Table]:
    """Level spread and pause SNR on step and drift calls, word accuracy with and without
    AGC, and CPU per frame."""
    if not corpus.espeak_available():
        return [
            Table(
                "AGC",
                ["method"],
                [],
                ["skipped: the calls need espeak-ng: pip install espeakng-loader"],
            )
        ]
    rng = np.random.default_rng()
    tables, call = _level_tables(quick, rng)
    tables.append(_stt_table(quick))
    tables.append(_cpu(quick, call))
    return tables
