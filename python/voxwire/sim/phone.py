"""The phone end of a call, in memory: a provider side and the phone's speaker on one clock.

:class:`Playout` is the phone's playback queue on a sample clock; :class:`FakePhone` joins
it to a simulated provider side (:mod:`voxwire.sim.providers`): what the application sends
is parsed by the side, played on the playout in real time, marks are echoed once the
audio before them has played and clears answered as the provider answers them. Time is a
parameter (``now``, in seconds): the simulated caller (:mod:`voxwire.sim.caller`) drives
it from the event loop's clock, a test drives it from a virtual one.

With a strict side, a :class:`FakePhone` is a fake phone for testing an application's
wire format; see :class:`FakePhone` and ``docs/adding-a-provider.md``.

>>> import numpy as np
>>> from voxwire.protocols import TwilioCodec
>>> from voxwire.sim.providers import TwilioSide
>>> phone = FakePhone(TwilioSide(strict=True))
>>> codec = TwilioCodec()
>>> events = [e for m in phone.opening() for e in codec.receive(m, 0.0)]
>>> for i in range(5):  # 100 ms of audio in 20 ms messages, then a mark
...     for message in codec.send_audio(np.zeros(160, np.int16)):
...         assert phone.deliver(message) == []
>>> phone.deliver(codec.send_mark("end")[0])
[]
>>> phone.advance(0.099), len(phone.heard())
([], 640)
>>> [codec.receive(m, 0.1) for m in phone.advance(0.1)]
[[MarkPlayed(name='end', cleared=False)]]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

from voxwire.sim.providers.base import ProviderSide
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PlayAudio, PlayMark, Unexpected

__all__ = ["FakePhone", "Playout"]

S = TypeVar("S", bound=ProviderSide)


class Playout:
    """The phone's playback queue on a sample clock (sans-I/O).

    Positions are line-rate samples since ``t0``. :meth:`enqueue` appends audio (starting
    it at ``now`` when the queue had run dry), :meth:`mark` places a mark after the audio
    queued so far, :meth:`due` returns the marks whose audio has played by ``now``, and
    :meth:`clear` cuts playback at ``now`` and returns the marks it dropped.
    """

    def __init__(self, rate: int, t0: float) -> None:
        self.rate = rate
        self.t0 = t0
        self.end = 0  # where the queued audio ends
        self.segments: list[tuple[int, PCM, float]] = []  # (start, audio, arrival time)
        self._marks: deque[tuple[int, str]] = deque()

    def sample(self, now: float) -> int:
        """The position playing at ``now``."""
        return max(0, math.floor((now - self.t0) * self.rate + 1e-6))

    def time(self, position: int) -> float:
        """When ``position`` plays."""
        return self.t0 + position / self.rate

    def enqueue(self, pcm: PCM, now: float) -> int:
        """Queue audio; return the position where it starts playing."""
        start = max(self.end, self.sample(now))
        if len(pcm):
            self.segments.append((start, pcm, now))
            self.end = start + len(pcm)
        return start

    def mark(self, name: str, now: float) -> int:
        """Queue a mark after the audio queued so far; return its position."""
        position = max(self.end, self.sample(now))
        self._marks.append((position, name))
        return position

    def due(self, now: float) -> list[str]:
        """Marks whose audio has played by ``now``, in order."""
        played = self.sample(now)
        out: list[str] = []
        while self._marks and self._marks[0][0] <= played:
            out.append(self._marks.popleft()[1])
        return out

    def next_due(self) -> float | None:
        """When the next mark falls due, or None."""
        return self.time(self._marks[0][0]) if self._marks else None

    def playing(self, now: float) -> bool:
        """Whether audio is playing (or queued) at ``now``."""
        return self.end > self.sample(now)

    def clear(self, now: float) -> list[str]:
        """Stop playback at ``now``: drop the rest; return the marks still pending."""
        cut = self.sample(now)
        kept: list[tuple[int, PCM, float]] = []
        for start, pcm, arrived in self.segments:
            if start < cut:
                kept.append((start, pcm[: cut - start], arrived))
        self.segments = kept
        self.end = min(self.end, cut)
        pending = [name for _, name in self._marks]
        self._marks.clear()
        return pending

    def played(self, start: int, n: int) -> PCM:
        """What the speaker played over positions ``[start, start + n)`` (a clear cuts it)."""
        out = np.zeros(max(0, n), dtype=np.int16)
        end = start + n
        for first, pcm, _ in reversed(self.segments):
            last = first + len(pcm)
            if last <= start:
                break
            lo, hi = max(first, start), min(last, end)
            if lo < hi:
                out[lo - start : hi - start] = pcm[lo - first : hi - first]
        return out

    def track(self, length: int | None = None) -> PCM:
        """Everything played, as one signal from ``t0`` (silence where nothing played)."""
        end = max((s + len(p) for s, p, _ in self.segments), default=0)
        out = np.zeros(max(end, length or 0), dtype=np.int16)
        for start, pcm, _ in self.segments:
            out[start : start + len(pcm)] = pcm
        return out


class FakePhone(Generic[S]):
    """A provider side and its phone's speaker on a clock: the phone end of one call.

    Wire it to an application (a codec in memory, or a socket): send what
    :meth:`opening`, :meth:`say` and :meth:`hang_up` return, hand each message the
    application sends to :meth:`deliver`, and call :meth:`advance` as time passes; both
    return what the provider sends back (mark echoes, clear answers). :meth:`heard` is what
    the caller's speaker has played so far.

    Parameters
    ----------
    side
        The provider side, e.g. ``TwilioSide(strict=True)``; a strict side raises
        :class:`~voxwire.errors.ConformanceError` from :meth:`deliver` on the first message
        the provider's documentation does not allow.
    t0
        The time the phone's playout counts from (seconds).
    """

    def __init__(self, side: S, *, t0: float = 0.0) -> None:
        self.side = side
        self.rate = side.rate
        self.playout = Playout(side.rate, t0)
        self.now = t0
        #: why each message the provider would not accept was refused (lenient sides)
        self.unexpected: list[str] = []

    @property
    def frame(self) -> int:
        """Samples in one 20 ms caller message."""
        return self.side.frame

    # the caller's side
    def opening(self) -> list[Message]:
        """What the provider sends when the call is answered."""
        return self.side.opening()

    def say(self, pcm: PCM) -> Message:
        """One message carrying 20 ms of the caller's audio."""
        return self.side.audio(pcm)

    def hang_up(self) -> list[Message]:
        """What the provider sends when the caller hangs up."""
        return self.side.closing()

    # the application's side
    def deliver(self, message: Message, now: float | None = None) -> list[Message]:
        """Take one message from the application at ``now`` (default: the clock's time).

        Returns what the provider answers at once (to a clear). Raises
        :class:`~voxwire.errors.ConformanceError` for a bad message when the side is strict.
        """
        if now is not None:
            self.now = max(self.now, now)
        now = self.now
        replies: list[Message] = []
        for event in self.side.parse(message):
            if isinstance(event, PlayAudio):
                start = self.playout.enqueue(event.pcm, now)
                self._on_audio(event.pcm, start, now)
            elif isinstance(event, PlayMark):
                self._on_mark(event.name, self.playout.mark(event.name, now), now)
            elif isinstance(event, ClearAudio):
                self._on_clear(now)
                pending = self.playout.clear(now)
                self._on_cleared(pending, now)
                replies += self.side.cleared(pending)
            elif isinstance(event, Unexpected):
                self.unexpected.append(event.reason)
        return replies

    def advance(self, now: float) -> list[Message]:
        """Play on up to ``now``; return the echoes of the marks whose audio has played."""
        self.now = max(self.now, now)
        out: list[Message] = []
        for name in self.playout.due(self.now):
            self._on_mark_played(name, self.now)
            out += self.side.mark_played(name)
        return out

    @property
    def played(self) -> list[PCM]:
        """The audio messages that have played out by now, each whole (a clear cuts one)."""
        done = self.playout.sample(self.now)
        return [pcm for start, pcm, _ in self.playout.segments if start + len(pcm) <= done]

    def heard(self) -> PCM:
        """What the caller's speaker has played by now, message after message."""
        played = self.played
        return np.concatenate(played) if played else np.zeros(0, np.int16)

    # hooks for a phone that keeps records
    def _on_audio(self, pcm: PCM, start: int, now: float) -> None:
        """Audio arrived and was queued to play from position ``start``."""

    def _on_mark(self, name: str, position: int, now: float) -> None:
        """A mark arrived and was queued at ``position``."""

    def _on_clear(self, now: float) -> None:
        """A clear arrived; called before the playout drops its queue."""

    def _on_cleared(self, pending: Sequence[str], now: float) -> None:
        """The playout dropped its queue and the marks ``pending``."""

    def _on_mark_played(self, name: str, now: float) -> None:
        """The audio before mark ``name`` has played."""
