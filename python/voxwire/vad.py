"""Voice activity detection: per-frame speech scores and utterance start/end events.

A native detector (C++, ``voxwire::vad``) splits each frame into octave bands, tracks a
noise floor per band by minimum statistics (it follows falling noise at once and rising
noise within about a second), and turns the band SNRs into a speech probability. Utterances
start after ``min_speech_ms`` of speech frames and end after ``hangover_ms`` without; both
events carry frame-exact timestamps. It adds no latency: every decision is about the frame
just given (``Vad.latency == 0.0``).

>>> import numpy as np, voxwire
>>> vad = voxwire.Vad(8000)                    # 20 ms frames of 160 samples
>>> silence = np.zeros(160, dtype=np.int16)
>>> vad.process(silence).speech
False
>>> t = np.arange(160) / 8000
>>> tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
>>> result = vad.process(tone)
>>> result.speech, result.event
(True, SpeechStart(sample=160, time=0.02, frame=1))

In asyncio code, feed whatever the transport delivers and act on the events:

.. code-block:: python

    for event in vad.feed(pcm):              # any number of samples; partial frames wait
        if isinstance(event, voxwire.SpeechStart):
            await agent.barge_in(at=event.time)
        else:
            await agent.end_of_turn(at=event.time)

Defaults
--------
``frame_ms=20``, ``sensitivity=0.5`` (the score reaches 0.5 when the two strongest speech
bands stand 0.4 dB above the spread that noise alone shows there), ``start_threshold=0.5``,
``stop_threshold=0.35``, ``hold_ms=80``, ``min_speech_ms=20`` (an utterance starts on
its first 20 ms of speech), ``hangover_ms=200``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from voxwire import _core

__all__ = ["SpeechEnd", "SpeechStart", "Vad", "VadBatch", "VadEvent", "VadFrame"]

RATES: Final = (8000, 16000, 24000, 32000, 48000)
"""Sample rates the detector accepts, in Hz."""
FRAME_MS: Final = (10, 20, 30)
"""Frame lengths the detector accepts, in ms."""

_SPEECH: Final = _core.VAD_SPEECH
_ACTIVE: Final = _core.VAD_ACTIVE
_START: Final = _core.VAD_START
_END: Final = _core.VAD_END
_STATES: Final = tuple((bool(f & _SPEECH), bool(f & _ACTIVE)) for f in range(16))
"""(speech, active) for every value of the native frame flags."""
_tuple_new: Final = tuple.__new__


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """An utterance started.

    Attributes
    ----------
    sample : int
        First sample of its first speech frame, counted from the last reset.
    time : float
        The same instant in seconds (``sample / rate``).
    frame : int
        Index of the frame whose processing produced the event (later than the frame
        holding ``sample`` when ``min_speech_ms`` spans several frames).
    """

    sample: int
    time: float
    frame: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """An utterance ended.

    Attributes
    ----------
    sample : int
        One past the last sample of its last speech frame, counted from the last reset.
    time : float
        The same instant in seconds (``sample / rate``).
    frame : int
        Index of the frame whose processing produced the event: ``hangover_ms`` after
        ``time``.
    """

    sample: int
    time: float
    frame: int


VadEvent = SpeechStart | SpeechEnd
"""An utterance event."""


class VadFrame(NamedTuple):
    """The outcome of one frame."""

    score: float
    """Speech probability in [0, 1]."""
    speech: bool
    """The frame decision (score against the start/stop thresholds, then the hold)."""
    active: bool
    """Inside an utterance after this frame."""
    event: VadEvent | None
    """The event this frame produced, if any (at most one per frame)."""


@dataclass(frozen=True)
class VadBatch:
    """The outcome of many frames (:meth:`Vad.process_batch`)."""

    scores: npt.NDArray[np.float32]
    """Speech probability per frame."""
    speech: npt.NDArray[np.bool_]
    """Frame decision per frame."""
    active: npt.NDArray[np.bool_]
    """Inside an utterance after each frame."""
    events: tuple[VadEvent, ...]
    """Every event, in order."""


class Vad:
    """Streaming voice activity detector for one audio stream.

    Parameters
    ----------
    rate : int
        Sample rate in Hz: 8000, 16000, 24000, 32000 or 48000.
    frame_ms : int
        Frame length: 10, 20 (default) or 30 ms.
    sensitivity : float
        The one knob, 0 to 1 (default 0.5). Higher detects quieter speech and lets more
        noise through: it moves the SNR of the two strongest speech bands (above the spread
        noise alone shows) at which the score reaches 0.5 from 2.4 dB (0) through 0.4 dB
        (0.5) to -1.6 dB (1, which takes nearly every frame of a noisy stream).
    start_threshold : float
        Score at which a non-speech frame becomes speech (default 0.5).
    stop_threshold : float
        Score below which a speech frame becomes non-speech (default 0.35); at most
        ``start_threshold``.
    hold_ms : int
        How long a speech frame decision holds after the score drops, 0 to 200 ms (default
        80), so the dips of stop closures and weak consonants inside a word stay speech.
        Only the per-frame decision is held: utterances end ``hangover_ms`` after the
        last frame that scored as speech.
    min_speech_ms : int
        Speech needed before an utterance starts, 0 to 1000 ms (default 20: one 20 ms
        frame, two 10 ms frames). Rounded to whole frames, at least one.
    hangover_ms : int
        Non-speech needed before an utterance ends, 0 to 500 ms (default 200). Rounded to
        whole frames.

    Raises
    ------
    ValueError
        For a rate, frame length or setting outside the ranges above.

    Notes
    -----
    Frames are mono native-endian PCM16: a 1-D ``int16`` numpy array (taken as is) or any
    bytes-like object. A float array raises ``TypeError``; a frame of the wrong length
    raises ``ValueError``. Not thread-safe: one stream, one thread at a time.
    """

    __slots__ = ("_frame_ms", "_native", "_pending", "_rate")

    latency: Final = 0.0
    """Seconds of audio the detector holds back before deciding: none."""

    def __init__(
        self,
        rate: int,
        frame_ms: int = 20,
        *,
        sensitivity: float = 0.5,
        start_threshold: float = 0.5,
        stop_threshold: float = 0.35,
        hold_ms: int = 80,
        min_speech_ms: int = 20,
        hangover_ms: int = 200,
    ) -> None:
        for name, value in (
            ("rate", rate),
            ("frame_ms", frame_ms),
            ("hold_ms", hold_ms),
            ("min_speech_ms", min_speech_ms),
            ("hangover_ms", hangover_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Vad: {name} must be an int, got {type(value).__name__}")
        if rate not in RATES:
            raise ValueError(
                f"Vad: rate must be one of {', '.join(map(str, RATES))} Hz, got {rate}"
            )
        if frame_ms not in FRAME_MS:
            raise ValueError(
                f"Vad: frame_ms must be one of {', '.join(map(str, FRAME_MS))}, got {frame_ms}"
            )
        self._rate = rate
        self._frame_ms = frame_ms
        self._native = _core.VadDetector(
            rate,
            frame_ms,
            sensitivity=float(sensitivity),
            start_threshold=float(start_threshold),
            stop_threshold=float(stop_threshold),
            hold_ms=hold_ms,
            min_speech_ms=min_speech_ms,
            hangover_ms=hangover_ms,
        )
        self._pending = np.zeros(0, dtype=np.int16)

    @property
    def rate(self) -> int:
        """Sample rate in Hz."""
        return self._rate

    @property
    def frame_ms(self) -> int:
        """Frame length in ms."""
        return self._frame_ms

    @property
    def frame_samples(self) -> int:
        """Samples per frame."""
        return int(self._native.frame_samples)

    @property
    def frames(self) -> int:
        """Frames processed since the last reset."""
        return int(self._native.frames)

    @property
    def active(self) -> bool:
        """Whether an utterance is open."""
        return bool(self._native.active)

    @property
    def noise_floor_db(self) -> float:
        """Current noise floor over the speech bands, dB relative to a full-scale sine
        (``-inf`` before the first frame)."""
        return float(self._native.noise_floor_db)

    def _event(self, flags: int, sample: int) -> VadEvent | None:
        if flags & _START:
            return SpeechStart(sample, sample / self._rate, self._native.frames - 1)
        if flags & _END:
            return SpeechEnd(sample, sample / self._rate, self._native.frames - 1)
        return None

    def process(self, frame: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> VadFrame:
        """Analyse the next frame of exactly :attr:`frame_samples` samples."""
        if not isinstance(frame, np.ndarray):
            frame = self._from_bytes(frame)
        try:
            score, flags, sample = self._native.process(frame)
        except TypeError:
            raise TypeError(
                f"Vad.process: expected a C-contiguous int16 array or bytes, got "
                f"{type(frame).__name__} of dtype {frame.dtype}"
            ) from None
        # The hot path of a live call: a table lookup for the two decisions and the tuple
        # built without the NamedTuple's Python-level __new__ (about 0.4 us a frame less).
        speech, active = _STATES[flags]
        if flags & (_START | _END):
            return _tuple_new(VadFrame, (score, speech, active, self._event(flags, sample)))
        return _tuple_new(VadFrame, (score, speech, active, None))

    def process_batch(self, samples: npt.NDArray[np.int16] | bytes) -> VadBatch:
        """Analyse many consecutive frames at once (offline use): identical to calling
        :meth:`process` on each frame in turn. ``len(samples)`` must be a multiple of
        :attr:`frame_samples`."""
        if not isinstance(samples, np.ndarray):
            samples = self._from_bytes(samples)
        start = self.frames
        try:
            scores, flags, at = self._native.process_batch(samples)
        except TypeError:
            raise TypeError(
                f"Vad.process_batch: expected a C-contiguous int16 array or bytes, got dtype "
                f"{samples.dtype}"
            ) from None
        events: list[VadEvent] = []
        rate = self._rate
        for i in np.flatnonzero(flags & (_START | _END)).tolist():
            sample = int(at[i])
            kind = SpeechStart if flags[i] & _START else SpeechEnd
            events.append(kind(sample, sample / rate, start + i))
        return VadBatch(
            scores, (flags & _SPEECH).astype(bool), (flags & _ACTIVE).astype(bool), tuple(events)
        )

    def process_frames(self, samples: npt.NDArray[np.int16]) -> tuple[list[bool], list[VadEvent]]:
        """:meth:`process_batch` for a live stream's few frames at a time: each frame's
        decision (:attr:`VadBatch.speech`) as a list, and the events; no arrays are made
        (at one or two frames a message, their overhead is most of the cost)."""
        start = self.frames
        try:
            _, flags, at = self._native.process_batch(samples)
        except TypeError:
            raise TypeError(
                f"Vad.process_frames: expected a C-contiguous int16 array, got "
                f"{type(samples).__name__}"
            ) from None
        marks = flags.tolist()
        events: list[VadEvent] = []
        for i, f in enumerate(marks):
            if f & (_START | _END):
                sample = int(at[i])
                kind = SpeechStart if f & _START else SpeechEnd
                events.append(kind(sample, sample / self._rate, start + i))
        return [bool(f & _SPEECH) for f in marks], events

    def feed(self, pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> list[VadEvent]:
        """Take any number of samples, analyse every whole frame, keep the rest for the next
        call, and return the events (usually none). The shape for asyncio transports whose
        payloads do not line up with frames."""
        if not isinstance(pcm, np.ndarray):
            pcm = self._from_bytes(pcm)
        if pcm.dtype != np.int16:
            raise TypeError(f"Vad.feed: expected int16 samples, got dtype {pcm.dtype}")
        data = np.concatenate([self._pending, pcm.ravel()]) if len(self._pending) else pcm
        n = self.frame_samples
        whole = len(data) - len(data) % n
        self._pending = np.array(data[whole:], dtype=np.int16)
        if whole == 0:
            return []
        return list(self.process_batch(np.ascontiguousarray(data[:whole])).events)

    def reset(self) -> None:
        """Start a new stream: forget noise floors, the open utterance, buffered samples,
        and the frame counter (timestamps restart at 0)."""
        self._native.reset()
        self._pending = np.zeros(0, dtype=np.int16)

    @staticmethod
    def _from_bytes(data: object) -> npt.NDArray[np.int16]:
        try:
            view = memoryview(data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"Vad: expected an int16 numpy array or a bytes-like object, got "
                f"{type(data).__name__}"
            ) from None
        if view.nbytes % 2:
            raise ValueError(
                f"Vad: PCM16 input must have an even number of bytes, got {view.nbytes}"
            )
        return np.frombuffer(view.cast("B"), dtype=np.int16)

    def __repr__(self) -> str:
        return f"Vad(rate={self._rate}, frame_ms={self._frame_ms}, frames={self.frames})"
