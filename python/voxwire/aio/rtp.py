"""An asyncio UDP endpoint for one RTP audio stream over an :class:`RtpSession`.

>>> async def main():                                                  # doctest: +SKIP
...     session = RtpSession("pcmu")
...     async with await RtpEndpoint.open(session, ("127.0.0.1", 40000)) as ep:
...         async for frame in ep:              # one ReceivedFrame every 20 ms
...             ep.send(reply_for(frame.pcm))   # paced out in real time

The endpoint is a driver: it only moves datagrams and time. The rules (latching onto
the stream's source, the playout clock's schedule, talkspurts, mute) are those of its
:class:`~voxwire.call.rtp.RtpEndpointCore` (:attr:`RtpEndpoint.core`), documented in
:mod:`voxwire.call.rtp`; the endpoint feeds it and does what it returns.

Receiving
---------
Every datagram goes to the core with the loop's clock as its arrival time. The core's
playout timer is armed with ``loop.call_at(core.get_timer())``; when it fires, the frames
the core returns (one per tick that fell due, all of them after a short stall, see
:mod:`voxwire.call.rtp`) go to the ``on_frame`` callback and to the async iterator, whose
queue holds ``max_queue`` frames and drops the oldest (counted in
:attr:`RtpEndpoint.frames_dropped`) when nobody reads.

:meth:`RtpEndpoint.open` binds a socket of its own; :meth:`RtpEndpoint.attach` runs an
endpoint for one remote address on a socket shared with others, whose owner hands it that
address's datagrams (:meth:`RtpEndpoint.datagram_received`).

Sending
-------
:meth:`RtpEndpoint.send` queues PCM of any length on the core's
:class:`~voxwire.pacing.PacedStream`, driven by the process's one
:class:`~voxwire.aio.pacer.Pacer`: one frame leaves per frame duration, computed from an
epoch, at most ``lead`` ahead of real time, with no burst after a stall. The pacer hands
each frame to the endpoint, which asks the core for its packet (encoded then, marker bit
and timestamp skip after a pause, none while muted) and sends it to
:attr:`RtpEndpoint.remote_addr`. :meth:`clear` drops the queued audio (barge-in);
:meth:`drain` waits until the queued audio has been sent and its time has passed.
:meth:`mark` queues a named mark after the audio queued so far; ``on_mark`` is called with
its name when that audio's play-out time has passed (RTP carries no marks: the send clock
times them).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Protocol

from voxwire._types import PCM as PCM
from voxwire.aio.pacer import Pacer, get_pacer
from voxwire.call.rtp import DRAIN_MARK_PREFIX, RtpEndpointCore
from voxwire.call.rtp import Address as Address
from voxwire.pacing import MarkDue, PacedItem, PacedStream
from voxwire.protocols.events import MarkPlayed
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession

__all__ = ["RtpEndpoint"]

log = logging.getLogger("voxwire.aio")


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
    clear_tail : int
        Frames of silence :meth:`clear` sends straight after a stream it cuts, the first
        fading the cut audio out (:meth:`voxwire.call.rtp.RtpEndpointCore.clear`), so that
        the peer's decoder ends the reply rather than concealing it; 0 (the default) sends
        none.
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
        clear_tail: int = 0,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"RtpEndpoint: max_queue must be >= 1, got {max_queue}")
        #: the stream's rules (:mod:`voxwire.call.rtp`); the endpoint only drives it
        self.core = RtpEndpointCore(
            session,
            remote_addr=remote_addr,
            lead=lead,
            max_catch_up=max_catch_up,
            clear_tail=clear_tail,
        )
        self.session = session
        self.on_frame = on_frame
        self.on_mark = on_mark
        self.frame_duration = self.core.frame_duration
        self._transport: asyncio.DatagramTransport | None = None
        self._owns_transport = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._frames: deque[ReceivedFrame] = deque(maxlen=max_queue)
        self._readable: asyncio.Event | None = None
        self._closed = False
        self._pacer = pacer
        self._drains: dict[str, asyncio.Future[None]] = {}
        #: frames the async iterator dropped because nobody read them
        self.frames_dropped = 0
        #: ICMP errors reported by the socket
        self.socket_errors = 0
        #: exceptions raised by ``on_frame`` (logged; the clock goes on)
        self.callback_errors = 0

    # --- the core's state, read (and for a few, set) through the endpoint -------------

    @property
    def remote_addr(self) -> Address | None:
        """Where packets go: the address given, the latched source, or None yet."""
        return self.core.remote_addr

    @remote_addr.setter
    def remote_addr(self, addr: Address | None) -> None:
        self.core.remote_addr = addr

    @property
    def muted(self) -> bool:
        """While True the paced audio goes on (its time passes, its marks come back) but
        no packet is made or sent: a signalled call on hold (RFC 3264 section 8.4)."""
        return self.core.muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self.core.muted = value

    @property
    def max_catch_up(self) -> float:
        """Longest stall, seconds, after which missed ticks are pulled at once."""
        return self.core.max_catch_up

    @max_catch_up.setter
    def max_catch_up(self, value: float) -> None:
        self.core.max_catch_up = value

    @property
    def muted_frames(self) -> int:
        """Frames that were due while muted."""
        return self.core.muted_frames

    @property
    def stalls(self) -> int:
        """Playout ticks skipped after stalls longer than ``max_catch_up``."""
        return self.core.stalls

    @property
    def foreign_datagrams(self) -> int:
        """Datagrams ignored because they came from another address than the latched one."""
        return self.core.foreign_datagrams

    @property
    def unsent_frames(self) -> int:
        """Frames due before any remote address was known (encoded, not sent)."""
        return self.core.unsent_frames

    @property
    def last_received(self) -> float | None:
        """Loop time of the last packet of the stream received (None: none yet)."""
        return self.core.last_received

    @property
    def remote_ssrc(self) -> int | None:
        """SSRC of the last packet of the stream received."""
        return self.core.remote_ssrc

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
        clear_tail: int = 0,
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
            clear_tail=clear_tail,
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
        clear_tail: int = 0,
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
            clear_tail=clear_tail,
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
        self._pacer.open(self.core.stream, self._sent)
        self.core.start(loop.time())
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
        loop = self._loop
        if self._closed or loop is None:
            return
        self.core.receive(data, addr, loop.time())

    def _arm(self) -> None:
        assert self._loop is not None
        when = self.core.get_timer()
        assert when is not None  # the core was started in _begin
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        for frame in self.core.handle_timer(self._loop.time()):
            self._deliver(frame)
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
        self.core.push(pcm)

    def flush(self) -> None:
        """Pad a partial frame with silence and queue it (the end of an utterance)."""
        self.core.flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (a partial frame is padded);
        ``on_mark(name)`` follows once that audio's play-out time has passed."""
        self.core.mark(name)

    def clear(self) -> list[MarkPlayed]:
        """Drop the audio not sent yet (barge-in); the next audio starts a talkspurt.

        Returns the marks (of :meth:`mark`) that were still pending, as cleared; their
        ``on_mark`` never comes.
        """
        cleared = self.core.clear(None if self._loop is None else self._loop.time())
        self._send_outbox()
        for future in self._drains.values():
            if not future.done():
                future.set_result(None)
        self._drains.clear()
        return cleared

    async def drain(self) -> None:
        """Wait until the audio queued so far has been sent and its time has passed."""
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._drains[self.core.drain_mark()] = future
        await future

    @property
    def stream(self) -> PacedStream:
        """The paced outbound stream: its send clock, queue and played position."""
        return self.core.stream

    @property
    def queued_seconds(self) -> float:
        """Audio waiting to be sent, seconds."""
        return self.core.queued_seconds

    def _sent(self, item: PacedItem) -> None:
        # The pacer's sink: one frame is due now, or a mark's audio has played.
        if isinstance(item, MarkDue):
            name = item.name
            if not name.startswith(DRAIN_MARK_PREFIX):
                if self.on_mark is not None:
                    self.on_mark(name)
                return
            future = self._drains.pop(name, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        assert self._loop is not None
        core = self.core
        wire = core.send(item, self._loop.time())
        transport = self._transport
        addr = core.remote_addr
        if wire is None or addr is None or transport is None or transport.is_closing():
            return
        transport.sendto(wire, addr)

    def _send_outbox(self) -> None:
        outbox = self.core.outbox
        transport = self._transport
        addr = self.core.remote_addr
        if addr is None or transport is None or transport.is_closing():
            outbox.clear()
            return
        while outbox:
            transport.sendto(outbox.popleft(), addr)

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
            self._pacer.close(self.core.stream)
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
