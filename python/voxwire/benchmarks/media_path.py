"""Per-message cost of the base64 media path: voxwire against json + base64 + audioop + soxr.

Two workloads, the two directions of a Twilio Media Stream with a 16 kHz pipeline and a
24 kHz TTS:

inbound
    one ``media`` JSON text message carrying 20 ms of 8 kHz mu-law (216 base64 characters)
    -> 16 kHz PCM16 as a numpy int16 array.
outbound
    20 ms of 24 kHz PCM16 (480 samples) -> one ``media`` JSON text message carrying 8 kHz
    mu-law.

Implementations, each with its own stream state, fed the same pool of distinct messages:

``voxwire codec``
    :class:`voxwire.protocols.TwilioCodec` with ``resampler=voxwire.Resampler``: what an
    application calls (``receive`` / ``send_audio``), including its events and counters.
``voxwire one call``
    ``json`` for the envelope and one :class:`~voxwire.media_path.MediaDecoder` /
    :class:`~voxwire.media_path.MediaEncoder` call for the payload.
``voxwire kernels``
    the same steps as separate calls: ``json``, ``base64``, :func:`voxwire.decode_ulaw` /
    :func:`voxwire.encode_ulaw` and :class:`voxwire.Resampler`.
``pure Python``
    ``json``, ``base64``, ``audioop.ulaw2lin`` / ``lin2ulaw`` and ``soxr.ResampleStream``
    (quality "HQ"): the path a Python voice agent uses today.

Before timing, the one-call path must equal the kernels path bit for bit and the codec's
output must equal both; the pure-Python path must decode the same G.711 samples, and its
resampled signal must match voxwire's to a correlation of 0.999 once the two filters'
delays are aligned (they are different filters, so bit equality is not expected). Times are
median nanoseconds per message over interleaved batches on fresh data; the ratio is to the
pure-Python path.
"""

from __future__ import annotations

import base64
import importlib
import json
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from voxwire.benchmarks._harness import Impl, Table, environment_note, fmt_ratio, time_interleaved
from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.media_path import MediaDecoder, MediaEncoder
from voxwire.protocols.events import Audio
from voxwire.protocols.twilio import TwilioCodec
from voxwire.resample import Resampler
from voxwire.sim.providers.twilio import TwilioSide

__all__ = [
    "LINE_RATE",
    "PIPELINE_RATE",
    "TTS_RATE",
    "check",
    "inbound_implementations",
    "inbound_messages",
    "outbound_implementations",
    "run",
    "tts_chunks",
]

LINE_RATE = 8000
PIPELINE_RATE = 16000
TTS_RATE = 24000
FRAME_S = 0.02
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def _load(name: str) -> ModuleType | None:
    # The stdlib audioop (<= 3.12) warns that it is deprecated; audioop-lts (3.13+) does not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module(name)
        except ImportError:
            return None


def _voice(rng: np.random.Generator, n: int, rate: int) -> npt.NDArray[np.int16]:
    """A band-limited, speech-level signal: tones below 3.4 kHz with drifting amplitudes."""
    t = np.arange(n) / rate
    x = np.zeros(n)
    for f in rng.uniform(120.0, 3400.0, size=12):
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t + rng.uniform(0, 6))
        x += envelope * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
    x *= 2500.0 / max(float(np.sqrt(np.mean(x * x))), 1e-9)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _side() -> TwilioSide:
    """Twilio's side of the benchmark's stream (``streamSid`` :data:`STREAM_SID`)."""
    return TwilioSide(call_id=STREAM_SID[2:])


def inbound_messages(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` consecutive Twilio ``media`` messages of 20 ms mu-law at 8 kHz, as the
    simulated Twilio side writes them (re-serialised with :func:`json.dumps`'s spacing)."""
    frame = int(LINE_RATE * FRAME_S)
    pcm = _voice(rng, count * frame, LINE_RATE)
    side = _side()
    side.opening()  # the start message takes the first sequence number
    return [
        json.dumps(json.loads(side.audio(pcm[i * frame : (i + 1) * frame]))) for i in range(count)
    ]


def tts_chunks(rng: np.random.Generator, count: int) -> list[npt.NDArray[np.int16]]:
    """``count`` consecutive 20 ms chunks of 24 kHz PCM16."""
    frame = int(TTS_RATE * FRAME_S)
    x = _voice(rng, count * frame, TTS_RATE)
    return [x[i * frame : (i + 1) * frame].copy() for i in range(count)]


def _start_message() -> str:
    start = _side().opening()[-1]
    assert isinstance(start, str)  # Twilio's messages are JSON text
    return start


def _codec() -> TwilioCodec:
    codec = TwilioCodec(pipeline_rate=PIPELINE_RATE, resampler=Resampler)
    codec.receive(_start_message(), 0.0)
    return codec


# --- the implementations -------------------------------------------------------------


def inbound_implementations(audioop: ModuleType | None, soxr: ModuleType | None) -> list[Impl]:
    codec = _codec()

    def via_codec(msg: str) -> object:
        event = codec.receive(msg, 0.0)[0]
        assert isinstance(event, Audio)
        return event.pcm

    decoder = MediaDecoder("mulaw", LINE_RATE, PIPELINE_RATE)
    decode = decoder.decode
    loads = json.loads

    def one_call(msg: str) -> object:
        return decode(loads(msg)["media"]["payload"])

    resampler = Resampler(LINE_RATE, PIPELINE_RATE)
    b64 = base64.b64decode

    def kernels(msg: str) -> object:
        raw = b64(loads(msg)["media"]["payload"], validate=True)
        return resampler.process(decode_ulaw(np.frombuffer(raw, dtype=np.uint8)))

    impls = [
        Impl("voxwire codec", via_codec),
        Impl("voxwire one call", one_call),
        Impl("voxwire kernels", kernels),
    ]
    if audioop is not None and soxr is not None:
        stream = soxr.ResampleStream(LINE_RATE, PIPELINE_RATE, 1, dtype="int16", quality="HQ")
        ulaw2lin = audioop.ulaw2lin
        chunk = stream.resample_chunk

        def pure(msg: str) -> object:
            raw = b64(loads(msg)["media"]["payload"], validate=True)
            return chunk(np.frombuffer(ulaw2lin(raw, 2), dtype=np.int16))

        impls.append(Impl("pure Python", pure))
    return impls


def outbound_implementations(audioop: ModuleType | None, soxr: ModuleType | None) -> list[Impl]:
    codec = _codec()

    def via_codec(pcm: npt.NDArray[np.int16]) -> object:
        return codec.send_audio(pcm, TTS_RATE)

    encoder = MediaEncoder("mulaw", TTS_RATE, LINE_RATE)
    encode = encoder.encode
    dumps = json.JSONEncoder(separators=(",", ":")).encode  # built once, as a server would

    def message(payload: str) -> str:
        return dumps({"event": "media", "streamSid": STREAM_SID, "media": {"payload": payload}})

    def one_call(pcm: npt.NDArray[np.int16]) -> object:
        return message(encode(pcm))

    resampler = Resampler(TTS_RATE, LINE_RATE)
    b64 = base64.b64encode

    def kernels(pcm: npt.NDArray[np.int16]) -> object:
        return message(b64(encode_ulaw(resampler.process(pcm)).tobytes()).decode("ascii"))

    impls = [
        Impl("voxwire codec", via_codec),
        Impl("voxwire one call", one_call),
        Impl("voxwire kernels", kernels),
    ]
    if audioop is not None and soxr is not None:
        stream = soxr.ResampleStream(TTS_RATE, LINE_RATE, 1, dtype="int16", quality="HQ")
        lin2ulaw = audioop.lin2ulaw
        chunk = stream.resample_chunk

        def pure(pcm: npt.NDArray[np.int16]) -> object:
            return message(b64(lin2ulaw(chunk(pcm).tobytes(), 2)).decode("ascii"))

        impls.append(Impl("pure Python", pure))
    return impls


# --- correctness before timing ---------------------------------------------------------


def _as_pcm(result: object) -> npt.NDArray[np.int16]:
    if isinstance(result, list):  # the codec's outbound messages
        return np.concatenate([_payload_pcm(m) for m in result] or [np.zeros(0, np.int16)])
    if isinstance(result, str):
        return _payload_pcm(result)
    assert isinstance(result, np.ndarray)
    return result.astype(np.int16, copy=False)


def _payload_pcm(message: str) -> npt.NDArray[np.int16]:
    raw = base64.b64decode(json.loads(message)["media"]["payload"], validate=True)
    return decode_ulaw(np.frombuffer(raw, dtype=np.uint8))


def _aligned_correlation(a: npt.NDArray[np.int16], b: npt.NDArray[np.int16]) -> float:
    """Best normalised correlation of two signals over lags up to 10 ms at 48 kHz."""
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    best = 0.0
    for lag in range(-480, 481):
        xs = x[max(lag, 0) :]
        ys = y[max(-lag, 0) :]
        n = min(len(xs), len(ys)) - 480
        if n <= 0:
            continue
        xs, ys = xs[:n], ys[:n]
        den = float(np.sqrt(np.dot(xs, xs) * np.dot(ys, ys)))
        if den > 0:
            best = max(best, float(np.dot(xs, ys)) / den)
    return best


def check(direction: str, pool: list[Any], fresh: Callable[[], list[Impl]]) -> None:
    """Run every implementation over the first messages of the pool on new streams."""
    outputs = {impl.name: [_as_pcm(impl.fn(item)) for item in pool[:50]] for impl in fresh()}
    ref = np.concatenate(outputs["voxwire kernels"])
    for name in ("voxwire one call", "voxwire codec"):
        got = np.concatenate(outputs[name])
        if not np.array_equal(got, ref):
            raise AssertionError(f"{direction}: {name} differs from the step-by-step kernels")
    if "pure Python" in outputs:
        peer = np.concatenate(outputs["pure Python"])
        corr = _aligned_correlation(ref, peer)
        if corr < 0.999:
            raise AssertionError(f"{direction}: pure-Python output correlates at {corr:.4f}")


def _table(title: str, impls: list[Impl], pool: list[Any], rounds: int, notes: list[str]) -> Table:
    t = time_interleaved(impls, pool, batch=64, rounds=rounds)
    med = {name: float(np.median(v)) for name, v in t.items()}
    p90 = {name: float(np.percentile(v, 90)) for name, v in t.items()}
    peer = med.get("pure Python")
    rows = [
        [
            name,
            f"{med[name]:.0f}",
            f"{p90[name]:.0f}",
            fmt_ratio(med[name] / peer) if peer else "-",
        ]
        for name in med
    ]
    return Table(
        title=title,
        columns=["implementation", "ns/message", "p90 batch", "vs pure Python"],
        rows=rows,
        notes=notes,
    )


def _entry_point_table(
    messages: list[str], chunks: list[npt.NDArray[np.int16]], rounds: int
) -> Table:
    decoder = MediaDecoder("mulaw", LINE_RATE, PIPELINE_RATE)
    encoder = MediaEncoder("mulaw", TTS_RATE, LINE_RATE)
    payloads = [json.loads(m)["media"]["payload"] for m in messages]
    rows = []
    for label, pool, fast, twin in (
        ("decode (216 chars -> 320 samples)", payloads, decoder.decode, decoder._decode_pybind11),
        ("encode (480 samples -> 216 chars)", chunks, encoder.encode, encoder._encode_pybind11),
    ):
        t = time_interleaved(
            [Impl("fastcall", fast), Impl("pybind11", twin)], list(pool), batch=64, rounds=rounds
        )
        f = float(np.median(t["fastcall"]))
        p = float(np.median(t["pybind11"]))
        rows.append([label, f"{f:.0f}", f"{p:.0f}", f"{p - f:.0f}"])
    return Table(
        title="Media path entry point: METH_FASTCALL method vs the same call through pybind11",
        columns=["call", "fastcall ns", "pybind11 ns", "difference ns"],
        rows=rows,
        notes=["the pybind11 twins are _decode_pybind11 / _encode_pybind11 (not public)"],
    )


def run(quick: bool = False) -> list[Table]:
    """Time both directions per message; return the inbound, outbound and entry-point tables."""
    rng = np.random.default_rng()
    audioop = _load("audioop")
    soxr = _load("soxr")
    count = 1024 if quick else 4096
    rounds = 40 if quick else 300
    messages = inbound_messages(rng, count)
    chunks = tts_chunks(rng, count)
    notes = [environment_note()]
    if audioop is None:
        notes.append("audioop not installed (Python 3.13+: pip install audioop-lts): skipped")
    if soxr is None:
        notes.append("soxr not installed (pip install soxr): pure-Python path skipped")

    check("inbound", messages, lambda: inbound_implementations(audioop, soxr))
    check("outbound", chunks, lambda: outbound_implementations(audioop, soxr))
    inbound = inbound_implementations(audioop, soxr)
    outbound = outbound_implementations(audioop, soxr)
    return [
        _table(
            "Twilio media in: JSON message, 20 ms 8 kHz mu-law -> 16 kHz PCM16, per message",
            inbound,
            messages,
            rounds,
            notes,
        ),
        _table(
            "Twilio media out: 20 ms 24 kHz PCM16 -> JSON message, 8 kHz mu-law, per message",
            outbound,
            chunks,
            rounds,
            notes,
        ),
        _entry_point_table(messages, chunks, rounds),
    ]
