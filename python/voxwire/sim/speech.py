"""Speech for the simulated caller: espeak-ng phrases, WAV files, and where speech is.

Phrases are synthesized with espeak-ng from the ``espeakng-loader`` wheel, through the
same ctypes binding the VAD corpus uses (:mod:`voxwire.benchmarks.corpus`). Each phrase
is spoken by a pristine instance of the library, so the same text and settings give the
same samples whatever the process synthesized before.
"""

from __future__ import annotations

import functools
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voxwire._types import PCM
from voxwire.resample import resample

__all__ = [
    "DEFAULT_PHRASE",
    "SpeechUnavailable",
    "read_wav",
    "speech_bounds",
    "synthesize",
    "word_errors",
]


DEFAULT_PHRASE = "This is the voxwire echo test on a telephone line."
"""What the simulated caller says when given neither a WAV file nor a text."""

_BLOCK_S = 0.01


class SpeechUnavailable(RuntimeError):
    """espeak-ng (the ``espeakng-loader`` wheel) is not installed."""


@functools.cache
def _engine() -> Any:
    from voxwire.benchmarks.corpus import CorpusUnavailable, _Espeak, espeak_available

    if not espeak_available():
        raise SpeechUnavailable(
            "generating speech needs espeak-ng: pip install espeakng-loader "
            "(or give a WAV file with --say)"
        )
    try:
        return _Espeak(fresh=True)
    except CorpusUnavailable as exc:
        raise SpeechUnavailable(str(exc)) from None


def synthesize(
    text: str, rate: int, *, voice: str = "en", wpm: int = 165, pitch: int = 50, seed: int = 1
) -> PCM:
    """``text`` spoken by espeak-ng, as mono PCM16 at ``rate``, leading and trailing
    silence trimmed and the level set to a peak of -6 dBFS. The same arguments always give
    the same samples."""
    engine = _engine()
    raw = engine.say(text, voice, wpm, pitch, seed)
    pcm = resample(np.ascontiguousarray(raw, dtype=np.int16), engine.rate, rate)
    return _normalize(_trim(pcm, rate))


def read_wav(path: str | Path, rate: int) -> PCM:
    """A 16-bit PCM WAV file as mono PCM16 at ``rate`` (channels averaged, resampled)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        channels = wav.getnchannels()
        src = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).round()
    pcm = np.ascontiguousarray(data, dtype=np.int16)
    if len(pcm) == 0:
        raise ValueError(f"{path}: no audio")
    return resample(pcm, src, rate) if src != rate else pcm


def write_wav(path: str | Path, pcm: PCM, rate: int) -> None:
    """Write mono PCM16 to a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2").tobytes())


def _block_rms(pcm: PCM, rate: int) -> npt.NDArray[np.float64]:
    n = max(1, round(_BLOCK_S * rate))
    blocks = len(pcm) // n
    x = pcm[: blocks * n].astype(np.float64).reshape(blocks, n)
    rms: npt.NDArray[np.float64] = np.sqrt(np.mean(x * x, axis=1))
    return rms


def speech_bounds(pcm: PCM, rate: int, *, floor_db: float = -40.0) -> tuple[int, int]:
    """(first, one past the last) sample of speech: the 10 ms blocks whose RMS is within
    ``floor_db`` of the loudest block. ``(0, 0)`` for silence."""
    rms = _block_rms(pcm, rate)
    if len(rms) == 0 or rms.max() <= 0:
        return 0, 0
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    n = max(1, round(_BLOCK_S * rate))
    return int(loud[0]) * n, min(len(pcm), (int(loud[-1]) + 1) * n)


def _trim(pcm: PCM, rate: int) -> PCM:
    first, last = speech_bounds(pcm, rate, floor_db=-50.0)
    return pcm[first:last] if last > first else pcm


def _normalize(pcm: PCM) -> PCM:
    peak = int(np.abs(pcm.astype(np.int32)).max()) if len(pcm) else 0
    if peak == 0:
        return pcm
    gain = 32767 * 10 ** (-6 / 20) / peak
    return np.round(pcm.astype(np.float64) * gain).astype(np.int16)


def word_errors(said: Sequence[str], heard: Sequence[str]) -> int:
    """Word-level Levenshtein distance: the substitutions, insertions and deletions that
    turn ``said`` into ``heard`` (the numerator of a recogniser's word error rate)."""
    row = list(range(len(heard) + 1))
    for i, ref in enumerate(said, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(heard, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]
