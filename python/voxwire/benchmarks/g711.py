"""G.711 encode/decode: voxwire against audioop and a numpy lookup table.

Two workloads, both on fresh random speech-like data (a pool of distinct buffers whose
level varies from block to block, so every segment of the companding curve is hit):

* one 20 ms telephony frame (160 samples), bytes in -> bytes out, per-call median;
* 1 s blocks at 8 kHz (8,000 samples), throughput in Msamples/s.

audioop is the standard library's (Python <= 3.12) or the ``audioop-lts`` package on
3.13+. The per-frame table also times the same mu-law kernel behind a pybind11 dispatch,
which is how voxwire chose its entry point for per-frame calls.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire.benchmarks._harness import Impl, Table, environment_note, fmt_ratio, time_interleaved
from voxwire.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

__all__ = ["run", "speech_like", "talk_and_pauses"]

FRAME = 160  # 20 ms at 8 kHz
BLOCK = 8000  # 1 s at 8 kHz

# Goals, as ratios to audioop in the same run (lower is better for per-frame time,
# higher for block throughput).
FRAME_ENCODE_MAX = 0.25
FRAME_DECODE_MAX = 1.0
BLOCK_ENCODE_MIN = 20.0
BLOCK_DECODE_MIN = 2.0


def _load_audioop() -> ModuleType | None:
    # The stdlib module (<= 3.12) warns that it is deprecated; audioop-lts (3.13+) does not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


def speech_like(rng: np.random.Generator, n_buffers: int, length: int) -> list[bytes]:
    """Return distinct PCM16 buffers: Laplacian samples at a random level per buffer."""
    levels = np.exp(rng.uniform(np.log(30.0), np.log(12000.0), size=(n_buffers, 1)))
    x = rng.laplace(0.0, 1.0, size=(n_buffers, length)) * levels
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return [row.tobytes() for row in pcm]


def talk_and_pauses(rng: np.random.Generator, n_buffers: int, length: int) -> list[bytes]:
    """Return PCM16 buffers that alternate talk and pauses, 0.2-0.8 s each (at 8 kHz).

    Talk is Laplacian at a level of 300-3000 (about -40 to -20 dBFS RMS); a pause is line
    noise at a level of 2-10. audioop's encoders search the segment from the bottom, so they
    are fastest on quiet samples: this is the workload where its ratio to voxwire is lowest.
    """
    out = []
    for _ in range(n_buffers):
        parts: list[npt.NDArray[np.float64]] = []
        total = 0
        talk = bool(rng.integers(2))
        while total < length:
            n = int(rng.integers(1600, 6400))
            level = rng.uniform(300.0, 3000.0) if talk else rng.uniform(2.0, 10.0)
            parts.append(rng.laplace(0.0, level, size=n))
            total += n
            talk = not talk
        x = np.concatenate(parts)[:length]
        out.append(np.clip(np.rint(x), -32768, 32767).astype(np.int16).tobytes())
    return out


def _lut_codecs() -> dict[str, Callable[[bytes], bytes]]:
    """The numpy baseline: one fancy-indexing lookup per call, tables built with voxwire."""
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    # Index by the sample's bit pattern read as uint16.
    order = every_sample.view(np.uint16).argsort()
    ulaw_lut = np.asarray(encode_ulaw(every_sample))[order]
    alaw_lut = np.asarray(encode_alaw(every_sample))[order]
    every_code = np.arange(256, dtype=np.uint8)
    ulaw_dec = np.asarray(decode_ulaw(every_code))
    alaw_dec = np.asarray(decode_alaw(every_code))

    def enc(lut: npt.NDArray[np.uint8]) -> Callable[[bytes], bytes]:
        return lambda b: lut[np.frombuffer(b, dtype=np.uint16)].tobytes()

    def dec(lut: npt.NDArray[np.int16]) -> Callable[[bytes], bytes]:
        return lambda b: lut[np.frombuffer(b, dtype=np.uint8)].tobytes()

    return {
        "ulaw_encode": enc(ulaw_lut),
        "alaw_encode": enc(alaw_lut),
        "ulaw_decode": dec(ulaw_dec),
        "alaw_decode": dec(alaw_dec),
    }


def _ops(audioop: ModuleType | None) -> list[tuple[str, str, Impl, Impl | None]]:
    """(label, lut key, voxwire impl, audioop impl) for the four operations."""

    def peer(fn_name: str) -> Impl | None:
        return None if audioop is None else Impl("audioop", getattr(audioop, fn_name), (2,))

    return [
        ("mu-law encode", "ulaw_encode", Impl("voxwire", encode_ulaw), peer("lin2ulaw")),
        ("mu-law decode", "ulaw_decode", Impl("voxwire", decode_ulaw), peer("ulaw2lin")),
        ("A-law encode", "alaw_encode", Impl("voxwire", encode_alaw), peer("lin2alaw")),
        ("A-law decode", "alaw_decode", Impl("voxwire", decode_alaw), peer("alaw2lin")),
    ]


def _check(
    audioop: ModuleType | None, pcm: list[bytes], luts: dict[str, Callable[[bytes], bytes]]
) -> None:
    """Refuse to time anything that gives the wrong bytes."""
    for buf in pcm[:64]:
        u, a = encode_ulaw(buf), encode_alaw(buf)
        if luts["ulaw_encode"](buf) != u or luts["alaw_encode"](buf) != a:
            raise AssertionError("numpy lookup baseline disagrees with voxwire")
        if luts["ulaw_decode"](u) != decode_ulaw(u) or luts["alaw_decode"](a) != decode_alaw(a):
            raise AssertionError("numpy lookup baseline disagrees with voxwire")
        if _core._pybind11_encode_ulaw(buf) != u or _core._pybind11_decode_ulaw(u) != decode_ulaw(
            u
        ):
            raise AssertionError("pybind11 twin disagrees with voxwire")
        if audioop is not None:
            ok = (
                audioop.lin2ulaw(buf, 2) == encode_ulaw(buf, mode="audioop")
                and audioop.lin2alaw(buf, 2) == a
                and audioop.ulaw2lin(u, 2) == decode_ulaw(u)
                and audioop.alaw2lin(a, 2) == decode_alaw(a)
            )
            if not ok:
                raise AssertionError("voxwire disagrees with audioop")


def _verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def run(quick: bool = False) -> list[Table]:
    """Time G.711 per frame and per 1 s block; return the two tables."""
    rng = np.random.default_rng()
    audioop = _load_audioop()
    luts = _lut_codecs()
    frames = speech_like(rng, 1024 if quick else 4096, FRAME)
    blocks = speech_like(rng, 24 if quick else 64, BLOCK)
    talk = talk_and_pauses(rng, 24 if quick else 64, BLOCK)
    _check(audioop, frames + blocks + talk, luts)
    frame_codes = {
        "ulaw": [encode_ulaw(b) for b in frames],
        "alaw": [encode_alaw(b) for b in frames],
    }
    block_codes = {
        "ulaw": [encode_ulaw(b) for b in blocks],
        "alaw": [encode_alaw(b) for b in blocks],
    }
    rounds_frame, rounds_block = (60, 30) if quick else (300, 120)

    notes = [environment_note(), f"voxwire kernels: {_core._g711_isa()} (chosen at run time)"]
    if audioop is None:
        notes.append(
            "audioop not installed (Python 3.13+: pip install audioop-lts): ratios skipped"
        )

    frame_rows: list[list[str]] = []
    block_rows: list[list[str]] = []
    for label, key, vox, peer in _ops(audioop):
        law, op = key.split("_")
        fpool: list[object] = list(frames if op == "encode" else frame_codes[law])
        bpool: list[object] = list(blocks if op == "encode" else block_codes[law])
        impls = [vox, Impl("numpy LUT", luts[key])]
        if key in ("ulaw_encode", "ulaw_decode"):
            twin = _core._pybind11_encode_ulaw if op == "encode" else _core._pybind11_decode_ulaw
            impls.append(Impl("pybind11", twin))
        if peer is not None:
            impls.append(peer)

        t = time_interleaved(impls, fpool, batch=64, rounds=rounds_frame)
        med = {name: float(np.median(v)) for name, v in t.items()}
        goal = FRAME_ENCODE_MAX if op == "encode" else FRAME_DECODE_MAX
        ratio = med["voxwire"] / med["audioop"] if "audioop" in med else float("nan")
        frame_rows.append(
            [
                label,
                f"{med['voxwire']:.0f}",
                f"{med['pybind11']:.0f}" if "pybind11" in med else "-",
                f"{med['numpy LUT']:.0f}",
                f"{med['audioop']:.0f}" if "audioop" in med else "-",
                fmt_ratio(ratio) if "audioop" in med else "-",
                f"<= {goal:g}x: {_verdict(ratio <= goal)}" if "audioop" in med else "-",
            ]
        )

        t = time_interleaved(
            impls[:2] + ([peer] if peer else []), bpool, batch=4, rounds=rounds_block
        )
        msps = {name: BLOCK / float(np.median(v)) * 1e3 for name, v in t.items()}
        goal = BLOCK_ENCODE_MIN if op == "encode" else BLOCK_DECODE_MIN
        speedup = msps["voxwire"] / msps["audioop"] if "audioop" in msps else float("nan")
        block_rows.append(
            [
                label,
                f"{msps['voxwire']:.0f}",
                f"{msps['numpy LUT']:.0f}",
                f"{msps['audioop']:.0f}" if "audioop" in msps else "-",
                fmt_ratio(speedup) if "audioop" in msps else "-",
                f">= {goal:g}x: {_verdict(speedup >= goal)}" if "audioop" in msps else "-",
            ]
        )

    # The encoders again on talk and pauses (see talk_and_pauses).
    for label, key, vox, peer in _ops(audioop):
        if not key.endswith("encode"):
            continue
        impls = [vox, Impl("numpy LUT", luts[key])] + ([peer] if peer else [])
        t = time_interleaved(impls, list(talk), batch=4, rounds=rounds_block)
        msps = {name: BLOCK / float(np.median(v)) * 1e3 for name, v in t.items()}
        speedup = msps["voxwire"] / msps["audioop"] if "audioop" in msps else float("nan")
        block_rows.append(
            [
                f"{label}, talk + pauses",
                f"{msps['voxwire']:.0f}",
                f"{msps['numpy LUT']:.0f}",
                f"{msps['audioop']:.0f}" if "audioop" in msps else "-",
                fmt_ratio(speedup) if "audioop" in msps else "-",
                f">= {BLOCK_ENCODE_MIN:g}x: {_verdict(speedup >= BLOCK_ENCODE_MIN)}"
                if "audioop" in msps
                else "-",
            ]
        )

    frame_table = Table(
        title="G.711, one 20 ms frame (160 samples, bytes in -> bytes out), median ns per call",
        columns=[
            "operation",
            "voxwire",
            "pybind11",
            "numpy LUT",
            "audioop",
            "voxwire/audioop",
            "goal met",
        ],
        rows=frame_rows,
        notes=[
            "fresh data every call; times include the benchmark loop's own ~30 ns per call",
            "pybind11: the same kernel behind a pybind11 dispatch instead of voxwire's "
            "fast-call entry point",
            *notes,
        ],
    )
    block_table = Table(
        title="G.711, 1 s blocks (8,000 samples), Msamples/s (median)",
        columns=["operation", "voxwire", "numpy LUT", "audioop", "voxwire vs audioop", "goal met"],
        rows=block_rows,
        notes=[
            "talk + pauses: 0.2-0.8 s of talk (-40 to -20 dBFS) alternating with line noise; "
            "the other rows: one level per block, 30-12000",
            *notes,
        ],
    )
    return [frame_table, block_table]
