"""One media-stream call without I/O: messages and times in; events, messages and decisions out.

:class:`CallCore` holds everything a WebSocket or AudioSocket call decides, and nothing it
waits for. A driver (:mod:`voxwire.aio.session` is the asyncio one) moves bytes and time:

* every message read goes to :meth:`CallCore.receive` with the driver's clock;
* the events for the application wait in :attr:`CallCore.events`, in order;
* the messages to send wait in :attr:`CallCore.outbox`, in order;
* :meth:`CallCore.get_timer` says when to call :meth:`CallCore.handle_timer` next;
* the paced stream (:attr:`CallCore.stream`, opened by the start message) is driven by a
  pacer whose items go to :meth:`CallCore.paced`;
* every step returns ``None`` (go on) or the :class:`~voxwire.call.policy.CloseDecision`
  the call closes with, also kept in :attr:`CallCore.closing`. Once it is made nothing more
  is queued to send, and the driver sends what is queued and closes with its code.

What the core applies
---------------------
The limits of :class:`~voxwire.call.policy.CallPolicy` (size, rate window, idleness, the
authentication deadline, a peer that does not read); the authentication gate (until a
connection that showed no token on the upgrade shows one in its start message, no event
reaches the application); mark resolution (a mark the provider echoes after a clear is
swallowed, one it echoes in time moves the played position); the bound on queued audio
events (past ``Limits.max_pending_events`` an :class:`~voxwire.protocols.events.Audio`
event is dropped and counted); AudioSocket's re-announced rate (a second start opens a new
paced stream). Outbound, the order is fixed once: :meth:`CallCore.play` resamples to the
line rate, the pacer paces, and :meth:`CallCore.paced` visits the codec once per frame.

>>> from voxwire.protocols.twilio import TwilioCodec
>>> from voxwire.sim.providers import TwilioSide
>>> side = TwilioSide()
>>> core = CallCore(TwilioCodec(), now=0.0)
>>> for message in side.opening():
...     core.receive(message, 0.0)
>>> import numpy as np
>>> core.receive(side.audio(np.zeros(160, dtype=np.int16)), 0.02)
>>> [type(event).__name__ for event in core.events]
['Connected', 'CallStarted', 'Audio']
>>> core.get_timer()  # the idle deadline: nothing arrived for 15 s
15.02
>>> core.handle_timer(15.02)
CloseDecision(kind='idle', code=4000, reason='idle for 15 s')
"""

from __future__ import annotations

from collections import deque

from voxwire.call.policy import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CallPolicy,
    CloseDecision,
    Limits,
)
from voxwire.pacing import MarkDue, MarkOut, PacedItem, PacedStream
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.events import Audio, CallStarted, Event, MarkPlayed, Stopped
from voxwire.protocols.stats import SessionStats
from voxwire.security import TokenAuth, TokenClaims

__all__ = ["CallCore"]


class CallCore:
    """One media-stream call's decisions, with the driver's clock passed in.

    ``codec`` is the call's :class:`~voxwire.protocols.base.MediaStreamCodec`, ``now`` the
    driver's clock when the call begins (its idle and authentication clocks start then).
    ``authenticated=False`` means the upgrade request did not carry the token, so the
    start message must (``auth.custom_parameter``) within ``limits.auth_timeout``.
    ``credential`` are the claims of the token the upgrade request carried.
    """

    def __init__(
        self,
        codec: MediaStreamCodec,
        limits: Limits | None = None,
        *,
        now: float = 0.0,
        auth: TokenAuth | None = None,
        authenticated: bool = True,
        credential: TokenClaims | None = None,
    ) -> None:
        self.codec = codec
        self.limits = limits = limits or Limits()
        self._auth = auth
        self._authenticated = authenticated
        #: the claims of the signed per-call token the call authenticated with, if any
        self.credential = credential
        #: the call's limits as decisions
        self.policy = CallPolicy(limits, now, authenticated=authenticated)
        #: events for the application, oldest first (the driver takes them from the left)
        self.events: deque[Event] = deque()
        #: messages to send, oldest first (the driver takes them from the left)
        self.outbox: deque[Outbound] = deque()
        #: the outbound paced stream, opened by the start message (None before)
        self.stream: PacedStream | None = None
        #: why the call closes, once decided (then nothing more is queued to send)
        self.closing: CloseDecision | None = None
        #: no more input will be taken: the stream stopped, the peer left, or the call closes
        self.input_ended = False
        #: inbound audio events dropped because the application fell behind
        self.events_dropped = 0
        #: while set, :meth:`play` drops the agent's audio (:meth:`mute`)
        self.muted = False
        #: line-rate samples :meth:`play` dropped while muted
        self.muted_samples = 0
        self._codec_due: float | None = None

    # --- what the call knows -----------------------------------------------------------

    @property
    def started(self) -> CallStarted | None:
        """The start message, once received."""
        return self.codec.started

    @property
    def stats(self) -> SessionStats:
        """The codec's :class:`~voxwire.protocols.stats.SessionStats`."""
        return self.codec.stats

    @property
    def authenticated(self) -> bool:
        """Whether the call has shown a valid token (or none was asked for)."""
        return self._authenticated

    def begin(self, now: float) -> None:
        """Start the call's clocks (idleness, the rate window, the authentication
        deadline) at ``now``: a driver constructing the core before its first read."""
        self.policy = CallPolicy(self.limits, now, authenticated=self._authenticated)

    # --- input -------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> CloseDecision | None:
        """Take one message read at ``now``: :meth:`decode` it, then :meth:`route` it."""
        self.route(self.decode(message, now))
        return self.closing

    def decode(self, message: str | bytes, now: float) -> list[Event]:
        """The codec's events for one message read at ``now``, after the size limit and
        charged to the rate window; none when a limit refuses it (see :attr:`closing`).

        The first half of :meth:`receive`, for a driver that tells a codec's failure
        (raised here) from a routing one (raised by :meth:`route`).
        """
        policy = self.policy
        refused = policy.received(len(message), now)
        if refused is not None:
            self.close_for(refused)
            return []
        codec = self.codec
        stats = codec.stats
        samples = stats.audio_samples_in
        events = codec.receive(message, now)
        audio = stats.audio_samples_in - samples
        if audio:
            started = codec.started
            seconds = audio / started.media_format.sample_rate if started is not None else 0.0
        else:
            seconds = 0.0
        refused = policy.charge(now, seconds)
        if refused is not None:
            self.close_for(refused)
            return []
        return events

    def route(self, events: list[Event]) -> CloseDecision | None:
        """Apply the authentication gate and mark resolution to the codec's ``events`` and
        queue what passes for the application. A :class:`Stopped` ends the input."""
        for event in events:
            if isinstance(event, CallStarted):
                if self.stream is not None:
                    # AudioSocket re-announces the rate: restart the paced stream
                    self.stream = None
                    self._authenticated = True
                    self.policy.authenticated()
                refused = self._on_started(event)
                if refused:
                    return self.close_for(CloseDecision("auth", CLOSE_POLICY, refused))
            elif not self._authenticated:
                continue
            if isinstance(event, MarkPlayed) and self.stream is not None:
                resolved = self.stream.resolve_mark(event.name)
                if resolved is None:
                    continue
                event = resolved
            self._deliver(event)
            if isinstance(event, Stopped):
                self.input_ended = True
                return self.closing
        return self.closing

    def end_of_input(self) -> None:
        """The peer closed its side: no more messages come (the idle and authentication
        deadlines no longer apply)."""
        self.input_ended = True

    # --- time --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due: the codec's timer, the idle deadline or
        the authentication deadline, whichever is first; None once the input ended."""
        if self.input_ended or self.closing is not None:
            return None
        policy = self.policy
        when = policy.idle_due
        auth = policy.auth_due
        if auth is not None and auth < when:
            when = auth
        codec_due = self._codec_due = self.codec.get_timer()
        if codec_due is not None and codec_due < when:
            when = codec_due
        return when

    def handle_timer(self, now: float) -> CloseDecision | None:
        """Run what fell due by ``now`` of the deadlines :meth:`get_timer` last gave (a
        timer firing early does nothing)."""
        if self.input_ended or self.closing is not None:
            return self.closing
        codec_due = self._codec_due
        if codec_due is not None and codec_due <= now:
            self._codec_due = None
            refused = self.route(self.codec.handle_timer(now))
            if refused is not None or self.input_ended:
                return refused
        policy = self.policy
        refused = policy.check_idle(now)
        if refused is None and not self._authenticated:
            refused = policy.check_auth_deadline(now)
        if refused is not None:
            self.input_ended = True
            return self.close_for(refused)
        return None

    # --- output ------------------------------------------------------------------------

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        """Queue audio for paced playback (at ``sample_rate``, default the line rate),
        resampled once, here; dropped (and counted in :attr:`muted_samples`) while
        :attr:`muted`, and dropped once the provider has stopped the stream."""
        stream = self._require_stream()
        if self.codec.stopped:
            return
        line = self.codec.line_pcm(pcm, sample_rate)
        if self.muted:
            self.muted_samples += len(line)
            return
        stream.push(line)

    def flush(self) -> None:
        """Pad and queue the last partial frame (the end of an utterance)."""
        self._require_stream().flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; a :class:`MarkPlayed` follows."""
        self._require_stream().mark(name)

    def clear(self) -> None:
        """Barge-in: drop the queued audio here (its marks come back as cleared) and queue
        the provider's clear message."""
        stream = self._require_stream()
        for event in stream.clear():
            self._deliver(event)
        if not self.codec.stopped and self.closing is None:
            self.outbox.extend(self.codec.send_clear())

    def mute(self) -> None:
        """Silence the agent: what is queued is dropped, here and at the provider (as
        :meth:`clear` does), and what it plays next is dropped until :meth:`unmute`."""
        if self.muted:
            return
        self.muted = True
        if self.stream is not None and self.closing is None:
            self.clear()

    def unmute(self) -> None:
        """Let the agent's audio through again (from what it plays next)."""
        self.muted = False

    def paced(self, item: PacedItem) -> CloseDecision | None:
        """The pacer's hand-off: a frame (or a mark) whose time has come. A frame visits
        the codec once; a :class:`MarkDue` (a mark the stream timed itself) becomes the
        application's :class:`MarkPlayed`. Refused when the peer is not reading."""
        if self.closing is not None or self.codec.stopped:
            return self.closing  # the stream ended with audio still queued: nothing goes out
        if isinstance(item, MarkOut):
            messages = self.codec.send_mark(item.name)
        elif isinstance(item, MarkDue):
            self._deliver(MarkPlayed(item.name))
            return None
        else:
            messages = self.codec.send_audio(item)
        # A peer that has stopped reading: holding its audio would grow without bound.
        refused = self.policy.check_pending_out(len(self.outbox), len(messages))
        if refused is not None:
            return self.close_for(refused)
        self.outbox.extend(messages)
        return None

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> CloseDecision:
        """Decide to close (the application's close, or a driver's failure); the first
        decision stands and is returned."""
        return self.close_for(CloseDecision("", code, reason))

    def close_for(self, decision: CloseDecision) -> CloseDecision:
        """Decide to close for ``decision`` (a limit, a failure); the first decision
        stands and is returned."""
        if self.closing is None:
            self.closing = decision
            self.input_ended = True
        return self.closing

    # --- positions (line-rate samples since the call started) --------------------------

    @property
    def played_samples(self) -> int:
        """Samples the caller is known to have heard (from marks)."""
        return self.stream.played_samples if self.stream else 0

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds."""
        return self.stream.played_seconds if self.stream else 0.0

    def playout_position(self, now: float) -> int:
        """Samples the phone has played by ``now`` (the send clock's estimate,
        :meth:`voxwire.pacing.PacedStream.playout_position`); 0 before the call starts."""
        return self.stream.playout_position(now) if self.stream else 0

    @property
    def queued_total(self) -> int:
        """Samples queued since the call started: where the next audio begins."""
        return self.stream.queued_total if self.stream else 0

    @property
    def queued_samples(self) -> int:
        """Samples waiting in the pacer."""
        return self.stream.queued_samples if self.stream else 0

    # --- internals ---------------------------------------------------------------------

    def _require_stream(self) -> PacedStream:
        if self.stream is None:
            raise RuntimeError("the call has not started yet: wait for CallStarted")
        return self.stream

    def _deliver(self, event: Event) -> None:
        events = self.events
        if isinstance(event, Audio) and len(events) >= self.limits.max_pending_events:
            self.events_dropped += 1
            return
        events.append(event)

    def _on_started(self, started: CallStarted) -> str:
        """Open the paced stream; the reason when the start is refused."""
        if not self._authenticated:
            if self._auth is None:
                return "authentication failed"
            credential = self._auth.check_started(started)
            if not credential.ok:
                return f"authentication failed: {credential.reason}"
            self._authenticated = True
            self.policy.authenticated()
            self.credential = credential.claims
        self.stream = PacedStream(
            started.media_format.sample_rate,
            frame_ms=self.codec.frame_ms,
            local_marks=not self.codec.supports_marks,
            name=started.stream_id,
        )
        return ""
