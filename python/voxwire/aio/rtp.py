"""An asyncio UDP endpoint for one RTP audio stream over an :class:`RtpSession`.

>>> async def main():                                                  # doctest: +SKIP
...     session = RtpSession("pcmu")
...     async with await RtpEndpoint.open(session, ("127.0.0.1", 40000)) as ep:
...         async for frame in ep:              # one ReceivedFrame every 20 ms
...             ep.send(reply_for(frame.pcm))   # paced out in real time

The endpoint only moves datagrams and time; the session does the rest.

Receiving
---------
Every datagram goes to :meth:`RtpSession.receive` with the loop's clock as its arrival
time. A playout clock started when the endpoint opens calls :meth:`RtpSession.pull` once
per frame: tick ``k`` is armed with ``loop.call_at(start + k * frame)``, computed from the
start time and never accumulated, so the clock does not drift over a long call. When the
loop was held up past one or more ticks, the frames that fell due are pulled at once (no
audio is lost); after a stall longer than ``max_catch_up`` the clock is re-based to now
and the skipped ticks are counted in :attr:`RtpEndpoint.stalls`. Frames go to the
``on_frame`` callback and to the async iterator, whose queue holds ``max_queue`` frames
and drops the oldest (counted in :attr:`RtpEndpoint.frames_dropped`) when nobody reads.

Without a ``remote_addr``, the endpoint answers where the stream comes from: it latches
onto the source of the first valid RTP packet of the session's payload type (symmetric
RTP, as NAT traversal needs) and ignores datagrams from anyone else afterwards.
:attr:`RtpEndpoint.last_received` and :attr:`RtpEndpoint.remote_ssrc` tell when the last
such packet came and from which source.

:meth:`RtpEndpoint.open` binds a socket of its own; :meth:`RtpEndpoint.attach` runs an
endpoint for one remote address on a socket shared with others, whose owner hands it that
address's datagrams (:meth:`RtpEndpoint.datagram_received`).

Sending
-------
:meth:`RtpEndpoint.send` queues PCM of any length on a
:class:`~voxwire.pacing.PacedStream` driven by the process's one
:class:`~voxwire.aio.pacer.Pacer`: one frame leaves per frame duration, computed from an
epoch, at most ``lead`` ahead of real time, with no burst after a stall. Each frame is
encoded into one RTP packet when it leaves. When the queued audio ran out (a pause
between replies, or a stall) the RTP timestamp skips over the gap in whole frames and the
next packet carries the marker bit, so the peer sees a new talkspurt instead of loss
(RFC 3551 section 4.1). :meth:`clear` drops the queued audio (barge-in); :meth:`drain`
waits until the queued audio has been sent and its time has passed. :meth:`mark` queues a
named mark after the audio queued so far; ``on_mark`` is called with its name when that
audio's play-out time has passed (RTP carries no marks: the send clock times them).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Protocol

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.aio.pacer import Pacer, get_pacer
from voxwire.pacing import MarkDue, PacedItem, PacedStream
from voxwire.protocols.events import MarkPlayed
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession

__all__ = ["RtpEndpoint"]

log = logging.getLogger("voxwire.aio")

Address = tuple[str, int]

_DRAIN = "voxwire-drain-"  # prefix of the endpoint's own marks (drain)
_ACCEPTED = ("stored", "duplicate", "late")  # packets of the stream, played or not


class _CountsSocketErrors(Protocol):
    socket_errors: int


class DatagramForwarder(asyncio.DatagramProtocol):
    """The protocol of a UDP socket whose ``owner`` handles what comes in: each datagram
    goes to ``deliver`` with its source as a ``(host, port)`` pair, and each ICMP error
    (port unreachable while the peer is not up yet) is counted in the owner's
    ``socket_errors``: UDP goes on."""

    def __init__(
        self, owner: _CountsSocketErrors, deliver: Callable[[bytes, Address], None]
    ) -> None:
        self.owner = owner
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.deliver(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.owner.socket_errors += 1


class RtpEndpoint:
    """One RTP stream over UDP; create it with :meth:`open`.

    Parameters
    ----------
    session : RtpSession
        The sans-I/O session (codec, payload type, jitter buffer settings).
    remote_addr : (host, port), optional
        Where to send; by default the source of the first valid packet received.
    on_frame : callable, optional
        Called with every :class:`ReceivedFrame` on the playout clock.
    lead : float
        How far ahead of real time sent audio may run, seconds (at least one frame). The
        default two frames send each packet one frame early, so that a timer firing up to
        a frame late still finds the peer with audio to play rather than restarting the
        stream as a new talkspurt.
    max_queue : int
        Frames the async iterator keeps for a slow reader.
    max_catch_up : float
        Longest stall of the loop, seconds, after which missed ticks are pulled at once;
        after a longer one the playout clock is re-based.
    pacer : Pacer, optional
        The pacer for outbound audio; the loop's default one by default.
    on_mark : callable, optional
        Called with the name of each :meth:`mark` whose audio has played out.
    """

    def __init__(
        self,
        session: RtpSession,
        *,
        remote_addr: Address | None = None,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        lead: float = 0.04,
        max_queue: int = 50,
        max_catch_up: float = 0.2,
        pacer: Pacer | None = None,
        on_mark: Callable[[str], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"RtpEndpoint: max_queue must be >= 1, got {max_queue}")
        self.session = session
        self.remote_addr = remote_addr
        self.on_frame = on_frame
        self.on_mark = on_mark
        self.frame_duration = session.frame_ms / 1000
        self.max_catch_up = max_catch_up
        self._transport: asyncio.DatagramTransport | None = None
        self._owns_transport = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latched = remote_addr is not None
        # playout clock
        self._start = 0.0
        self._tick_index = 0
        self._timer: asyncio.TimerHandle | None = None
        self._frames: deque[ReceivedFrame] = deque(maxlen=max_queue)
        self._readable: asyncio.Event | None = None
        self._closed = False
        # send side
        self._pacer = pacer
        self._stream = PacedStream(
            session.sample_rate,
            frame_ms=session.frame_ms,
            lead=max(lead, self.frame_duration),
            local_marks=True,
            name="rtp",
        )
        self._tx_end: float | None = None
        self._tx_underruns = 0
        self._tx_restart = False
        self._drains: dict[str, asyncio.Future[None]] = {}
        self._mark_names = itertools.count()
        #: frames the async iterator dropped because nobody read them
        self.frames_dropped = 0
        #: playout ticks skipped after stalls longer than ``max_catch_up``
        self.stalls = 0
        #: datagrams ignored because they came from another address than the latched one
        self.foreign_datagrams = 0
        #: frames sent before any remote address was known (encoded, not sent)
        self.unsent_frames = 0
        #: while True the paced audio goes on (its time passes, its marks come back) but
        #: no packet is made or sent: a signalled call on hold (RFC 3264 section 8.4)
        self.muted = False
        #: frames that were due while muted
        self.muted_frames = 0
        #: ICMP errors reported by the socket
        self.socket_errors = 0
        #: exceptions raised by ``on_frame`` (logged; the clock goes on)
        self.callback_errors = 0
        #: loop time of the last packet of the stream received (None: none yet)
        self.last_received: float | None = None
        #: SSRC of the last packet of the stream received
        self.remote_ssrc: int | None = None

    @classmethod
    async def open(
        cls,
        session: RtpSession,
        local_addr: Address = ("127.0.0.1", 0),
        remote_addr: Address | None = None,
        *,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        lead: float = 0.04,
        max_queue: int = 50,
        max_catch_up: float = 0.2,
        pacer: Pacer | None = None,
        on_mark: Callable[[str], None] | None = None,
    ) -> RtpEndpoint:
        """Bind ``local_addr``, start the playout clock and return the endpoint.

        The other parameters are those of :class:`RtpEndpoint`.
        """
        endpoint = cls(
            session,
            remote_addr=remote_addr,
            on_frame=on_frame,
            lead=lead,
            max_queue=max_queue,
            max_catch_up=max_catch_up,
            pacer=pacer,
            on_mark=on_mark,
        )
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: DatagramForwarder(endpoint, endpoint.datagram_received), local_addr=local_addr
        )
        endpoint._begin(transport)
        return endpoint

    @classmethod
    def attach(
        cls,
        session: RtpSession,
        transport: asyncio.DatagramTransport,
        remote_addr: Address,
        *,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        lead: float = 0.04,
        max_queue: int = 50,
        max_catch_up: float = 0.2,
        pacer: Pacer | None = None,
        on_mark: Callable[[str], None] | None = None,
    ) -> RtpEndpoint:
        """Run an endpoint for ``remote_addr`` on a socket it shares (and does not close).

        The socket's owner passes every datagram from ``remote_addr`` to
        :meth:`datagram_received`; the endpoint sends to ``remote_addr`` only. Call it
        from a coroutine: the playout clock starts on the running loop. The other
        parameters are those of :class:`RtpEndpoint`.
        """
        endpoint = cls(
            session,
            remote_addr=remote_addr,
            on_frame=on_frame,
            lead=lead,
            max_queue=max_queue,
            max_catch_up=max_catch_up,
            pacer=pacer,
            on_mark=on_mark,
        )
        endpoint._owns_transport = False
        endpoint._begin(transport)
        return endpoint

    def _begin(self, transport: asyncio.DatagramTransport) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._readable = asyncio.Event()
        self._transport = transport
        if self._pacer is None:
            self._pacer = get_pacer()
        self._pacer.open(self._stream, self._sent)
        self._start = loop.time()
        self._arm()

    @property
    def local_addr(self) -> Address:
        """The bound (host, port)."""
        if self._transport is None:
            raise RuntimeError("RtpEndpoint is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    # --- receive side ----------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Take one datagram that came from ``addr`` (the socket's owner calls this)."""
        if self._closed or self._loop is None:
            return
        if self._latched and addr != self.remote_addr:
            self.foreign_datagrams += 1
            return
        now = self._loop.time()
        result = self.session.receive(data, now)
        if result in _ACCEPTED:
            self.last_received = now
            self.remote_ssrc = int.from_bytes(data[8:12], "big")
            if not self._latched:
                self.remote_addr = addr
                self._latched = True

    def _arm(self) -> None:
        assert self._loop is not None
        when = self._start + self._tick_index * self.frame_duration
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        f = self.frame_duration
        behind = now - (self._start + self._tick_index * f)
        if behind > self.max_catch_up:
            # re-base: skip the ticks of the stall instead of pulling them all at once
            skipped = math.floor(behind / f)
            self.stalls += skipped
            self._tick_index += skipped
        while self._start + self._tick_index * f <= now + 1e-6:
            self._deliver(self.session.pull(now))
            self._tick_index += 1
            if self._closed:
                return
        self._arm()

    def _deliver(self, frame: ReceivedFrame) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.frames_dropped += 1
        self._frames.append(frame)
        assert self._readable is not None
        self._readable.set()
        if self.on_frame is not None:
            try:
                self.on_frame(frame)
            except Exception:
                # the playout clock must keep running for the iterator and the stream
                log.exception("RtpEndpoint on_frame callback failed")
                self.callback_errors += 1

    async def recv(self) -> ReceivedFrame:
        """The next frame of playout; raise ``StopAsyncIteration`` once closed."""
        assert self._readable is not None
        while not self._frames:
            if self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        return self._frames.popleft()

    def __aiter__(self) -> AsyncIterator[ReceivedFrame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReceivedFrame]:
        while True:
            try:
                frame = await self.recv()
            except StopAsyncIteration:
                return
            yield frame

    # --- send side -------------------------------------------------------------------

    def send(self, pcm: PCM) -> None:
        """Queue mono PCM16 at the session's rate; it leaves frame by frame, paced."""
        self._stream.push(pcm)

    def flush(self) -> None:
        """Pad a partial frame with silence and queue it (the end of an utterance)."""
        self._stream.flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (a partial frame is padded);
        ``on_mark(name)`` follows once that audio's play-out time has passed."""
        if name.startswith(_DRAIN):
            raise ValueError(f"mark names starting with {_DRAIN!r} are the endpoint's own")
        self._stream.mark(name)

    def clear(self) -> list[MarkPlayed]:
        """Drop the audio not sent yet (barge-in); the next audio starts a talkspurt.

        Returns the marks (of :meth:`mark`) that were still pending, as cleared; their
        ``on_mark`` never comes.
        """
        cleared = [m for m in self._stream.clear() if not m.name.startswith(_DRAIN)]
        for future in self._drains.values():
            if not future.done():
                future.set_result(None)
        self._drains.clear()
        self._tx_restart = True
        return cleared

    async def drain(self) -> None:
        """Wait until the audio queued so far has been sent and its time has passed."""
        assert self._loop is not None
        name = f"{_DRAIN}{next(self._mark_names)}"
        future: asyncio.Future[None] = self._loop.create_future()
        self._drains[name] = future
        self._stream.mark(name)
        await future

    @property
    def stream(self) -> PacedStream:
        """The paced outbound stream: its send clock, queue and played position."""
        return self._stream

    @property
    def queued_seconds(self) -> float:
        """Audio waiting to be sent, seconds."""
        return self._stream.queued_samples / self.session.sample_rate

    def _sent(self, item: PacedItem) -> None:
        # The pacer's sink: one frame is due now, or a drain mark's audio has played.
        if isinstance(item, MarkDue):
            if not item.name.startswith(_DRAIN):
                if self.on_mark is not None:
                    self.on_mark(item.name)
                return
            future = self._drains.pop(item.name, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if not isinstance(item, np.ndarray):
            return
        if self.muted:
            # the frame's time passes unsent; the stream resumes as a new talkspurt, with
            # the sequence numbers unbroken and the timestamp skipped over the pause
            self.muted_frames += 1
            self._tx_restart = True
            return
        assert self._loop is not None
        now = self._loop.time()
        f = self.frame_duration
        restarted = self._tx_restart or self._stream.underruns != self._tx_underruns
        self._tx_restart = False
        self._tx_underruns = self._stream.underruns
        if self._tx_end is None or restarted:
            # The stream (re)started at `now`: skip the timestamp over the time nothing was
            # sent, in whole frames, so the peer plays a pause rather than a loss.
            if self._tx_end is not None:
                gap = round((now - self._tx_end) / f)
                if gap > 0:
                    self.session.pause(gap)
            start = now
        else:
            start = self._tx_end
        self._tx_end = start + f
        wire = self.session.send(item)
        if self._transport is None or self._transport.is_closing():
            return
        if self.remote_addr is None:
            self.unsent_frames += 1
            return
        self._transport.sendto(wire, self.remote_addr)

    # --- life cycle ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the playout clock and the paced stream, close the socket (unless it is
        shared, see :meth:`attach`), end iteration."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._pacer is not None:
            self._pacer.close(self._stream)
        for future in self._drains.values():
            if not future.done():
                future.cancel()
        self._drains.clear()
        if self._transport is not None and self._owns_transport:
            self._transport.close()
        if self._readable is not None:
            self._readable.set()

    async def aclose(self) -> None:
        """Close, then let the loop run the socket's closing callbacks."""
        self.close()
        await asyncio.sleep(0)

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
