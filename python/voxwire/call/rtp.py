"""The rules of one RTP audio stream, without I/O: datagrams and times passed in, packets
and frames returned.

:class:`RtpEndpointCore` holds an :class:`~voxwire.protocols.rtp_session.RtpSession` and
the outbound :class:`~voxwire.pacing.PacedStream`, and decides everything the asyncio
driver (:class:`voxwire.aio.rtp.RtpEndpoint`) does not: where the stream comes from, when
the playout clock ticks and which frames fall due, which packet each paced frame becomes.
It never touches a socket or a clock; every method that needs the time takes ``now``
(seconds, the clock of :meth:`RtpSession.pull`, the driver's loop time).

>>> from voxwire.rtp import parse_rtp
>>> peer, core = RtpSession("pcmu"), RtpEndpointCore(RtpSession("pcmu"))
>>> core.start(now=100.0)
>>> core.receive(peer.send(np.zeros(160, np.int16)), ("192.0.2.7", 4000), now=100.001)
'stored'
>>> core.remote_addr                         # latched onto the first packet's source
('192.0.2.7', 4000)
>>> core.receive(b"...", ("198.51.100.1", 9), now=100.002) is None   # someone else
True
>>> core.get_timer(), len(core.handle_timer(now=100.05))   # ticks at 100.00, .02, .04
(100.0, 3)
>>> packet = parse_rtp(core.send(np.zeros(160, np.int16), now=100.05))
>>> packet.payload_type, len(packet.payload)
(0, 160)

Receiving
---------
Every datagram goes to :meth:`RtpSession.receive` with its arrival time. Without a
``remote_addr`` the core answers where the stream comes from: it latches onto the source
of the first packet the session accepts (stored, duplicate or late: a valid RTP packet of
the session's payload type), as symmetric RTP and NAT traversal need, and ignores
datagrams from anyone else afterwards (counted in :attr:`RtpEndpointCore.foreign_datagrams`;
:meth:`~RtpEndpointCore.receive` returns None for them). :attr:`~RtpEndpointCore.last_received`
and :attr:`~RtpEndpointCore.remote_ssrc` tell when the last accepted packet came and from
which source. Setting :attr:`~RtpEndpointCore.remote_addr` later (a signalled call whose
peer moved) changes where packets go, not whether the core has latched.

The playout clock starts at :meth:`~RtpEndpointCore.start` and calls
:meth:`RtpSession.pull` once per frame: tick ``k`` is due at ``start + k * frame``
(:meth:`~RtpEndpointCore.get_timer`), computed from the start time and never accumulated,
so the clock does not drift over a long call. :meth:`~RtpEndpointCore.handle_timer`
returns every frame that fell due by ``now``: when the driver was held up past one or more
ticks they are all pulled at once (no audio is lost); after a stall longer than
``max_catch_up`` the clock is re-based to now and the skipped ticks are counted in
:attr:`~RtpEndpointCore.stalls`.

Sending
-------
:meth:`~RtpEndpointCore.push` queues PCM of any length on the paced stream; its driver
hands each frame back to :meth:`~RtpEndpointCore.send` when its time comes (one frame per
frame duration, at most ``lead`` ahead of real time), and the frame is encoded into one
RTP packet then. When the queued audio ran out (a pause between replies, or a stall, which
the paced stream counts as an underrun), after :meth:`~RtpEndpointCore.clear` and after a
mute, the stream restarts as a new talkspurt: the RTP timestamp skips over the time
nothing was sent, in whole frames, from the end of the audio sent before (on the send
clock) to the time the first frame after it leaves (rounded; no skip when less than half
a frame passed, as when new audio follows a clear at once), and the packet after a skip
carries the marker bit, as the stream's first packet does, so the peer plays a pause
instead of a loss (RFC 3551 section 4.1). While :attr:`~RtpEndpointCore.muted` the frames' time
passes unsent (counted in :attr:`~RtpEndpointCore.muted_frames`); the sequence numbers go
on unbroken afterwards. A frame due before any remote address is known is encoded but not
sent (counted in :attr:`~RtpEndpointCore.unsent_frames`).

:meth:`~RtpEndpointCore.clear` drops the queued audio (barge-in) and returns the marks
that were pending, as cleared. With ``clear_tail`` frames it also ends a stream that was
still playing with that many packets of faded-out silence, made at once and left in
:attr:`~RtpEndpointCore.outbox` for the driver to send, so that the peer's decoder plays
silence rather than concealing the cut (WebRTC calls use 3).
:meth:`~RtpEndpointCore.mark` queues a named mark after the audio queued so far; the
paced stream times it itself (RTP carries no marks) and hands it out as
:class:`~voxwire.pacing.MarkDue` when that audio's play-out time has passed. Marks whose
names start with ``voxwire-drain-`` are the driver's own
(:meth:`~RtpEndpointCore.drain_mark`): :meth:`~RtpEndpointCore.clear` does not report
them.

The call on the stream
----------------------
:class:`voxwire.aio.rtp_call.RtpCall` turns the stream into a call with two rules of its
own. :func:`rtp_frame_step` says what each frame of playout is to the call: the call
starts with the first frame after the stream's first packet came (silence before it is
not part of the call), and ends (``"idle"``) on the first frame when no packet has come
for more than ``idle_timeout`` seconds, counted from the last packet, or from when the
call was made while none has come. :func:`rtp_call_started` builds the
:class:`~voxwire.protocols.events.CallStarted` of that first packet: its ``stream_id``
is ``host:port/ssrc`` (the SSRC in hex) and its :class:`MediaFormat` the session's codec
at the session's rate (``mulaw`` or ``alaw`` at 8000 Hz; for Opus, which
:data:`~voxwire.protocols.events.Encoding` has no name for, ``l16`` at the decoder's rate,
with ``metadata["codec"] == "opus"``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Literal

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.pacing import PacedItem, PacedStream
from voxwire.protocols.events import CallStarted, Encoding, MarkPlayed, MediaFormat
from voxwire.protocols.rtp_session import ReceivedFrame, ReceiveResult, RtpSession

__all__ = [
    "DRAIN_MARK_PREFIX",
    "TAIL_FADE_MS",
    "Address",
    "RtpEndpointCore",
    "RtpFrameStep",
    "rtp_call_started",
    "rtp_frame_step",
]

Address = tuple[str, int]

DRAIN_MARK_PREFIX = "voxwire-drain-"
"""Prefix of the marks :meth:`RtpEndpointCore.drain_mark` queues (the driver's own)."""

TAIL_FADE_MS = 5
"""Length of the fade that starts a clear's tail (:meth:`RtpEndpointCore.clear`), ms."""

_ACCEPTED = ("stored", "duplicate", "late")  # packets of the stream, played or not
_TICK_EPS = 1e-6  # a tick armed for `when` and run at `when` minus rounding is due


class RtpEndpointCore:
    """One RTP stream's rules; see the module docstring.

    Parameters
    ----------
    session : RtpSession
        The sans-I/O session (codec, payload type, jitter buffer settings).
    remote_addr : (host, port), optional
        Where to send; by default the source of the first accepted packet.
    lead : float
        How far ahead of real time sent audio may run, seconds (at least one frame).
    max_catch_up : float
        Longest stall, seconds, after which the missed ticks are pulled at once; after a
        longer one the playout clock is re-based.
    clear_tail : int
        Frames of silence sent at once after a :meth:`clear` that cuts a stream still
        playing, the first fading out the cut audio (see :meth:`clear`); 0 sends none.
    """

    def __init__(
        self,
        session: RtpSession,
        *,
        remote_addr: Address | None = None,
        lead: float = 0.04,
        max_catch_up: float = 0.2,
        clear_tail: int = 0,
    ) -> None:
        if clear_tail < 0:
            raise ValueError(f"clear_tail must be >= 0 frames, got {clear_tail}")
        self.session = session
        #: where packets go (None: not known yet)
        self.remote_addr = remote_addr
        self.frame_duration = session.frame_ms / 1000
        self.max_catch_up = max_catch_up
        self._latched = remote_addr is not None
        self.stream = PacedStream(
            session.sample_rate,
            frame_ms=session.frame_ms,
            lead=max(lead, self.frame_duration),
            local_marks=True,
            name="rtp",
        )
        # playout clock
        self._start: float | None = None
        self._tick_index = 0
        # send side: the end time of the last frame sent, the paced stream's underruns
        # seen so far, and whether the next frame restarts the stream
        self._tx_end: float | None = None
        self._tx_underruns = 0
        self._tx_restart = False
        self._drain_names = itertools.count()
        #: playout ticks skipped after stalls longer than ``max_catch_up``
        self.stalls = 0
        #: datagrams ignored because they came from another address than the latched one
        self.foreign_datagrams = 0
        #: frames due before any remote address was known (encoded, not sent)
        self.unsent_frames = 0
        #: while True the paced audio goes on (its time passes, its marks come back) but
        #: no packet is made: a signalled call on hold (RFC 3264 section 8.4)
        self.muted = False
        #: frames that were due while muted
        self.muted_frames = 0
        #: arrival time of the last accepted packet (None: none yet)
        self.last_received: float | None = None
        #: SSRC of the last accepted packet
        self.remote_ssrc: int | None = None
        #: frames of silence a :meth:`clear` sends after a stream still playing
        self.clear_tail = clear_tail
        #: packets made outside the paced stream (a clear's tail), for the driver to send
        #: now, oldest first
        self.outbox: deque[bytes] = deque()
        #: tail frames sent after clears
        self.tail_frames = 0

    @property
    def latched(self) -> bool:
        """True once the stream's source is fixed (given, or the first accepted packet's)."""
        return self._latched

    # --- receive side ----------------------------------------------------------------

    def receive(
        self, datagram: bytes | bytearray | memoryview, source: Address, now: float
    ) -> ReceiveResult | None:
        """Take one datagram that came from ``source`` at ``now``.

        Returns the session's verdict, or None for a datagram from another source than
        the latched one (counted in :attr:`foreign_datagrams`, not looked at).
        """
        if self._latched and source != self.remote_addr:
            self.foreign_datagrams += 1
            return None
        result = self.session.receive(datagram, now)
        if result in _ACCEPTED:
            self.last_received = now
            self.remote_ssrc = int.from_bytes(datagram[8:12], "big")
            if not self._latched:
                self.remote_addr = source
                self._latched = True
        return result

    def start(self, now: float) -> None:
        """Start the playout clock: its first tick is due at ``now``."""
        self._start = now
        self._tick_index = 0

    def get_timer(self) -> float | None:
        """When the next playout tick is due (None before :meth:`start`)."""
        if self._start is None:
            return None
        return self._start + self._tick_index * self.frame_duration

    def handle_timer(self, now: float) -> list[ReceivedFrame]:
        """The frames of playout that fell due by ``now``, oldest first (none before
        :meth:`start` or before the next tick)."""
        start = self._start
        if start is None:
            return []
        f = self.frame_duration
        behind = now - (start + self._tick_index * f)
        if behind > self.max_catch_up:
            # re-base: skip the ticks of the stall instead of pulling them all at once
            skipped = math.floor(behind / f)
            self.stalls += skipped
            self._tick_index += skipped
        frames: list[ReceivedFrame] = []
        while start + self._tick_index * f <= now + _TICK_EPS:
            frames.append(self.session.pull(now))
            self._tick_index += 1
        return frames

    # --- send side -------------------------------------------------------------------

    def push(self, pcm: PCM) -> None:
        """Queue mono PCM16 at the session's rate for paced sending."""
        self.stream.push(pcm)

    def flush(self) -> None:
        """Pad a partial frame with silence and queue it (the end of an utterance)."""
        self.stream.flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (a partial frame is padded).

        Raises
        ------
        ValueError
            A name starting with :data:`DRAIN_MARK_PREFIX` (the driver's own marks).
        """
        if name.startswith(DRAIN_MARK_PREFIX):
            raise ValueError(
                f"mark names starting with {DRAIN_MARK_PREFIX!r} are the endpoint's own"
            )
        self.stream.mark(name)

    def drain_mark(self) -> str:
        """Queue a mark of the driver's own after the audio queued so far; return its
        name (its :class:`~voxwire.pacing.MarkDue` says that audio has played out)."""
        name = f"{DRAIN_MARK_PREFIX}{next(self._drain_names)}"
        self.stream.mark(name)
        return name

    def clear(self, now: float | None = None) -> list[MarkPlayed]:
        """Drop the audio not sent yet; the next audio starts a talkspurt.

        Returns the marks of :meth:`mark` that were pending, as cleared (the driver's own
        drain marks are dropped silently).

        With :attr:`clear_tail` frames and ``now`` given, a clear that cuts a stream
        still playing (its sent audio ends less than a frame before ``now``, or later)
        also ends it cleanly: it puts :attr:`clear_tail` packets in :attr:`outbox`, with
        the timestamps and sequence numbers that follow the last packet sent, so the peer
        plays them straight after the audio it has. The first fades the cut audio out
        over :data:`TAIL_FADE_MS` (a raised-cosine ramp over the start of the first frame
        dropped) into silence, the others are silence. Without them the peer's decoder
        conceals the missing packets, continuing the reply's last sound while it fades (in
        Chromium, 125 ms more of it at the median: ``docs/webrtc.md``); with them the reply
        ends where its last packet does, with no click. The tail is not sent audio of the
        reply: :attr:`~voxwire.pacing.PacedStream.sent_samples` and the played position
        stop at the cut, and the next talkspurt's timestamp skip counts from the tail's
        end. Muted, or with no remote address, nothing is sent.
        """
        tail = self._tail_due(now)
        fade_from = self.stream.next_audio() if tail else None
        cleared = [m for m in self.stream.clear() if not m.name.startswith(DRAIN_MARK_PREFIX)]
        if tail:
            self._send_tail(fade_from)
        self._tx_restart = True
        return cleared

    def _tail_due(self, now: float | None) -> bool:
        return (
            self.clear_tail > 0
            and now is not None
            and not self.muted
            and not self._tx_restart  # nothing sent since the last clear or pause
            and self.remote_addr is not None
            and self._tx_end is not None
            and self._tx_end > now - self.frame_duration
        )

    def _send_tail(self, fade_from: PCM | None) -> None:
        n = self.stream.frame_samples
        first = np.zeros(n, np.int16)
        if fade_from is not None:
            fade_n = min(len(fade_from), n, self.session.sample_rate * TAIL_FADE_MS // 1000)
            ramp = 0.5 + 0.5 * np.cos(np.pi * (np.arange(fade_n) + 0.5) / fade_n)
            first[:fade_n] = np.round(fade_from[:fade_n] * ramp).astype(np.int16)
        silence = np.zeros(n, np.int16)
        for i in range(self.clear_tail):
            self.outbox.append(self.session.send(first if i == 0 else silence))
        self.tail_frames += self.clear_tail
        assert self._tx_end is not None
        self._tx_end += self.clear_tail * self.frame_duration

    def send(self, item: PacedItem, now: float) -> bytes | None:
        """The RTP packet for a frame the paced stream handed out at ``now``, or None:
        not a frame (a mark), muted, or no remote address known yet."""
        if not isinstance(item, np.ndarray):
            return None
        if self.muted:
            # the frame's time passes unsent; the stream resumes as a new talkspurt, with
            # the sequence numbers unbroken and the timestamp skipped over the pause
            self.muted_frames += 1
            self._tx_restart = True
            return None
        f = self.frame_duration
        underruns = self.stream.underruns
        restarted = self._tx_restart or underruns != self._tx_underruns
        self._tx_restart = False
        self._tx_underruns = underruns
        tx_end = self._tx_end
        if tx_end is None or restarted:
            # The stream (re)started at `now`: skip the timestamp over the time nothing was
            # sent, in whole frames, so the peer plays a pause rather than a loss.
            if tx_end is not None:
                gap = round((now - tx_end) / f)
                if gap > 0:
                    self.session.pause(gap)
            self._tx_end = now + f
        else:
            self._tx_end = tx_end + f
        wire = self.session.send(item)
        if self.remote_addr is None:
            self.unsent_frames += 1
            return None
        return wire

    @property
    def queued_seconds(self) -> float:
        """Audio waiting to be sent, seconds."""
        return self.stream.queued_samples / self.session.sample_rate


# --- the call on the stream -----------------------------------------------------------

RtpFrameStep = Literal["wait", "start", "audio", "idle"]
"""What a frame of playout is to the call: before its stream (``wait``, dropped), its
first frame (``start``: deliver :class:`CallStarted`, then the frame), a frame of the call
(``audio``), or the end of an idle stream (``idle``)."""

_ENCODING: dict[str, Encoding] = {"pcmu": "mulaw", "pcma": "alaw", "opus": "l16"}


def rtp_frame_step(
    now: float,
    *,
    started: bool,
    last_received: float | None,
    idle_since: float,
    idle_timeout: float,
) -> RtpFrameStep:
    """What the frame of playout at ``now`` is to the call.

    ``started`` says whether the call has started, ``last_received`` when the stream's
    last packet came (None: none yet), ``idle_since`` when the inactivity timeout started
    counting (the last packet, or when the call was made; a signalled call may count from
    elsewhere, such as the end of a hold).
    """
    if now - idle_since > idle_timeout:
        return "idle"
    if not started:
        return "wait" if last_received is None else "start"
    return "audio"


def rtp_call_started(
    session: RtpSession, remote_addr: Address | None, ssrc: int | None
) -> CallStarted:
    """The :class:`CallStarted` of a stream from ``remote_addr`` whose SSRC is ``ssrc``
    (its ids are ``host:port/ssrc``; a signalled call adds its own)."""
    host, port = remote_addr or ("", 0)
    ssrc = ssrc or 0
    ident = f"{host}:{port}/{ssrc:08x}"
    return CallStarted(
        stream_id=ident,
        call_id=ident,
        media_format=MediaFormat(_ENCODING[session.codec], session.sample_rate),
        metadata={
            "remote_addr": f"{host}:{port}",
            "ssrc": ssrc,
            "codec": session.codec,
            "payload_type": session.payload_type,
            "clock_rate": session.clock_rate,
        },
    )
