"""An RTP stream as a call: the agents' surface (:class:`~voxwire.aio.surface.CallSurface`)
over an :class:`~voxwire.aio.rtp.RtpEndpoint`.

>>> async def main():                                                  # doctest: +SKIP
...     server = await serve_rtp(echo_handler, "0.0.0.0", 40000, codec="pcmu")
...     ...                                  # one call per remote address and port
...     await server.aclose()

Any handler written for :class:`voxwire.aio.session.Call` (``echo_handler``,
:class:`~voxwire.agents.pipeline.VoiceAgent`) runs on an :class:`RtpCall` unchanged.

Inbound
-------
The endpoint's playout clock hands out one frame every 20 ms, already reordered,
jitter-buffered, FEC-recovered or concealed by its :class:`RtpSession`. The call starts
with the first packet of the stream: a :class:`CallStarted` whose ``stream_id`` is
``host:port/ssrc`` (the SSRC in hex) and whose :class:`MediaFormat` is the session's codec
at the session's rate, the line rate (``mulaw`` or ``alaw`` at 8000 Hz; for Opus, which
:data:`~voxwire.protocols.events.Encoding` has no name for, ``l16`` at the decoder's rate,
with ``metadata["codec"] == "opus"``). Each frame from then on is resampled once, with one
streaming :class:`voxwire.Resampler`, to ``pipeline_rate`` and delivered as an
:class:`Audio` event (silence and concealment included: the audio never has gaps). When
no packet has come for ``idle_timeout`` seconds the call delivers
:class:`Stopped` and ends (close code :data:`~voxwire.aio.session.CLOSE_IDLE`). These two
rules, when the call starts and when it is idle, are :func:`voxwire.call.rtp.rtp_frame_step`
and :func:`voxwire.call.rtp.rtp_call_started`, without I/O.

Outbound
--------
:meth:`RtpCall.play` converts to the line rate and queues the audio on the endpoint's
paced stream, driven by the process's one :class:`~voxwire.aio.pacer.Pacer`; the endpoint
encodes each frame into one RTP packet as it leaves and starts a new talkspurt (marker
bit, timestamp skipped over the pause) after every pause or :meth:`~RtpCall.clear`. RTP
has no marks, so the stream times them itself (``local_marks``): a mark comes back as
:class:`MarkPlayed` when the audio before it has had its time on the send clock, and
:meth:`~RtpCall.playout_position` is that clock's estimate. There is no far-end buffer to
flush either: :meth:`~RtpCall.clear` stops sending, at once, and returns every pending
mark as cleared; the packets already sent still play, so after a clear the caller has
heard up to :attr:`~RtpCall.committed_samples` (everything sent), not
:meth:`~RtpCall.playout_position`.

Calls and peers
---------------
:func:`run_rtp_call` runs one handler on one endpoint to its end. :func:`serve_rtp`
listens on one UDP port and runs one call per remote (address, port): the first valid
packet of the session's payload type from a new peer starts its call, on an endpoint
that shares the server's socket. A peer whose call ended is ignored until it has been
silent for ``rejoin_after`` seconds (RTP cannot tell it the call is over, so it may well
go on sending); at most ``max_calls`` calls run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from voxwire.aio.pacer import Pacer
from voxwire.aio.rtp import Address, DatagramForwarder, RtpEndpoint
from voxwire.aio.session import CLOSE_IDLE, CLOSE_INTERNAL, CLOSE_NORMAL
from voxwire.call.rtp import rtp_call_started, rtp_frame_step
from voxwire.errors import RtpError
from voxwire.pacing import PacedStream
from voxwire.protocols.events import (
    Audio,
    CallStarted,
    Dtmf,
    Event,
    MarkPlayed,
    Stopped,
)
from voxwire.protocols.payload import as_pcm
from voxwire.protocols.rtp_session import Codec, ReceivedFrame, RtpSession, RtpSessionStats
from voxwire.resample import Resampler
from voxwire.rtp import parse_rtp

__all__ = [
    "CLOSE_GOING_AWAY",
    "RtpCall",
    "RtpCodecInfo",
    "RtpHandler",
    "RtpServer",
    "run_call",
    "run_rtp_call",
    "serve_rtp",
]

log = logging.getLogger("voxwire.aio")

CLOSE_GOING_AWAY = 1001
"""Close code of the calls a closing :class:`RtpServer` ends."""

RtpHandler = Callable[["RtpCall"], Awaitable[None]]
"""``async def handler(call)``: any handler of :class:`~voxwire.aio.surface.CallSurface`."""

_END = object()


@dataclass(frozen=True, slots=True)
class RtpCodecInfo:
    """What ``call.codec`` is on RTP: the protocol's name and the negotiated codec."""

    codec: Codec
    payload_type: int
    clock_rate: int
    sample_rate: int
    name: str = "rtp"


class RtpCall:
    """One RTP stream as a call; see the module docstring.

    Parameters
    ----------
    endpoint : RtpEndpoint
        An open endpoint; the call sets its ``on_mark`` and reads its frames.
    pipeline_rate : int
        Rate of the :class:`Audio` events (16000 by default, what recognisers want).
    idle_timeout : float
        Seconds without a packet of the stream (before the first one: since the call was
        made) after which the call ends with :class:`Stopped`.
    max_pending_events : int
        Inbound events queued for a slow handler before audio is dropped (counted in
        :attr:`events_dropped`).

    Raises
    ------
    ValueError
        A rate the resampler cannot convert to, or a timeout or bound that is not
        positive.
    """

    def __init__(
        self,
        endpoint: RtpEndpoint,
        *,
        pipeline_rate: int = 16000,
        idle_timeout: float = 15.0,
        max_pending_events: int = 1000,
    ) -> None:
        if not idle_timeout > 0 or max_pending_events < 1:
            raise ValueError(
                "RtpCall: idle_timeout and max_pending_events must be positive, got "
                f"{idle_timeout}, {max_pending_events}"
            )
        session = endpoint.session
        self.endpoint = endpoint
        self.session = session
        self.pipeline_rate = pipeline_rate
        self.line_rate = session.sample_rate
        self.idle_timeout = idle_timeout
        self.max_pending_events = max_pending_events
        #: says a text into the call as the agent, where the call's agent can
        self.on_say: Callable[[str], None] | None = None
        self.codec = RtpCodecInfo(
            session.codec, session.payload_type, session.clock_rate, session.sample_rate
        )
        self._inbound: Resampler[np.int16] | None = (
            None if pipeline_rate == self.line_rate else Resampler(self.line_rate, pipeline_rate)
        )
        self._outbound: dict[int, Resampler[np.int16]] = {}
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._started: CallStarted | None = None
        self._closed = asyncio.Event()
        self._created = asyncio.get_running_loop().time()
        #: inbound audio events dropped because the handler fell behind
        self.events_dropped = 0
        #: key presses that came before the stream started (see :meth:`dtmf`)
        self.dtmf_dropped = 0
        self.close_code: int | None = None
        self.close_reason = ""
        #: True while the agent is muted (:meth:`mute`)
        self.muted = False
        #: line-rate samples :meth:`play` dropped while muted
        self.muted_samples = 0
        endpoint.on_mark = self._mark_played

    # --- application API (CallSurface) -----------------------------------------------

    @property
    def started(self) -> CallStarted | None:
        """The :class:`CallStarted` of the stream, once its first packet came."""
        return self._started

    @property
    def stream(self) -> PacedStream | None:
        """The endpoint's paced stream, once the call started."""
        return self.endpoint.stream if self._started is not None else None

    @property
    def stats(self) -> RtpSessionStats:
        """The RTP session's statistics (both directions)."""
        return self.session.stats()

    @property
    def remote_addr(self) -> Address | None:
        """Where the stream comes from and the audio goes."""
        return self.endpoint.remote_addr

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)
                return
            yield item  # type: ignore[misc]

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        """Queue audio for paced sending (at ``sample_rate``, default the line rate).

        Audio played after the call was closed is dropped, and so is audio played while
        the call is muted (counted, at the line rate, in :attr:`muted_samples`).
        """
        self._require_started()
        data = as_pcm(pcm)
        if self.close_code is not None:
            return
        if self.muted:
            rate = sample_rate or self.line_rate
            self.muted_samples += len(data) * self.line_rate // rate if rate > 0 else 0
            return
        if sample_rate is not None and sample_rate != self.line_rate:
            if sample_rate <= 0:
                raise ValueError(f"sample_rate must be positive, got {sample_rate}")
            resampler = self._outbound.get(sample_rate)
            if resampler is None:
                resampler = Resampler(sample_rate, self.line_rate)
                self._outbound[sample_rate] = resampler
            data = resampler.process(data)
        self.endpoint.send(data)

    def flush(self) -> None:
        """Pad and queue the last partial frame (the end of an utterance)."""
        self._require_started()
        if self.close_code is None:
            self.endpoint.flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; :class:`MarkPlayed` follows when
        that audio has played out on the send clock."""
        self._require_started()
        if self.close_code is None:
            self.endpoint.mark(name)

    def clear(self) -> None:
        """Barge-in: stop sending now; every pending mark comes back cleared."""
        self._require_started()
        for event in self.endpoint.clear():
            self._deliver(event)
        # the converters hold the last milliseconds of the dropped audio
        self._outbound.clear()

    def mute(self) -> None:
        """Silence the agent: what is queued is dropped (as :meth:`clear` does) and what
        it plays next is not sent until :meth:`unmute`. Marks still pass."""
        if self.muted:
            return
        self.muted = True
        if self._started is not None and self.close_code is None:
            self.clear()

    def unmute(self) -> None:
        """Let the agent's audio through again (from what it plays next)."""
        self.muted = False

    def playout_position(self, now: float) -> int:
        """Line-rate samples the peer has played by ``now`` (the send clock's estimate,
        :meth:`voxwire.pacing.PacedStream.playout_position`); 0 before the call starts."""
        stream = self.stream
        return stream.playout_position(now) if stream is not None else 0

    @property
    def committed_samples(self) -> int:
        """Line-rate samples the peer plays whatever the call does now: every sample
        sent. RTP cannot take back a packet, so a :meth:`clear` stops what is queued but
        the peer still plays what was sent, up to ``lead`` (two frames by default) past
        :meth:`playout_position`; what the caller heard of an interrupted reply runs to
        here."""
        stream = self.stream
        return stream.sent_samples if stream is not None else 0

    @property
    def queued_total(self) -> int:
        """Line-rate samples queued since the call started: where the next audio begins."""
        stream = self.stream
        return stream.queued_total if stream is not None else 0

    @property
    def queued_samples(self) -> int:
        """Line-rate samples waiting to be sent."""
        stream = self.stream
        return stream.queued_samples if stream is not None else 0

    @property
    def played_samples(self) -> int:
        """Line-rate samples known to have played (up to the last mark played)."""
        stream = self.stream
        return stream.played_samples if stream is not None else 0

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds."""
        return self.played_samples / self.line_rate

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the call (idempotent): sending stops and the iteration ends.

        RTP carries no close message; ``code`` and ``reason`` are kept in
        :attr:`close_code` and :attr:`close_reason`.
        """
        self._close_now(code, reason)

    # --- internals -------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._started is None:
            raise RuntimeError("the call has not started yet: wait for CallStarted")

    def _close_now(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self.endpoint.clear()
        self._events.put_nowait(_END)
        self._closed.set()

    def _deliver(self, event: Event) -> None:
        if self.close_code is not None:
            return
        if isinstance(event, Audio) and self._events.qsize() >= self.max_pending_events:
            self.events_dropped += 1
            return
        self._events.put_nowait(event)

    def dtmf(self, event: Dtmf) -> None:
        """Deliver a key press decoded beside the audio (RFC 4733 telephone events, see
        :class:`voxwire.protocols.telephone_event.TelephoneEvents`): the handler gets it
        as a :class:`Dtmf` event, in order with the audio. Before the stream started
        there is no call to deliver it to: it is counted in :attr:`dtmf_dropped`."""
        if self._started is None:
            self.dtmf_dropped += 1
            return
        self._deliver(event)

    def _mark_played(self, name: str) -> None:
        # the endpoint's on_mark, called from the pacer: only queue
        self._deliver(MarkPlayed(name))

    def _call_started(self) -> CallStarted:
        # the CallStarted of the stream's first packet (a signalled call adds its own ids)
        endpoint = self.endpoint
        return rtp_call_started(self.session, endpoint.remote_addr, endpoint.remote_ssrc)

    def _start(self) -> None:
        self._started = self._call_started()
        self._deliver(self._started)

    def _frame(self, frame: ReceivedFrame) -> None:
        pcm = frame.pcm if self._inbound is None else self._inbound.process(frame.pcm)
        played = frame.kind in ("normal", "fec")
        self._deliver(
            Audio(
                pcm,
                self.pipeline_rate,
                self.line_rate,
                sequence=frame.sequence if played else None,
            )
        )

    def _idle(self) -> None:
        reason = f"no RTP for {self.idle_timeout:g} s"
        log.info("rtp call %r: %s", self._ident(), reason)
        self._deliver(Stopped(reason))
        self._close_now(CLOSE_IDLE, reason)

    def _idle_since(self, last: float | None) -> float:
        # when the inactivity timeout starts counting: the last packet, or the call's start
        # (a signalled call that holds the stream counts from elsewhere)
        return self._created if last is None else last

    def _ident(self) -> str:
        return self._started.stream_id if self._started else "(not started)"

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in self.endpoint:
                if self.close_code is not None:
                    return
                last = self.endpoint.last_received
                step = rtp_frame_step(
                    loop.time(),
                    started=self._started is not None,
                    last_received=last,
                    idle_since=self._idle_since(last),
                    idle_timeout=self.idle_timeout,
                )
                if step == "idle":
                    self._idle()
                    return
                if step == "wait":
                    continue  # silence before the stream began
                if step == "start":
                    self._start()
                self._frame(frame)
        finally:
            self._events.put_nowait(_END)


async def run_rtp_call(
    endpoint: RtpEndpoint,
    handler: RtpHandler,
    *,
    pipeline_rate: int = 16000,
    idle_timeout: float = 15.0,
    handler_grace: float = 2.0,
    max_pending_events: int = 1000,
) -> RtpCall:
    """Run ``handler`` on the stream of ``endpoint`` to the call's end; return the call.

    The call ends when the handler returns or closes it, or the stream goes idle (then
    the handler has ``handler_grace`` seconds to return). The endpoint is closed at the
    end. The other parameters are those of :class:`RtpCall`.
    """
    call = RtpCall(
        endpoint,
        pipeline_rate=pipeline_rate,
        idle_timeout=idle_timeout,
        max_pending_events=max_pending_events,
    )
    await _run(call, handler, handler_grace)
    return call


async def run_call(call: RtpCall, handler: RtpHandler, *, handler_grace: float = 2.0) -> None:
    """Run ``handler`` on ``call`` (made on an open endpoint) to the call's end, as
    :func:`run_rtp_call` does; for transports that build the call themselves (WebRTC)."""
    await _run(call, handler, handler_grace)


async def _run(call: RtpCall, handler: RtpHandler, handler_grace: float) -> None:
    loop = asyncio.get_running_loop()
    reader = loop.create_task(call._read())
    user = loop.create_task(_guarded(handler, call))
    closed = loop.create_task(call._closed.wait())
    try:
        await asyncio.wait({reader, user, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not user.done():
            # the stream ended or the call was closed: let the handler finish
            done, _ = await asyncio.wait({user}, timeout=handler_grace)
            if not done:
                user.cancel()
        await call.close(CLOSE_NORMAL, "")
    finally:
        for task in (reader, user, closed):
            task.cancel()
        await asyncio.gather(reader, user, closed, return_exceptions=True)
        call._close_now(CLOSE_NORMAL, "")
        call.endpoint.close()


async def _guarded(handler: RtpHandler, call: RtpCall) -> None:
    try:
        await handler(call)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler of rtp call %r raised", call._ident())
        await call.close(CLOSE_INTERNAL, "handler error")


class RtpServer:
    """One UDP port, one :class:`RtpCall` per remote peer; made by :func:`serve_rtp`.

    Close it with :meth:`aclose` (or ``async with``): every call ends with
    :data:`CLOSE_GOING_AWAY`, then the socket closes.
    """

    def __init__(
        self,
        handler: RtpHandler,
        *,
        codec: Codec,
        pipeline_rate: int,
        session_options: Mapping[str, object],
        idle_timeout: float,
        handler_grace: float,
        max_calls: int,
        rejoin_after: float,
        lead: float,
        pacer: Pacer | None,
    ) -> None:
        if max_calls < 1 or rejoin_after < 0:
            raise ValueError(
                f"serve_rtp: max_calls must be >= 1 and rejoin_after >= 0, got {max_calls}, "
                f"{rejoin_after}"
            )
        self.handler = handler
        self.codec: Codec = codec
        self.pipeline_rate = pipeline_rate
        self.session_options = dict(session_options)
        self.idle_timeout = idle_timeout
        self.handler_grace = handler_grace
        self.max_calls = max_calls
        self.rejoin_after = rejoin_after
        self.lead = lead
        self.pacer = pacer
        # a session made now checks the options at once, not at the first packet
        probe = self._session()
        self._payload_types = {probe.payload_type, probe.red_payload_type}
        self._transport: asyncio.DatagramTransport | None = None
        self._calls: dict[Address, RtpCall] = {}
        self._tasks: dict[Address, asyncio.Task[None]] = {}
        self._ended: dict[Address, float] = {}
        self._closing = False
        #: calls that ran to their end
        self.calls_finished = 0
        #: datagrams from new peers that started no call (not RTP of the session's
        #: payload type, or ``max_calls`` calls running)
        self.refused = 0
        #: datagrams from peers whose call ended, in their ``rejoin_after`` wait
        self.ignored = 0
        #: ICMP errors reported by the socket
        self.socket_errors = 0

    def _session(self) -> RtpSession:
        return RtpSession(self.codec, **self.session_options)  # type: ignore[arg-type]

    async def _bind(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: DatagramForwarder(self, self._datagram), local_addr=(host, port)
        )
        self._transport = transport

    @property
    def local_addr(self) -> Address:
        """The bound (host, port)."""
        if self._transport is None:
            raise RuntimeError("RtpServer is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def calls(self) -> int:
        """Calls running now."""
        return len(self._tasks)

    def _datagram(self, data: bytes, addr: Address) -> None:
        call = self._calls.get(addr)
        if call is not None:
            call.endpoint.datagram_received(data, addr)
            return
        if self._closing or self._transport is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        ended = self._ended.get(addr)
        if ended is not None:
            if now - ended < self.rejoin_after:
                self._ended[addr] = now
                self.ignored += 1
                return
            del self._ended[addr]
        if len(self._tasks) >= self.max_calls or not self._starts_stream(data):
            self.refused += 1
            return
        endpoint = RtpEndpoint.attach(
            self._session(), self._transport, addr, lead=self.lead, pacer=self.pacer
        )
        call = RtpCall(endpoint, pipeline_rate=self.pipeline_rate, idle_timeout=self.idle_timeout)
        self._calls[addr] = call
        endpoint.datagram_received(data, addr)
        task = loop.create_task(_run(call, self.handler, self.handler_grace))
        self._tasks[addr] = task
        task.add_done_callback(lambda _: self._finished(addr))

    def _starts_stream(self, data: bytes) -> bool:
        # A call costs a session and a playout clock: only RTP of the session's payload
        # type (or its RED type) from a new peer makes one.
        if len(data) >= 2 and 192 <= data[1] <= 223:
            return False  # RTCP (RFC 5761 section 4)
        try:
            packet = parse_rtp(data)
        except RtpError:
            return False
        return packet.payload_type in self._payload_types

    def _finished(self, addr: Address) -> None:
        self._calls.pop(addr, None)
        self._tasks.pop(addr, None)
        self.calls_finished += 1
        if self._closing:
            return
        now = asyncio.get_running_loop().time()
        for peer in [p for p, t in self._ended.items() if now - t >= self.rejoin_after]:
            del self._ended[peer]
        self._ended[addr] = now

    async def aclose(self) -> None:
        """End every call (:data:`CLOSE_GOING_AWAY`), wait for them, close the socket."""
        self._closing = True
        tasks = list(self._tasks.values())
        for call in list(self._calls.values()):
            await call.close(CLOSE_GOING_AWAY, "server closing")
        if tasks:
            await asyncio.wait(tasks, timeout=self.handler_grace + 1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)

    async def __aenter__(self) -> RtpServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def serve_rtp(
    handler: RtpHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    codec: Codec = "pcmu",
    pipeline_rate: int = 16000,
    session_options: Mapping[str, object] | None = None,
    idle_timeout: float = 15.0,
    handler_grace: float = 2.0,
    max_calls: int = 100,
    rejoin_after: float = 2.0,
    lead: float = 0.04,
    pacer: Pacer | None = None,
) -> RtpServer:
    """Listen for RTP on ``host:port`` and run ``handler`` on one call per remote peer.

    Parameters
    ----------
    handler : callable
        ``async def handler(call)`` for each call (``echo_handler``, a ``VoiceAgent``).
    host, port : str, int
        Where to listen (port 0: any free port, see :attr:`RtpServer.local_addr`).
    codec : {"pcmu", "pcma", "opus"}
        The codec every peer sends and receives.
    pipeline_rate : int
        Rate of the calls' :class:`Audio` events.
    session_options : mapping, optional
        Keyword arguments for each call's :class:`RtpSession` (payload type, jitter
        buffer settings, RED, ...).
    idle_timeout, handler_grace : float
        As in :func:`run_rtp_call`.
    max_calls : int
        Calls that may run at once; packets from further peers are refused (counted).
    rejoin_after : float
        Seconds a peer whose call ended must be silent before it can start another one.
    lead, pacer :
        As in :class:`~voxwire.aio.rtp.RtpEndpoint`.

    Returns
    -------
    RtpServer
        Running; close it with ``await server.aclose()`` or ``async with server``.
    """
    server = RtpServer(
        handler,
        codec=codec,
        pipeline_rate=pipeline_rate,
        session_options=session_options or {},
        idle_timeout=idle_timeout,
        handler_grace=handler_grace,
        max_calls=max_calls,
        rejoin_after=rejoin_after,
        lead=lead,
        pacer=pacer,
    )
    await server._bind(host, port)
    return server
