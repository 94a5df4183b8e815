"""A simulated caller for a conversation: several turns, each said when the last reply ends.

:func:`place_dialog` calls a voice agent as the provider of a protocol would, on the
same simulated phone as :func:`voxwire.sim.caller.place_call` (the same line, playout,
impairment, mark echoes and clear handling), and says a script of turns
(:class:`Turn`):

* by default a turn is said once the reply to the previous one has finished playing
  (nothing has played for ``quiet`` seconds after it began), or after ``reply_timeout``;
* ``Turn(barge_in_after=x)`` is said ``x`` seconds after the previous reply began
  playing, over it (a barge-in);
* ``Turn(wait=x)`` is said ``x`` seconds after the end of the previous turn's speech,
  whether a reply came or not;
* ``Turn()`` without speech says nothing: the caller listens (as the first turn, with
  ``lead=0``, to the agent's greeting).

The call ends ``tail`` seconds after the last reply has finished (or timed out), or
when the server closes it (an agent that hangs up). :class:`DialogReport` says, per
turn, when the caller spoke, when the reply began and what the caller heard of it;
every clear and mark; and how much of the received audio played.

Time line
---------
As in :mod:`voxwire.sim.caller`: one clock, the event loop's, from ``t0``, the moment
the first caller frame began; positions are line-rate samples since ``t0``. A turn's
onset and end are the bounds of its speech (:func:`voxwire.sim.speech.speech_bounds`);
its reply is the audio played from the first audio that starts playing at or after the
end of its speech, up to the end of the next turn's speech (or the end of the call).
A turn's audio starts on one of the caller's 20 ms frames: the first that begins at or
after the moment its rule allows.

What the caller heard (the phone-side rule)
-------------------------------------------
The phone numbers the audio it receives by cumulative sample index since the call
started, in the order it arrives (every message, also what a clear later drops). A
received sample counts as played once the phone's playout clock has reached it: the
sample queued at position ``p`` has played at ``now`` when ``p < floor((now - t0) *
rate)``. Audio that arrives while nothing plays starts at once; audio arriving while
something plays waits behind it; a clear drops every sample not played yet.
``played_received_samples`` (per clear, and at the end of the call) is the received
index one past the last received sample that had played: a server that counts the
samples it sent, over an ordered transport, compares it with that count to tell which
of its words the caller heard. Samples an earlier clear dropped keep their place in
the numbering (they were received), though they never play.

RTP
---
:func:`place_rtp_dialog` holds the same dialog as a phone on an RTP line (PCMU at 8000
Hz): it sends one packet of the caller's audio every 20 ms in real time and plays every
packet of the agent's stream on arrival, after what is queued, on the same playout
model. RTP has no clear and no marks: a barge-in stops the reply by the agent no longer
sending, and the phone plays whatever arrived until it stops arriving. Per barge-in the
report has a :class:`StopRecord`, with this phone-side rule: **the cut reply is the audio
that keeps playing without a pause from the barge-in's onset**; it ends at the first gap
in the playout (nothing queued) longer than ``stop_gap`` seconds, which is far shorter
than any agent takes to answer the barge-in and far longer than a late packet.
``played_received_samples`` is the received index one past the last sample of the cut
reply (every received sample plays, so this is also how many of them had played when
the stream stopped) and ``at`` the moment that sample finished playing: the stop latency
runs from the barge-in's speech onset to then.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire._types import PCM
from voxwire.errors import RtpError
from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.rtp import RtpSender, parse_rtp
from voxwire.sim.caller import MarkRecord, Network, Recv, Send, _connect, _Phone
from voxwire.sim.providers import (
    PROVIDERS,
    Message,
    PhoneEvent,
    PlayAudio,
    ProviderSide,
    Unexpected,
)
from voxwire.sim.speech import speech_bounds

__all__ = [
    "ClearRecord",
    "DialogReport",
    "ReceivedAudio",
    "StopRecord",
    "Turn",
    "TurnReport",
    "place_dialog",
    "place_rtp_dialog",
]


def _seconds(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")


@dataclass(frozen=True, eq=False)
class Turn:
    """What the caller says next, and when.

    Parameters
    ----------
    speech : numpy.ndarray of int16, optional
        The turn's audio, mono at the line rate; None (or empty) says nothing.
    text : str
        What is said, for the report.
    barge_in_after : float, optional
        Say the turn this many seconds after the previous reply began playing, over it.
    wait : float, optional
        Say the turn this many seconds after the previous turn's speech ended, without
        waiting for a reply.

    Raises
    ------
    TypeError
        For speech that is not a 1-D int16 array, or a time that is not a number.
    ValueError
        For a negative or infinite time, or both ``barge_in_after`` and ``wait``.
    """

    speech: PCM | None = None
    text: str = ""
    barge_in_after: float | None = None
    wait: float | None = None

    def __post_init__(self) -> None:
        speech = self.speech
        if speech is not None and (
            not isinstance(speech, np.ndarray) or speech.dtype != np.int16 or speech.ndim != 1
        ):
            raise TypeError(f"a turn's speech must be a 1-D int16 array, got {speech!r:.60}")
        if not isinstance(self.text, str):
            raise TypeError(f"a turn's text must be a str, got {type(self.text).__name__}")
        _seconds("barge_in_after", self.barge_in_after)
        _seconds("wait", self.wait)
        if self.barge_in_after is not None and self.wait is not None:
            raise ValueError("a turn either barges in or waits, not both")

    @property
    def barge_in(self) -> bool:
        """Whether the turn is said over the previous reply."""
        return self.barge_in_after is not None


class ReceivedAudio:
    """The phone's received audio, numbered by cumulative sample index (sans-I/O).

    :meth:`add` records each received piece of audio with the playout position it was
    queued at; :meth:`clear` records a clear at playout position ``cut``;
    :meth:`played_index` and :meth:`played_count` apply the phone-side rule of the
    module docstring at playout position ``cut``.
    """

    def __init__(self) -> None:
        self.received = 0  # samples received so far
        self._end = 0  # where the queued audio ends
        # the pieces that play (or played), in order; starts increase strictly
        self._index: list[int] = []  # received index of each piece's first sample
        self._start: list[int] = []  # its playout position
        self._length: list[int] = []  # samples of it that play (fewer after a clear)

    def add(self, start: int, n: int) -> None:
        """``n`` samples arrived, queued to play from position ``start``."""
        if n < 0 or start < 0:
            raise ValueError(f"start and n must be >= 0, got {start}, {n}")
        if start < self._end:
            raise ValueError(
                f"audio queued at {start} overlaps the audio queued before it, which "
                f"plays until {self._end}"
            )
        if n == 0:
            return
        self._index.append(self.received)
        self._start.append(start)
        self._length.append(n)
        self.received += n
        self._end = start + n

    def clear(self, cut: int) -> int:
        """Drop what has not played by position ``cut``; return the samples dropped."""
        i = bisect.bisect_left(self._start, cut)  # the pieces that have not started
        dropped = sum(self._length[i:])
        del self._index[i:], self._start[i:], self._length[i:]
        if i > 0:
            keep = min(self._length[i - 1], cut - self._start[i - 1])
            dropped += self._length[i - 1] - keep
            self._length[i - 1] = keep
        self._end = min(self._end, cut)
        return dropped

    def played_index(self, cut: int) -> int:
        """The received index one past the last received sample played by ``cut``."""
        i = bisect.bisect_left(self._start, cut) - 1
        if i < 0:
            return 0
        return self._index[i] + min(self._length[i], cut - self._start[i])

    def played_count(self, cut: int) -> int:
        """How many received samples have played by ``cut``."""
        i = bisect.bisect_left(self._start, cut) - 1
        if i < 0:
            return 0
        return sum(self._length[:i]) + min(self._length[i], cut - self._start[i])


@dataclass
class ClearRecord:
    """One clear the phone received."""

    at: float  # arrival, seconds from t0
    position: int  # the playout position it cut at
    played_received_samples: int  # received index one past the last sample played
    received_samples: int  # samples received before it
    dropped_samples: int  # received samples it dropped unplayed
    turn: int | None = None  # the turn whose reply it cut (see TurnReport), if any


@dataclass
class StopRecord:
    """Where the reply under a barge-in stopped playing, on an RTP line (no clear).

    See "RTP" in the module docstring for the rule that finds the cut reply's end.
    """

    turn: int  # the script index of the turn whose reply was cut
    onset: float  # the barge-in's speech onset, seconds from t0
    at: float  # when the last sample of the cut reply finished playing, seconds from t0
    position: int  # that playout position
    played_received_samples: int  # received index one past the cut reply's last sample

    @property
    def latency(self) -> float:
        """From the barge-in's onset to the cut reply's last sample played, seconds."""
        return self.at - self.onset


@dataclass
class TurnReport:
    """One turn of the caller and the reply it got.

    The reply was ``cut`` when a clear came after it began playing and before it had
    finished by the caller's rule (``quiet`` seconds without audio): the phone may have
    played all it had received, the server's next frame not sent yet.
    """

    index: int  # in the script
    text: str
    barge_in: bool
    onset: float  # speech onset, seconds from t0 (the turn's start when it says nothing)
    end: float  # speech end
    reply_start: float | None = None  # when the reply began playing, seconds from t0
    reply_end: float | None = None  # when the last of it that played ended
    heard: PCM = field(default_factory=lambda: np.zeros(0, np.int16))  # played of the reply
    rate: int = 8000
    cut: bool = False  # a clear came before the reply had finished (see the docstring)

    @property
    def reply_latency(self) -> float | None:
        """From the end of the turn's speech to the reply playing, in seconds."""
        return None if self.reply_start is None else self.reply_start - self.end

    @property
    def heard_duration(self) -> float:
        """Seconds of the reply that played."""
        return len(self.heard) / self.rate


@dataclass
class DialogReport:
    """What the simulated caller said and heard over a dialog, and the timings."""

    protocol: str
    rate: int
    planned: int  # turns in the script
    turns: list[TurnReport] = field(default_factory=list)  # the turns said
    clears: list[ClearRecord] = field(default_factory=list)
    stops: list[StopRecord] = field(default_factory=list)  # RTP only: see StopRecord
    marks: list[MarkRecord] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    messages_sent: int = 0
    messages_received: int = 0
    media_lost: int = 0
    received_samples: int = 0  # audio samples received over the call
    played_received_samples: int = 0  # received index played by the end of the call
    played_samples: int = 0  # received samples played by the end of the call
    duration: float = 0.0  # from t0 to the end of the call, seconds
    said: PCM = field(default_factory=lambda: np.zeros(0, np.int16))
    heard: PCM = field(default_factory=lambda: np.zeros(0, np.int16))  # the phone's speaker
    closed_by_server: bool = False
    closed_at: float | None = None  # seconds from t0
    noise_bursts: int = 0  # bursts the line added to what the caller sent

    def as_dict(self) -> dict[str, Any]:
        """The figures of the report (no audio), for JSON."""
        return {
            "protocol": self.protocol,
            "rate": self.rate,
            "planned": self.planned,
            "turns": [
                {
                    "index": t.index,
                    "text": t.text,
                    "barge_in": t.barge_in,
                    "onset_s": round(t.onset, 4),
                    "end_s": round(t.end, 4),
                    "reply_start_s": _r(t.reply_start),
                    "reply_latency_s": _r(t.reply_latency),
                    "reply_end_s": _r(t.reply_end),
                    "heard_s": round(t.heard_duration, 4),
                    "cut": t.cut,
                }
                for t in self.turns
            ],
            "clears": [
                {
                    "at_s": round(c.at, 4),
                    "played_received_samples": c.played_received_samples,
                    "received_samples": c.received_samples,
                    "dropped_samples": c.dropped_samples,
                    "turn": c.turn,
                }
                for c in self.clears
            ],
            "stops": [
                {
                    "turn": r.turn,
                    "onset_s": round(r.onset, 4),
                    "at_s": round(r.at, 4),
                    "latency_s": round(r.latency, 4),
                    "played_received_samples": r.played_received_samples,
                }
                for r in self.stops
            ],
            "marks": [
                {
                    "name": m.name,
                    "received_s": round(m.received, 4),
                    "echoed_s": _r(m.echoed),
                    "cleared": m.cleared,
                }
                for m in self.marks
            ],
            "received_samples": self.received_samples,
            "played_received_samples": self.played_received_samples,
            "played_samples": self.played_samples,
            "duration_s": round(self.duration, 4),
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "media_lost": self.media_lost,
            "unexpected": self.unexpected[:10],
            "closed_by_server": self.closed_by_server,
            "closed_at_s": _r(self.closed_at),
        }

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"{self.protocol} dialog at {self.rate} Hz: "
            f"{len(self.turns)} of {self.planned} turn(s) said"
        ]
        for t in self.turns:
            said = f'"{t.text}"' if t.text else "(no text)"
            kind = " (barge-in)" if t.barge_in else ""
            if t.reply_latency is None:
                reply = "no reply heard"
            else:
                reply = (
                    f"reply after {t.reply_latency * 1000:.0f} ms, "
                    f"{t.heard_duration * 1000:.0f} ms heard"
                )
                if t.cut:
                    reply += ", cut by a clear" if self.clears else ", cut"
            lines.append(f"  {t.index + 1}. {said}{kind} {t.onset:.2f}-{t.end:.2f} s: {reply}")
        lines.extend(
            f"  clear at {c.at:.2f} s: {c.played_received_samples} of "
            f"{c.received_samples} received samples had played, {c.dropped_samples} dropped"
            for c in self.clears
        )
        lines.extend(
            f"  reply stopped {r.latency * 1000:.0f} ms after the barge-in onset, at "
            f"{r.at:.2f} s: {r.played_received_samples} received samples had played"
            for r in self.stops
        )
        echoed = sum(m.echoed is not None for m in self.marks)
        cleared = sum(m.cleared for m in self.marks)
        lines.append(
            f"  marks: {len(self.marks)} received, {echoed} echoed after playing, "
            f"{cleared} dropped by a clear; {len(self.clears)} clear(s)"
        )
        lines.append(
            f"  audio: {self.received_samples} samples received, "
            f"{self.played_samples} played ({self.played_samples / self.rate:.2f} s)"
        )
        lines.append(
            f"  messages: {self.messages_sent} sent, {self.messages_received} received, "
            f"{self.media_lost} media lost to impairment"
        )
        if self.closed_by_server:
            at = "" if self.closed_at is None else f" at {self.closed_at:.2f} s"
            lines.append(f"  the server closed the call{at}")
        if self.unexpected:
            lines.append(
                f"  unexpected messages: {len(self.unexpected)}, first: {self.unexpected[0]}"
            )
        return "\n".join(lines)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class _Said:
    """A turn the caller began: its script index and its speech, in positions."""

    index: int
    turn: Turn
    onset: int
    end: int


class _Dialog(_Phone[DialogReport]):
    """One simulated dialog on the running event loop."""

    def __init__(
        self,
        side: ProviderSide,
        turns: Sequence[Turn],
        network: Network,
        *,
        quiet: float,
        reply_timeout: float,
        lead: float,
        tail: float,
    ) -> None:
        super().__init__(side, network)
        self.turns = list(turns)
        self.quiet = round(quiet * self.rate)
        self.reply_timeout = round(reply_timeout * self.rate)
        self.lead = lead
        self.tail = tail
        self.received = ReceivedAudio()
        self.clear_records: list[ClearRecord] = []
        self.said_turns: list[_Said] = []

    # the phone's records
    def _on_audio(self, pcm: PCM, start: int, now: float) -> None:
        self.received.add(start, len(pcm))

    def _on_clear(self, now: float) -> None:
        cut = self.playout.sample(now)
        self.clear_records.append(
            ClearRecord(
                at=now - self.playout.t0,
                position=cut,
                played_received_samples=self.received.played_index(cut),
                received_samples=self.received.received,
                dropped_samples=self.received.clear(cut),
            )
        )

    # the caller's mouth
    def _script(self) -> Iterator[PCM]:
        silence = np.zeros(self.side.frame, np.int16)
        for _ in range(round(self.lead / self.FRAME)):
            yield silence
        for index, turn in enumerate(self.turns):
            if self.said_turns:
                yield from self._before(turn, self.said_turns[-1], silence)
            at = self._position()
            speech = turn.speech if turn.speech is not None else np.zeros(0, np.int16)
            first, last = speech_bounds(speech, self.rate) if len(speech) else (0, 0)
            self.said_turns.append(_Said(index, turn, at + first, at + last))
            yield from self._frames(speech)
        if self.said_turns:
            yield from self._until_reply_ends(self.said_turns[-1], silence)
        for _ in range(round(self.tail / self.FRAME)):
            yield silence

    def _before(self, turn: Turn, previous: _Said, silence: PCM) -> Iterator[PCM]:
        """Silence until ``turn`` is to be said."""
        if turn.wait is not None:
            target = previous.end + round(turn.wait * self.rate)
            while self._position() < target:
                yield silence
        elif turn.barge_in_after is not None:
            after = round(turn.barge_in_after * self.rate)
            deadline = self._position() + self.reply_timeout
            while self._position() < deadline:
                start = self._first_played_from(previous.end)
                if start is not None and self._position() - start >= after:
                    return
                yield silence
        else:
            yield from self._until_reply_ends(previous, silence)

    def _until_reply_ends(self, previous: _Said, silence: PCM) -> Iterator[PCM]:
        """Silence until the reply to ``previous`` has begun and then stayed quiet."""
        # Decided at the start of the frame to say next (the audio queued by then is
        # known), so a turn begins no earlier than ``quiet`` after the reply's end.
        deadline = self._position() + self.reply_timeout
        while self._position() < deadline:
            began = self._first_played_from(previous.end) is not None
            if began and self._position() - self.playout.end >= self.quiet:
                return
            yield silence

    # the report
    def _finish(self) -> DialogReport:
        rate = self.rate
        t0 = self.playout.t0
        ended = self.ended if self.ended is not None else self.loop.time()
        end = self.playout.sample(ended)  # what had played when the call ended
        said = np.concatenate(self._mouth) if self._mouth else np.zeros(0, np.int16)
        report = DialogReport(
            self.side.name,
            rate,
            len(self.turns),
            marks=self.marks,
            unexpected=self.unexpected,
            messages_sent=self.messages_sent,
            messages_received=self.messages_received,
            media_lost=self.media_lost,
            received_samples=self.received.received,
            played_received_samples=self.received.played_index(end),
            played_samples=self.received.played_count(end),
            duration=ended - t0,
            said=said,
            heard=self.playout.track(end)[:end],
            closed_by_server=self.closed_by_server,
            closed_at=self.closed_at,
            noise_bursts=self.noise_bursts,
        )
        clears = self.clear_records
        for i, s in enumerate(self.said_turns):
            stop = min(end, self.said_turns[i + 1].end if i + 1 < len(self.said_turns) else end)
            turn = TurnReport(
                s.index,
                s.turn.text,
                s.turn.barge_in,
                s.onset / rate,
                s.end / rate,
                rate=rate,
            )
            start = self._first_played_from(s.end)
            if start is not None and start < stop:
                turn.reply_start = start / rate
                turn.heard, last = self._played(start, stop)
                turn.reply_end = last / rate
                for c in clears:
                    if not start <= c.position < stop:
                        continue
                    # cut: the reply had not finished (gone quiet) when the clear came
                    _, until = self._played(start, c.position)
                    if c.position - until < self.quiet:
                        c.turn = s.index
                        turn.cut = True
            report.turns.append(turn)
        report.clears = clears
        return report

    def _played(self, begin: int, stop: int) -> tuple[PCM, int]:
        """The samples that played between positions ``begin`` and ``stop``, joined, and
        the position where the last of them ended."""
        parts: list[PCM] = []
        last = begin
        for start, pcm, _ in self.playout.segments:
            if start < stop and start + len(pcm) > begin:
                part = pcm[max(0, begin - start) : max(0, stop - start)]
                parts.append(part)
                last = max(last, start + max(0, begin - start) + len(part))
        return (np.concatenate(parts) if parts else np.zeros(0, np.int16)), last


async def place_dialog(
    url: str,
    protocol: str,
    turns: Sequence[Turn],
    *,
    rate: int | None = None,
    network: Network | None = None,
    quiet: float = 0.6,
    reply_timeout: float = 8.0,
    lead: float = 0.4,
    tail: float = 0.3,
    call_id: str | None = None,
) -> DialogReport:
    """Call ``url`` as the provider of ``protocol`` would, say ``turns``, and report.

    Parameters
    ----------
    url : str
        A ``ws://`` URL, or ``host:port`` (``tcp://host:port``) for AudioSocket.
    protocol : str
        A name from :data:`voxwire.sim.PROVIDERS`.
    turns : sequence of Turn
        The script; every turn's speech at the line ``rate``. The first turn is said
        after ``lead`` seconds of silence and cannot barge in.
    rate : int, optional
        The line rate (the protocol's default when None).
    network : Network, optional
        Impairment of the path, both ways.
    quiet : float
        Seconds without audio after a reply began that end it (default 0.6).
    reply_timeout : float
        The longest the caller waits, from the end of a turn, for its reply to begin
        and finish, or to begin for a barge-in (default 8).
    lead, tail : float
        Silence before the first turn and after the last reply, in seconds.
    call_id : str, optional
        The call's identifier (default: a new one); the same id again is the provider
        re-opening the stream of the same call.

    Raises
    ------
    TypeError
        For a turn that is not a :class:`Turn`.
    ValueError
        For an unknown protocol, a rate the protocol does not run at, no turns, a first
        turn that barges in, or a negative time.

    Notes
    -----
    Bound the call with :func:`asyncio.wait_for`; it also ends when the server closes.
    """
    if protocol not in PROVIDERS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROVIDERS)}")
    script = _checked(turns, quiet=quiet, reply_timeout=reply_timeout, lead=lead, tail=tail)
    side = PROVIDERS[protocol](rate, call_id=call_id)
    dialog = _Dialog(
        side,
        script,
        network or Network(),
        quiet=quiet,
        reply_timeout=reply_timeout,
        lead=lead,
        tail=tail,
    )
    async with _connect(side, url) as (send, recv):
        return await dialog.run(send, recv)


def _checked(
    turns: Sequence[Turn], *, quiet: float, reply_timeout: float, lead: float, tail: float
) -> list[Turn]:
    """The script as a list, once its turns and times are valid."""
    script = list(turns)
    if not script:
        raise ValueError("a dialog needs at least one turn")
    for turn in script:
        if not isinstance(turn, Turn):
            raise TypeError(f"turns must be Turn objects, got {type(turn).__name__}")
    if script[0].barge_in:
        raise ValueError("the first turn has no reply to barge in on")
    for name, value in (("lead", lead), ("tail", tail)):
        _seconds(name, value)
    for name, value in (("quiet", quiet), ("reply_timeout", reply_timeout)):
        _seconds(name, value)
        if value == 0:
            raise ValueError(f"{name} must be > 0")
    return script


# --- RTP --------------------------------------------------------------------------------


class _RtpSide(ProviderSide):
    """The phone's end of an RTP line: PCMU (payload type 0) at 8000 Hz, 20 ms packets.

    It opens nothing and closes nothing (RTP has no signalling); the agent's packets are
    played as they come, in arrival order (a phone on loopback needs no jitter buffer).
    """

    name = "rtp"
    supports_marks = False
    supports_clear = False
    PAYLOAD_TYPE = 0

    def __init__(self) -> None:
        super().__init__(8000)
        self.sender = RtpSender(self.PAYLOAD_TYPE)
        #: packets of the agent's stream that started a talkspurt (marker bit)
        self.talkspurts = 0

    def opening(self) -> list[Message]:
        return []

    def audio(self, pcm: PCM) -> Message:
        return self.sender.packet(bytes(encode_ulaw(pcm)), len(pcm))

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, str):
            return [Unexpected("text on an RTP line")]
        try:
            packet = parse_rtp(message)
        except RtpError as exc:
            return [Unexpected(f"not an RTP packet: {exc}")]
        if packet.payload_type != self.PAYLOAD_TYPE:
            return [Unexpected(f"payload type {packet.payload_type}, not PCMU")]
        if packet.marker:
            self.talkspurts += 1
        if not packet.payload:
            return []
        return [PlayAudio(decode_ulaw(np.frombuffer(packet.payload, np.uint8)))]


class _UdpLine(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.errors = 0  # ICMP errors (nobody listening yet, or any more)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


@contextlib.asynccontextmanager
async def _connect_udp(host: str, port: int) -> AsyncIterator[tuple[Send, Recv]]:
    loop = asyncio.get_running_loop()
    transport, line = await loop.create_datagram_endpoint(_UdpLine, remote_addr=(host, port))

    async def send_udp(message: Message) -> None:
        if isinstance(message, bytes) and not transport.is_closing():
            transport.sendto(message)

    async def recv_udp() -> Message | None:
        return await line.queue.get()

    try:
        yield send_udp, recv_udp
    finally:
        transport.close()


class _RtpDialog(_Dialog):
    """A dialog on an RTP line: a :class:`_Dialog` whose barge-ins get a StopRecord."""

    def __init__(
        self,
        side: ProviderSide,
        turns: Sequence[Turn],
        network: Network,
        *,
        quiet: float,
        reply_timeout: float,
        lead: float,
        tail: float,
        stop_gap: float,
    ) -> None:
        super().__init__(
            side, turns, network, quiet=quiet, reply_timeout=reply_timeout, lead=lead, tail=tail
        )
        self.stop_gap = round(stop_gap * self.rate)

    def _stop_after(self, onset: int, end: int) -> int:
        """Where the playout that runs on from position ``onset`` without a pause longer
        than ``stop_gap`` ends, counting only what played by position ``end``."""
        position = onset
        for start, pcm, _ in self.playout.segments:
            stop = min(end, start + len(pcm))
            if stop <= position:
                continue
            if start > position + self.stop_gap or start >= end:
                break
            position = stop
        return position

    def _finish(self) -> DialogReport:
        report = super()._finish()
        ended = self.ended if self.ended is not None else self.loop.time()
        end = self.playout.sample(ended)
        for i, s in enumerate(self.said_turns):
            if not s.turn.barge_in or i == 0 or s.onset >= end:
                continue
            stop = self._stop_after(s.onset, end)
            previous = report.turns[i - 1]
            report.stops.append(
                StopRecord(
                    turn=previous.index,
                    onset=s.onset / self.rate,
                    at=stop / self.rate,
                    position=stop,
                    played_received_samples=self.received.played_index(stop),
                )
            )
            # the reply was playing when the barge-in began: it was cut
            previous.cut = previous.cut or (stop > s.onset and previous.reply_start is not None)
        return report


async def place_rtp_dialog(
    host: str,
    port: int,
    turns: Sequence[Turn],
    *,
    network: Network | None = None,
    quiet: float = 0.6,
    reply_timeout: float = 8.0,
    lead: float = 0.4,
    tail: float = 0.3,
    stop_gap: float = 0.2,
) -> DialogReport:
    """Call an RTP agent at ``host:port`` as a phone would, say ``turns``, and report.

    The phone sends PCMU (payload type 0) at 8000 Hz, one packet per 20 ms in real time,
    from a port of its own, and plays the agent's packets as they arrive (see "RTP" in
    the module docstring). The report is :func:`place_dialog`'s, with
    ``protocol == "rtp"``, no clears or marks, and a :class:`StopRecord` in
    :attr:`DialogReport.stops` for every barge-in turn said while the call ran.

    Parameters
    ----------
    host, port : str, int
        Where the agent listens (:func:`voxwire.aio.rtp_call.serve_rtp`).
    turns : sequence of Turn
        The script, every turn's speech at 8000 Hz; as in :func:`place_dialog`.
    network, quiet, reply_timeout, lead, tail
        As in :func:`place_dialog`.
    stop_gap : float
        The longest pause in the playout that a reply runs on across (default 0.2 s):
        where the playout after a barge-in's onset first pauses for longer, the cut
        reply ended.

    Raises
    ------
    TypeError
        For a turn that is not a :class:`Turn`.
    ValueError
        For no turns, a first turn that barges in, a negative time, or a port outside
        1..65535.

    Notes
    -----
    RTP cannot tell the phone the call is over: the dialog ends by its script. Bound
    it with :func:`asyncio.wait_for`.
    """
    script = _checked(turns, quiet=quiet, reply_timeout=reply_timeout, lead=lead, tail=tail)
    _seconds("stop_gap", stop_gap)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port!r}")
    side = _RtpSide()
    dialog = _RtpDialog(
        side,
        script,
        network or Network(),
        quiet=quiet,
        reply_timeout=reply_timeout,
        lead=lead,
        tail=tail,
        stop_gap=stop_gap,
    )
    async with _connect_udp(host, port) as (send, recv):
        return await dialog.run(send, recv)
