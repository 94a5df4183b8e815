"""Automatic gain control for inbound speech, with a limiter that never clips.

A native kernel (C++, ``voxwire::agc``) brings the caller's speech to a target level:
callers arrive at every level (a quiet handset, a loud speakerphone, a line that drifts)
and the speech recogniser and the VAD after it work best on a steady one.

* **Speech-gated.** Every 10 ms frame goes through voxwire's VAD; only speech moves the
  gain. Pauses, line noise and silence hold it where the last speech left it, so the noise
  between words is never lifted above its level next to the speech (no pumping).
* **Speech-suited dynamics.** The level is the mean power of the speech heard over a
  window of ``level_window_s`` of speech; the gain follows it at most ``fall_db_per_s``
  down (a louder talker) and ``rise_db_per_s`` up (a quieter one), as a smooth ramp.
* **A limiter that never clips.** A per-sample peak limiter with instant attack keeps
  every output sample within ``ceiling_dbfs``, for any input and any settings.
* **No latency.** Each output sample depends only on the input up to that sample
  (``Agc.latency == 0.0``), and the output is the same however the input is chunked.

Levels are dBFS: RMS relative to a full-scale square wave, so a full-scale sine is -3 dBFS.

>>> import numpy as np, voxwire
>>> from voxwire.agc import Agc
>>> agc = Agc(16000)
>>> agc.latency
0.0
>>> quiet = np.zeros(320, dtype=np.int16)
>>> len(agc.process(quiet)), agc.gain_db
(320, 0.0)

Defaults
--------
``target_dbfs=-26`` (the nominal active speech level of telephony), ``max_gain_db=30``,
``min_gain_db=-20``, ``initial_gain_db=0``, ``ceiling_dbfs=-1``, ``rise_db_per_s=10``,
``fall_db_per_s=40``, ``level_window_s=0.5``, ``limiter_release_ms=50``,
``vad_sensitivity=0.5``. See ``docs/agc.md`` for the measurements behind them.
"""

from __future__ import annotations

from typing import Final, overload

import numpy as np

from voxwire import _core
from voxwire._types import PCM as PCM

__all__ = ["RATES", "Agc"]

RATES: Final = (8000, 16000, 24000, 32000, 48000)
"""Sample rates the gain control accepts, in Hz."""

BytesLike = bytes | bytearray | memoryview


class Agc:
    """Streaming automatic gain control for one audio stream.

    Parameters
    ----------
    rate : int
        Sample rate in Hz: 8000, 16000, 24000, 32000 or 48000.
    target_dbfs : float
        Speech level aimed at, -40 to -6 dBFS (default -26).
    max_gain_db : float
        Largest gain, 0 to 60 dB (default 30).
    min_gain_db : float
        Smallest gain (most attenuation), -40 to 0 dB (default -20).
    initial_gain_db : float
        Gain before any speech was heard, within the two bounds (default 0).
    ceiling_dbfs : float
        Limiter ceiling, -20 to 0 dBFS (default -1): no output sample's magnitude exceeds
        ``32768 * 10 ** (ceiling_dbfs / 20)`` (rounded down, at most 32767).
    rise_db_per_s : float
        Fastest gain increase per second of audio, up to 100 (default 10; four times that
        in the first second of speech, so the first words converge).
    fall_db_per_s : float
        Fastest gain decrease per second of audio, up to 200 (default 40).
    level_window_s : float
        Seconds of speech the level is averaged over, 0.1 to 10 (default 0.5).
    limiter_release_ms : float
        Limiter release time constant, 1 to 1000 ms (default 50).
    vad_sensitivity : float
        Sensitivity of the VAD that gates adaptation, 0 to 1 (default 0.5; see
        :class:`voxwire.Vad`).

    Raises
    ------
    ValueError
        For a rate or setting outside the ranges above.

    Notes
    -----
    Samples are mono native-endian PCM16: a 1-D ``int16`` numpy array or any bytes-like
    object. A float array raises ``TypeError``. Not thread-safe: one stream, one thread at
    a time.
    """

    __slots__ = ("_native", "_rate")

    latency: Final = 0.0
    """Seconds of audio the gain control holds back: none."""

    def __init__(
        self,
        rate: int,
        *,
        target_dbfs: float = -26.0,
        max_gain_db: float = 30.0,
        min_gain_db: float = -20.0,
        initial_gain_db: float = 0.0,
        ceiling_dbfs: float = -1.0,
        rise_db_per_s: float = 10.0,
        fall_db_per_s: float = 40.0,
        level_window_s: float = 0.5,
        limiter_release_ms: float = 50.0,
        vad_sensitivity: float = 0.5,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int):
            raise TypeError(f"Agc: rate must be an int, got {type(rate).__name__}")
        if rate not in RATES:
            raise ValueError(
                f"Agc: rate must be one of {', '.join(map(str, RATES))} Hz, got {rate}"
            )
        self._rate = rate
        self._native = _core.AgcCore(
            rate,
            target_dbfs=float(target_dbfs),
            max_gain_db=float(max_gain_db),
            min_gain_db=float(min_gain_db),
            initial_gain_db=float(initial_gain_db),
            ceiling_dbfs=float(ceiling_dbfs),
            rise_db_per_s=float(rise_db_per_s),
            fall_db_per_s=float(fall_db_per_s),
            level_window_s=float(level_window_s),
            limiter_release_ms=float(limiter_release_ms),
            vad_sensitivity=float(vad_sensitivity),
        )

    @property
    def rate(self) -> int:
        """Sample rate in Hz."""
        return self._rate

    @property
    def gain_db(self) -> float:
        """Gain the next sample gets before the limiter, dB."""
        return float(self._native.gain_db)

    @property
    def target_gain_db(self) -> float:
        """Gain the current 10 ms frame ramps to, dB."""
        return float(self._native.target_gain_db)

    @property
    def limiter_gain_db(self) -> float:
        """The limiter's current gain, dB (0 when it is not acting)."""
        return float(self._native.limiter_gain_db)

    @property
    def speech_level_dbfs(self) -> float:
        """Estimated speech level of the input, dBFS (``-inf`` before any speech)."""
        return float(self._native.speech_level_dbfs)

    @property
    def ceiling(self) -> int:
        """Largest output magnitude the limiter lets through."""
        return int(self._native.ceiling)

    @property
    def hold(self) -> bool:
        """While True the gain is applied but nothing moves it (for audio that is not the
        caller's own speech, such as the agent's reply coming back). The limiter still
        works."""
        return bool(self._native.hold)

    @hold.setter
    def hold(self, value: bool) -> None:
        self._native.hold = bool(value)

    @property
    def samples(self) -> int:
        """Samples processed since the last reset."""
        return int(self._native.samples)

    @property
    def speech_frames(self) -> int:
        """10 ms frames taken as speech (and used for the level) since the last reset."""
        return int(self._native.speech_frames)

    @property
    def limited_samples(self) -> int:
        """Samples whose gain the limiter reduced since the last reset."""
        return int(self._native.limited_samples)

    @overload
    def process(self, pcm: PCM, *, out: PCM | None = None) -> PCM: ...
    @overload
    def process(self, pcm: BytesLike, *, out: None = None) -> bytes: ...
    def process(self, pcm: PCM | BytesLike, *, out: PCM | None = None) -> PCM | bytes:
        """Gain any number of samples; return as many.

        An ``int16`` array gives an ``int16`` array (written into ``out`` when given, which
        may be ``pcm`` itself); bytes-like input gives ``bytes``.
        """
        if isinstance(pcm, np.ndarray):
            try:
                return self._native.process(pcm, out=out)
            except TypeError:
                raise TypeError(
                    f"Agc.process: expected a C-contiguous 1-D int16 array or bytes, got "
                    f"dtype {pcm.dtype}"
                ) from None
        if out is not None:
            raise TypeError("Agc.process: out= needs an int16 array input")
        try:
            view = memoryview(pcm)
        except TypeError:
            raise TypeError(
                f"Agc.process: expected an int16 numpy array or a bytes-like object, got "
                f"{type(pcm).__name__}"
            ) from None
        if view.nbytes % 2:
            raise ValueError(
                f"Agc.process: PCM16 input must have an even number of bytes, got {view.nbytes}"
            )
        samples = np.frombuffer(view.cast("B"), dtype=np.int16)
        return self._native.process(samples).tobytes()

    def reset(self) -> None:
        """Start a new stream: the gain, level, limiter, VAD, hold and counters as at
        construction."""
        self._native.reset()

    def __repr__(self) -> str:
        return (
            f"Agc(rate={self._rate}, gain_db={self.gain_db:.1f}, "
            f"speech_level_dbfs={self.speech_level_dbfs:.1f})"
        )
