"""Real-time pacing of outbound audio, and the played position of each call.

Sans-I/O: time is a parameter. :class:`PacingScheduler` serves every call of a process
(:mod:`voxwire.aio.pacer` runs one per process on the event loop); each call has a
:class:`PacedStream`.

The pacing model
----------------
A stream sends fixed frames of ``F`` seconds (20 ms). It keeps an epoch ``t0`` and the
number ``k`` of frames sent since then, and may send frame ``k`` once
``t0 + (k + 1) * F <= now + lead``: the audio sent never runs more than ``lead`` (60 ms
by default) ahead of real time, and in steady state exactly one frame leaves every ``F``.
Send times are computed from ``t0`` and ``k``, never accumulated, so there is no drift
over a long call. When the sent audio ends before ``now`` (the first frame, audio that
arrives slower than real time, or a stall of the process) the peer has nothing left to
play, and the epoch moves to ``t0 = now - k * F``: the stream restarts with at most
``lead`` of audio at once, never with a burst of everything it fell behind.

Marks and the played position
-----------------------------
:meth:`PacedStream.mark` queues a mark after the audio queued so far (a partial frame is
padded with silence so the mark falls on the end of that audio). When its turn comes the
scheduler hands it out as :class:`MarkOut` to be sent to the provider, which echoes it
when the audio before it has played. For protocols without marks the stream emits
:class:`MarkDue` itself when that audio's play-out time has passed. Either way
:meth:`PacedStream.resolve_mark` turns the echo into a
:class:`~voxwire.protocols.events.MarkPlayed` and advances :attr:`PacedStream.played_samples`,
the position (in line-rate samples since the call started) the caller is known to have
heard. :meth:`PacedStream.clear` drops the queued audio, reports every queued or
unanswered mark as ``MarkPlayed(cleared=True)`` at once and swallows their later echoes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.errors import QueueFull
from voxwire.protocols.events import MarkPlayed

__all__ = ["MarkDue", "MarkOut", "PacedItem", "PacedStream", "PacingScheduler"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class MarkOut:
    """Send this mark to the provider now: the audio before it has been sent."""

    name: str


@dataclass(frozen=True, slots=True)
class MarkDue:
    """A locally tracked mark whose audio has played (protocols without marks)."""

    name: str


PacedItem = PCM | MarkOut | MarkDue
"""What the scheduler hands out: one frame of line-rate PCM, or a mark."""


@dataclass(frozen=True, slots=True)
class _QueuedMark:
    name: str
    position: int


class PacedStream:
    """One call's outbound queue and played-position tracker.

    ``sample_rate`` is the line rate, ``frame_ms`` the frame length; ``local_marks`` makes
    the stream time marks itself (for protocols whose peer never echoes them).
    ``max_queued`` bounds the audio waiting to be sent, in seconds (default 5 minutes: far
    more than any reply, so only a runaway producer meets it); :meth:`push` past it raises
    :class:`voxwire.errors.QueueFull` and queues nothing.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        frame_ms: int = 20,
        lead: float | None = None,
        local_marks: bool = False,
        name: str = "",
        max_queued: float = 300.0,
    ) -> None:
        if not max_queued > 0:
            raise ValueError(f"max_queued must be positive, got {max_queued}")
        if sample_rate <= 0 or frame_ms <= 0:
            raise ValueError(
                f"sample_rate and frame_ms must be positive: {sample_rate}, {frame_ms}"
            )
        if sample_rate * frame_ms % 1000:
            raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
        self.name = name
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.frame_duration = frame_ms / 1000
        self.lead = lead
        self.local_marks = local_marks
        self.max_queued_samples = int(max_queued * sample_rate)
        self._queue: deque[PCM | _QueuedMark] = deque()
        self._partial: list[PCM] = []
        self._partial_len = 0
        self._t0: float | None = None
        self._k = 0
        self._in_flight: dict[str, int] = {}
        self._local_due: deque[tuple[float, str, int]] = deque()
        self._swallow: OrderedDict[str, None] = OrderedDict()
        self._scheduler: PacingScheduler | None = None
        #: line-rate samples handed out for sending since the call started
        self.sent_samples = 0
        #: line-rate samples queued (including a partial frame) since the call started
        self.queued_total = 0
        #: position up to which the caller is known to have heard the audio
        self.played_samples = 0
        #: times the schedule restarted because the sent audio had run out
        self.underruns = 0

    # --- producer side ---------------------------------------------------------------

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be sent (whole frames and the partial one)."""
        return self.queued_total - self.sent_samples

    def push(self, pcm: PCM) -> None:
        """Queue line-rate PCM16; it is cut into frames, a remainder waits for more."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(f"expected a 1-D numpy int16 array, got {pcm!r:.60}")
        if len(pcm) == 0:
            return
        if self.queued_samples + len(pcm) > self.max_queued_samples:
            raise QueueFull(
                f"stream {self.name!r}: {self.queued_samples} samples queued + {len(pcm)} "
                f"pushed would exceed max_queued = {self.max_queued_samples} samples "
                f"({self.max_queued_samples / self.sample_rate:g} s)"
            )
        self.queued_total += len(pcm)
        self._partial.append(pcm.copy())  # frames must not change if the caller reuses it
        self._partial_len += len(pcm)
        if self._partial_len < self.frame_samples:
            return
        data = np.concatenate(self._partial) if len(self._partial) > 1 else self._partial[0]
        n = self.frame_samples
        whole = len(data) // n * n
        for i in range(0, whole, n):
            self._queue.append(data[i : i + n])
        rest = data[whole:]
        self._partial = [rest] if len(rest) else []
        self._partial_len = len(rest)
        self._wake()

    def flush(self) -> None:
        """Pad the partial frame with silence and queue it (end of an utterance)."""
        if self._partial_len:
            pad = np.zeros(self.frame_samples - self._partial_len, dtype=np.int16)
            self.queued_total += len(pad)
            self._queue.append(np.concatenate([*self._partial, pad]))
            self._partial = []
            self._partial_len = 0
            self._wake()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (flushing a partial frame)."""
        if not name:
            raise ValueError("a mark needs a non-empty name")
        pending = {item.name for item in self._queue if isinstance(item, _QueuedMark)}
        if name in self._in_flight or name in pending:
            raise ValueError(f"mark {name!r} is already pending")
        self.flush()
        self._queue.append(_QueuedMark(name, self.queued_total))
        self._wake()

    def next_audio(self) -> PCM | None:
        """The audio that would be sent next: the first queued frame, else the partial
        frame (None when nothing is queued). Read it before :meth:`clear` to fade out
        what a clear cuts."""
        for item in self._queue:
            if not isinstance(item, _QueuedMark):
                return item
        if self._partial_len:
            return np.concatenate(self._partial) if len(self._partial) > 1 else self._partial[0]
        return None

    def clear(self) -> list[MarkPlayed]:
        """Drop everything queued; return every pending mark as cleared (barge-in)."""
        dropped = [item.name for item in self._queue if isinstance(item, _QueuedMark)]
        self._queue.clear()
        self._partial = []
        self._partial_len = 0
        self.queued_total = self.sent_samples
        in_flight = list(self._in_flight)
        for name in in_flight:
            self._swallow[name] = None
        while len(self._swallow) > 4096:
            self._swallow.popitem(last=False)
        self._in_flight.clear()
        local = [name for _, name, _ in self._local_due]
        self._local_due.clear()
        self._t0 = None
        self._k = 0
        self._wake()
        return [MarkPlayed(name, cleared=True) for name in (*local, *in_flight, *dropped)]

    def resolve_mark(self, name: str) -> MarkPlayed | None:
        """Turn an echoed mark into the event for the layer above (None: swallow it)."""
        if name in self._swallow:
            del self._swallow[name]
            return None
        position = self._in_flight.pop(name, None)
        if position is None:
            return MarkPlayed(name)
        self.played_samples = max(self.played_samples, position)
        return MarkPlayed(name)

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds."""
        return self.played_samples / self.sample_rate

    def playout_position(self, now: float) -> int:
        """Where the phone's playout is at ``now``, in line-rate samples since the start.

        The send clock's estimate: frame ``k`` of the current schedule starts playing at
        ``t0 + k * F`` (the phone plays each frame on arrival, after the one before it),
        so the position is what was sent before the schedule began plus the frames whose
        time has come, never more than was sent. Exact where the phone is one short hop
        away; over a real network it runs ahead of the phone by the one-way delay plus
        the provider's buffering. Read it before :meth:`clear`, which drops the schedule.
        """
        if self._t0 is None:
            return self.sent_samples
        epoch = self.sent_samples - self._k * self.frame_samples
        elapsed = max(0.0, now - self._t0) / self.frame_duration * self.frame_samples
        return min(self.sent_samples, epoch + int(elapsed + 1e-6))

    def _wake(self) -> None:
        if self._scheduler is not None:
            self._scheduler._reschedule(self)

    # --- scheduler side --------------------------------------------------------------

    def _due(self, lead: float) -> float | None:
        """When this stream next has something to hand out, or None."""
        times: list[float] = []
        if self._local_due:
            times.append(self._local_due[0][0])
        if self._queue:
            head = self._queue[0]
            if isinstance(head, _QueuedMark) or self._t0 is None:
                times.append(-math.inf)
            else:
                times.append(self._t0 + (self._k + 1) * self.frame_duration - lead)
        return min(times) if times else None

    def _take(self, now: float, lead: float) -> Iterator[PacedItem]:
        while self._queue:
            head = self._queue[0]
            if isinstance(head, _QueuedMark):
                self._queue.popleft()
                if self.local_marks:
                    end = now if self._t0 is None else self._t0 + self._k * self.frame_duration
                    self._local_due.append((end, head.name, head.position))
                else:
                    self._in_flight[head.name] = head.position
                    yield MarkOut(head.name)
                continue
            if self._t0 is None or self._t0 + self._k * self.frame_duration < now - _EPS:
                if self._t0 is not None:
                    self.underruns += 1
                self._t0 = now - self._k * self.frame_duration
            if self._t0 + (self._k + 1) * self.frame_duration > now + lead + _EPS:
                break
            self._queue.popleft()
            self._k += 1
            self.sent_samples += len(head)
            yield head
        while self._local_due and self._local_due[0][0] <= now + _EPS:
            _, name, position = self._local_due.popleft()
            self.played_samples = max(self.played_samples, position)
            yield MarkDue(name)


class PacingScheduler:
    """Paces every :class:`PacedStream` of a process; see the module docstring.

    :meth:`poll` hands out what is due at ``now``; :meth:`next_deadline` says when to
    poll again. Adding audio to a stream may move its deadline earlier; a driver learns
    of it through ``on_wake``.
    """

    def __init__(self, lead: float = 0.06, on_wake: Callable[[], None] | None = None) -> None:
        if lead < 0:
            raise ValueError(f"lead must be >= 0, got {lead}")
        self.lead = lead
        self._streams: set[PacedStream] = set()
        self._heap: list[tuple[float, int, PacedStream]] = []
        self._entry: dict[PacedStream, tuple[float, int]] = {}
        self._counter = itertools.count()
        self.on_wake = on_wake

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: PacedStream) -> PacedStream:
        """Start pacing ``stream``."""
        if stream._scheduler is not None and stream._scheduler is not self:
            raise ValueError("the stream belongs to another scheduler")
        stream._scheduler = self
        self._streams.add(stream)
        self._reschedule(stream)
        return stream

    def remove(self, stream: PacedStream) -> None:
        """Stop pacing ``stream`` (its queue is kept)."""
        self._streams.discard(stream)
        self._entry.pop(stream, None)
        stream._scheduler = None

    def _lead(self, stream: PacedStream) -> float:
        return self.lead if stream.lead is None else stream.lead

    def _reschedule(self, stream: PacedStream) -> None:
        if stream not in self._streams:
            return
        due = stream._due(max(self._lead(stream), stream.frame_duration))
        if due is None:
            self._entry.pop(stream, None)
            return
        old = self._entry.get(stream)
        if old is not None and old[0] <= due:
            return
        entry = (due, next(self._counter))
        self._entry[stream] = entry
        heapq.heappush(self._heap, (*entry, stream))
        if self.on_wake is not None:
            self.on_wake()

    def next_deadline(self) -> float | None:
        """The earliest time any stream has something due, or None when all are idle."""
        while self._heap:
            due, counter, stream = self._heap[0]
            if self._entry.get(stream) == (due, counter):
                return due
            heapq.heappop(self._heap)
        return None

    def poll(self, now: float, max_items: int | None = None) -> list[tuple[PacedStream, PacedItem]]:
        """Everything due at ``now``, stream by stream, in each stream's order.

        With ``max_items`` no further stream is taken once that many items are out (a
        stream's due items always come together): the streams left stay due, and the
        next poll hands them out first.
        """
        out: list[tuple[PacedStream, PacedItem]] = []
        limit = math.inf if max_items is None else max_items
        while self._heap and self._heap[0][0] <= now + _EPS and len(out) < limit:
            due, counter, stream = heapq.heappop(self._heap)
            if self._entry.get(stream) != (due, counter):
                continue
            del self._entry[stream]
            lead = max(self._lead(stream), stream.frame_duration)
            out.extend((stream, item) for item in stream._take(now, lead))
            nxt = stream._due(lead)
            if nxt is not None:
                # everything due by `now` was handed out, so `nxt` lies ahead; the max()
                # only guards the loop against a rounding tie
                entry = (max(nxt, now + 2 * _EPS), next(self._counter))
                self._entry[stream] = entry
                heapq.heappush(self._heap, (*entry, stream))
        return out
