"""Pitch-synchronous time-stretching of decoded PCM16 frames (WSOLA-style).

>>> import numpy as np
>>> from voxwire.stretch import TimeStretcher
>>> t = np.arange(160) / 8000
>>> frame = (6000 * np.sin(2 * np.pi * 125 * t)).astype(np.int16)   # 125 Hz: 64 samples
>>> ts = TimeStretcher(8000)
>>> ts.shorten(frame).period, len(ts.shorten(frame).pcm)
(64, 96)
>>> len(ts.lengthen(frame).pcm)
224

A jitter buffer that must lower or raise its delay in the middle of speech removes or
repeats one pitch period of a voiced frame instead of skipping or inserting a whole frame:
:class:`voxwire.jitter.JitterBuffer` with ``time_stretch=True`` says when, and
:class:`Playout` does it between the buffer and a fixed-size output
(:class:`voxwire.protocols.rtp_session.RtpSession` uses it). The period is the lag of the
best normalised cross-correlation over ``min_period_ms`` .. ``max_period_ms`` (at most half
the frame); a frame whose best correlation is below ``min_correlation`` (unvoiced,
transient) or whose level is below ``quiet_level`` is returned unchanged with period 0.
The copies are joined by a cross-fade one period long; the result starts with the frame's
first sample and ends with its last, so it splices into the neighbouring audio. A quiet or
noise-like frame has no period: :meth:`TimeStretcher.cut` removes any number of samples
from it instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire._types import PCM as PCM
from voxwire.jitter import JitterBuffer, PlayoutUnit

__all__ = ["Playout", "Stretched", "TimeStretcher"]


@dataclass(frozen=True, slots=True)
class Stretched:
    """The result of :meth:`TimeStretcher.shorten` or :meth:`TimeStretcher.lengthen`."""

    pcm: npt.NDArray[np.int16]
    period: int
    """Samples removed or inserted; 0 when the frame was left as it was."""
    correlation: float
    """The best normalised correlation found (how periodic the frame is)."""


class TimeStretcher:
    """Removes or repeats one pitch period of a voiced frame.

    Parameters
    ----------
    sample_rate : int
        8000 to 48000 Hz.
    max_frame_ms : float
        Longest frame accepted (default 40 ms).
    min_period_ms, max_period_ms : float
        Pitch periods searched (default 2.5 to 10 ms: 400 to 100 Hz).
    min_correlation : float
        Normalised correlation a frame needs to be changed (default 0.85).
    quiet_level : int
        Mean absolute sample at or below which a frame is left alone (default 64,
        about -54 dBFS): silence is for the jitter buffer to skip or repeat whole.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        max_frame_ms: float = 40.0,
        min_period_ms: float = 2.5,
        max_period_ms: float = 10.0,
        min_correlation: float = 0.85,
        quiet_level: int = 64,
    ) -> None:
        self.sample_rate = sample_rate
        self._s = _core.Stretcher(
            sample_rate,
            int(sample_rate * max_frame_ms / 1000),
            min_period_ms,
            max_period_ms,
            min_correlation,
            quiet_level,
        )

    def shorten(self, frame: npt.NDArray[np.int16]) -> Stretched:
        """``frame`` less one pitch period (or unchanged; see the module documentation)."""
        return Stretched(*self._s.shorten(_check(frame)))

    def lengthen(self, frame: npt.NDArray[np.int16]) -> Stretched:
        """``frame`` plus one repeated pitch period (or unchanged)."""
        return Stretched(*self._s.lengthen(_check(frame)))

    def cut(self, frame: npt.NDArray[np.int16], count: int) -> Stretched:
        """``frame`` less ``count`` samples (at most half of it) if it is quiet or
        noise-like (no period: best correlation below 0.5), joined by a 2.5 ms cross-fade;
        else unchanged (``period`` 0). For the part of a frame that period-sized steps
        leave over."""
        return Stretched(*self._s.cut(_check(frame), count))

    @property
    def max_period(self) -> int:
        """Longest period searched, samples."""
        return self._s.max_period


def _check(frame: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
        raise TypeError(f"TimeStretcher: expected a 1-D numpy int16 array, got {frame!r:.60}")
    return np.ascontiguousarray(frame)


class Playout:
    """Fixed-size frames of audio out of a ``time_stretch=True`` jitter buffer.

    It holds decoded audio in a queue and pulls the buffer whenever the queue holds less
    than one frame, always at the current time, so the buffer's view of the timing stays
    exact. ``decode`` turns a unit into PCM and returns it with the unit as played (the
    caller may relabel it, say ``concealed`` when its payload would not decode):

    * a unit asking ``"shorten"`` loses one pitch period (a noise-like one, half a frame),
      so the next unit is pulled in the same call and the stream advances a frame, as a
      skipped frame would; the part of a frame left in the queue (extra latency) is
      drained from the following frames: a period from voiced ones while the queue still
      holds a frame after it, the whole rest from the first quiet or noise-like one;
    * a unit asking ``"lengthen"`` gains one period; once the queue holds a whole frame a
      call pulls nothing, and the stream falls back a frame, as an inserted one would;
    * a frame that cannot be stretched (unvoiced, quiet) plays as it is; the buffer asks
      again and, after a while, falls back to whole frames at quiet frames.

    Each stretch is reported to the buffer (:meth:`JitterBuffer.note_stretch`), so its
    removed and inserted sample counts include them.
    """

    def __init__(
        self,
        buffer: JitterBuffer,
        decode: Callable[[PlayoutUnit], tuple[PlayoutUnit, PCM]],
        frame_samples: int,
        stretcher: TimeStretcher,
    ) -> None:
        if frame_samples <= 0:
            raise ValueError(f"Playout: frame_samples must be > 0, got {frame_samples}")
        self.buffer = buffer
        self.decode = decode
        self.frame_samples = frame_samples
        self.stretcher = stretcher
        self._parts: deque[tuple[PlayoutUnit, PCM]] = deque()
        self._held = 0
        self.shortened = 0
        """Frames shortened by a period (on request or to drain the queue)."""
        self.lengthened = 0
        """Frames lengthened by a period."""

    @property
    def held(self) -> int:
        """Samples decoded and not yet handed out (the queue's extra latency)."""
        return self._held

    def pull(self, now: float) -> tuple[PCM, PlayoutUnit, list[tuple[PlayoutUnit, int]]]:
        """The next frame of audio at ``now`` (seconds).

        Returns the PCM, the unit whose audio it starts with, and every unit pulled for
        it with the sample offset at which its audio starts in this frame.
        """
        n = self.frame_samples
        started: list[tuple[PlayoutUnit, int]] = []
        while self._held < n:
            unit, pcm = self.decode(self.buffer.pull(now))
            if len(pcm) == 0:
                raise ValueError(f"Playout: decode returned no audio for {unit}")
            pcm = self._stretch(unit, pcm)
            started.append((unit, self._held))
            self._parts.append((unit, pcm))
            self._held += len(pcm)
        first = self._parts[0][0]
        out = np.empty(n, dtype=np.int16)
        filled = 0
        while filled < n:
            unit, pcm = self._parts[0]
            take = min(n - filled, len(pcm))
            out[filled : filled + take] = pcm[:take]
            filled += take
            if take == len(pcm):
                self._parts.popleft()
            else:
                self._parts[0] = (unit, pcm[take:])
        self._held -= n
        return out, first, started

    def _stretch(self, unit: PlayoutUnit, pcm: PCM) -> PCM:
        if unit.kind != "normal" or len(pcm) > 2 * self.frame_samples:
            return pcm
        if unit.stretch == "shorten" or (unit.stretch == "none" and self._held > 0):
            r = self.stretcher.shorten(pcm)
            # Draining (no request) must not leave less than a frame: that would pull the
            # next frame early and move the stream, which only the buffer decides.
            if r.period and (
                unit.stretch == "shorten" or self._held + len(r.pcm) >= self.frame_samples
            ):
                return self._shortened(r)
            if not r.period:  # no period: quiet or noise-like, or too short
                count = (
                    len(pcm) // 2 if unit.stretch == "shorten" else min(self._held, len(pcm) // 2)
                )
                c = self.stretcher.cut(pcm, count)
                if c.period:
                    return self._shortened(c)
        elif unit.stretch == "lengthen":
            r = self.stretcher.lengthen(pcm)
            if r.period:
                self.buffer.note_stretch(r.period)
                self.lengthened += 1
                return r.pcm
        return pcm

    def _shortened(self, r: Stretched) -> PCM:
        self.buffer.note_stretch(-r.period)
        self.shortened += 1
        return r.pcm
