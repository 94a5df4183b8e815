"""SIP calls over UDP (and TCP, TLS): the asyncio driver of :class:`voxwire.sip.uas.SipServer`.

>>> async def main():                                                  # doctest: +SKIP
...     server = await serve_sip(echo_handler, "192.0.2.1", 5060)
...     ...                   # a trunk, a PBX or a softphone calls sip:bot@192.0.2.1
...     await server.aclose()

:func:`serve_sip` binds one UDP socket for signalling (and, with ``tcp=True``, a TCP
listener on the same port, and with ``tls=`` a TLS listener on ``tls_port``, 5061 by
default, each with a server of its own) and runs the sans-I/O server on it:
each datagram goes to :meth:`SipServer.receive` with the loop's clock, what it returns is
sent, and its next timer is armed with ``loop.call_at``.

A call
------
An INVITE whose offer can be answered rings (180) at once and is answered after
``answer_delay`` seconds: the driver binds an RTP socket for the call (from ``rtp_ports``,
even ports, or any free port), makes an :class:`~voxwire.protocols.rtp_session.RtpSession`
for the negotiated codec, payload type and ptime, and answers with the SDP. The call is a
:class:`SipCall`, an :class:`~voxwire.aio.rtp_call.RtpCall` whose protocol name is
``"sip"`` and whose :class:`~voxwire.protocols.events.CallStarted` carries the SIP
Call-ID and the From and To addresses in ``metadata``; the handler (the echo agent, a
voice agent: anything written for :class:`~voxwire.aio.surface.CallSurface`) runs on it
as on any other transport. Media is sent to the address and port of the offer and taken
from the offer's host, from any port (a peer may send from another port than the one it
receives on). When the first packet of the stream comes from another host (a caller
behind NAT, or one whose SDP names another of its interfaces), the call latches onto
that source and sends there (symmetric RTP, RFC 4961; ``latch=False`` turns it off);
RTP from any other host is dropped and counted in :attr:`SipCall.foreign_packets`.
When the answer kept ``telephone-event``, its packets are RFC 4733 key presses: each key
comes to the handler once as a :class:`~voxwire.protocols.events.Dtmf` event, in order
with the audio (:meth:`RtpCall.dtmf`; a key pressed before the first audio packet is
counted in ``dtmf_dropped``). :meth:`SipCall.send_dtmf` presses keys towards the caller,
as RFC 4733 events of the same payload type.

The call ends when

* the caller sends BYE (the handler sees :class:`~voxwire.protocols.events.Stopped`
  ``"remote hung up"``, then the end of its iteration);
* the handler returns or closes the call, or no RTP came for ``idle_timeout`` seconds
  (:data:`~voxwire.aio.session.CLOSE_IDLE`): the server sends BYE;
* the 200 was never acknowledged (:class:`~voxwire.sip.uas.CallEnded` ``no_ack``: the
  server sent BYE);
* the server closes (:meth:`SipCallServer.aclose`).

A CANCEL before the answer ends the pending call (487); a call the handler never got is
not counted as a call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal, Protocol

from voxwire.aio.control import CallControls, Refused, TransferOutcome
from voxwire.aio.pacer import Pacer
from voxwire.aio.rtp import Address, DatagramForwarder, RtpEndpoint
from voxwire.aio.rtp_call import CLOSE_GOING_AWAY, RtpCall, RtpHandler, run_call
from voxwire.aio.session import CLOSE_NORMAL
from voxwire.errors import RtpError, SipParseError
from voxwire.protocols.events import CallStarted, Stopped
from voxwire.protocols.rtp_session import Codec, RtpSession
from voxwire.protocols.telephone_event import TelephoneEvents, event_payloads
from voxwire.rtp import parse_rtp
from voxwire.sip.auth import Authenticator
from voxwire.sip.message import Limits, message_length
from voxwire.sip.sdp import Answer
from voxwire.sip.srtp import SrtpContext, SrtpUnavailable
from voxwire.sip.uas import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallTransfer,
    CallUpdated,
    IncomingCall,
    SipServer,
)

__all__ = ["SipCall", "SipCallServer", "SipControlled", "serve_sip"]

log = logging.getLogger("voxwire.aio")

_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_END_REASONS = {
    "remote_bye": "remote hung up",
    "no_ack": "no ACK for the 200",
    "session_expired": "the session expired (no refresh)",
    "session_refresh_failed": "the session refresh failed",
}


class SipCall(RtpCall):
    """One answered SIP call: an :class:`RtpCall` with the call's SIP identity."""

    def __init__(
        self,
        endpoint: RtpEndpoint,
        incoming: IncomingCall,
        *,
        pipeline_rate: int = 16000,
        idle_timeout: float = 15.0,
    ) -> None:
        super().__init__(endpoint, pipeline_rate=pipeline_rate, idle_timeout=idle_timeout)
        self.incoming = incoming
        self.codec = replace(self.codec, name="sip")
        #: RTP datagrams from another host than the stream's, dropped
        self.foreign_packets = 0
        #: where the stream was latched to when it came from another host than the
        #: offer's (symmetric RTP); None when it came from the offer's host
        self.latched_to: Address | None = None
        #: True when the caller ended the call (BYE), or the server did for want of an ACK
        #: or of a session refresh (RFC 4028)
        self.ended_by_remote = False
        #: the stream as negotiated last (the INVITE's, then each re-INVITE's or UPDATE's)
        self.answer = incoming.answer
        #: re-INVITEs and UPDATEs that changed the session
        self.updates = 0
        self._media: _MediaProtocol | None = None
        self._receiving = True
        self._receiving_since = float("-inf")
        self._offered = incoming.answer.remote  # the last address an offer named
        self._sending = True
        self._rtp: asyncio.DatagramTransport | None = None
        #: the call's SRTP keys and counters (an ``RTP/SAVP`` stream), or None
        self.srtp: SrtpContext | None = None
        #: keys sent with :meth:`send_dtmf`
        self.dtmf_sent = 0
        #: the statuses of the last :meth:`transfer`: the REFER's, then each NOTIFY's
        self.transfer_statuses: list[int] = []
        #: True when the call ended because the caller was transferred
        self.transferred = False
        self._transfer: asyncio.Future[int] | None = None
        self._refer: Callable[[str], None] | None = None  # sends the REFER (the driver's)
        self._confirmed = asyncio.Event()  # the ACK of the 200 came
        #: when the call was answered (``time.monotonic()``), None before
        self.answered_at: float | None = None

    async def transfer(self, target: str, *, timeout: float = 32.0) -> bool:
        """Blind-transfer the peer to ``target`` (a ``sip:`` URI; RFC 3515): send REFER
        and follow its NOTIFYs; when the peer reached the target the call ends (a BYE)
        and this returns True. False when the transfer was refused or failed (the call
        goes on), or no final NOTIFY came within ``timeout`` seconds.

        Raises
        ------
        RuntimeError
            The call has ended, or a transfer of it is in progress.
        """
        if self.close_code is not None or self._refer is None:
            raise RuntimeError("transfer: the call has ended")
        if self._transfer is not None:
            raise RuntimeError("transfer: a transfer of this call is in progress")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._transfer = future
        self.transfer_statuses = []
        try:
            # no request in the dialog before the 200 is acknowledged (RFC 3261 13.3.1.4)
            await asyncio.wait_for(self._confirmed.wait(), timeout)
            if self.close_code is not None:
                raise RuntimeError("transfer: the call has ended")
            self._refer(target)
            status = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False
        finally:
            self._transfer = None
        if not 200 <= status < 300:
            return False
        self.transferred = True
        log.info("sip call %s transferred to %s", self.call_id, target)
        self._deliver(Stopped("transferred"))
        self._close_now(CLOSE_NORMAL, "transferred")
        return True

    def _transfer_progress(self, status: int, final: bool) -> None:
        self.transfer_statuses.append(status)
        future = self._transfer
        if final and future is not None and not future.done():
            future.set_result(status)

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Press ``digits`` (``0-9 * # A-D``) towards the caller as RFC 4733 telephone
        events of the negotiated ``telephone-event`` type, in the stream's SSRC and
        sequence space: per key, one packet per frame (ptime) with the duration so far,
        the end packet three times (section 2.5.1.4), then ``gap_ms`` of pause. The bot's
        audio is not sent while a key sounds (its time passes, as on hold) and resumes
        as a new talkspurt.

        Raises
        ------
        RuntimeError
            The call has not started, is on hold, or its answer has no telephone-event.
        ValueError
            A key that is not a DTMF key, or a duration past 65535 timestamp units.
        """
        self._require_started()
        event_pt = self.answer.telephone_event
        if event_pt is None:
            raise RuntimeError("send_dtmf: the call did not negotiate telephone-event")
        if self.on_hold:
            raise RuntimeError("send_dtmf: the call is on hold")
        session = self.session
        step = session.frame_ticks
        duration = max(step, round(duration_ms * self.answer.clock_rate / 1000))
        keys = [event_payloads(d, duration, step) for d in digits]  # every key checked first
        frame = session.frame_ms / 1000
        self.endpoint.muted = True
        try:
            for payloads in keys:
                timestamp = session.next_timestamp
                for i, payload in enumerate(payloads):
                    if self.close_code is not None or not self._sending:
                        return
                    wire = session.send_event(payload, event_pt, timestamp, marker=i == 0)
                    transport, dest = self._rtp, self.endpoint.remote_addr
                    if transport is not None and not transport.is_closing() and dest:
                        transport.sendto(wire, dest)
                    await asyncio.sleep(frame)
                session.pause(-(-duration // step))  # the audio goes on after the event
                self.dtmf_sent += 1
                await asyncio.sleep(gap_ms / 1000)
        finally:
            self.endpoint.muted = not self._sending

    @property
    def on_hold(self) -> bool:
        """True while the caller holds the call: nothing is sent (the audio played goes
        on being paced, and its marks come back, but no packet leaves)."""
        return self.endpoint.muted

    @property
    def held_frames(self) -> int:
        """Frames not sent because the call was on hold."""
        return self.endpoint.muted_frames

    def _renegotiated(self, update: CallUpdated, now: float) -> None:
        # a re-INVITE's or UPDATE's answer: where media goes, whether it is sent, whether
        # it comes (the inactivity timeout does not run while the caller sends nothing)
        answer = update.answer
        previous = self._offered
        self.answer = answer
        self.updates += 1
        media = self._media
        if media is None:
            return
        host, port = answer.remote
        if host not in ("0.0.0.0", "::") and port and (host, port) != previous:
            # the caller moved its stream (the offer names another address or port); a
            # stream latched onto stays where it is unless the address itself changed
            self._offered = (host, port)
            if self.latched_to is None or host != previous[0]:
                media.remote_host = host
                self.endpoint.remote_addr = (host, port)
                self.latched_to = None
        media.event_pt = answer.telephone_event
        if media.event_pt is not None and media.events is None:
            media.events = TelephoneEvents(answer.clock_rate)
        sending = update.sending and host not in ("0.0.0.0", "::") and port != 0
        if sending != self._sending:
            log.info("sip call %s %s", self.call_id, "resumed" if sending else "held")
        self._sending = sending
        self.endpoint.muted = not sending
        if update.receiving and not self._receiving:
            self._receiving_since = now
        self._receiving = update.receiving

    def _idle_since(self, last: float | None) -> float:
        if not self._receiving:
            return asyncio.get_running_loop().time()  # no RTP is due: never idle
        return max(super()._idle_since(last), self._receiving_since)

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self.incoming.call_id

    def _call_started(self) -> CallStarted:
        started = super()._call_started()
        request = self.incoming.request
        metadata = {
            **started.metadata,
            "sip_call_id": self.incoming.call_id,
            "from": request.header("From") or "",
            "to": request.header("To") or "",
            "request_uri": request.uri,
            "sip_user": self.incoming.user,
        }
        return replace(started, call_id=self.incoming.call_id, metadata=metadata)

    def _remote_end(self, reason: str) -> None:
        self.ended_by_remote = True
        self._deliver(Stopped(reason))
        self._close_now(CLOSE_NORMAL, reason)


class SipControlled(CallControls):
    """A :class:`SipCall` as the control API's
    :class:`~voxwire.aio.control.ControlledCall`: listed from its answer on, by its SIP
    Call-ID; ``connecting`` until the ACK of the 200, then ``up``; ``messages_in`` and
    ``messages_out`` count RTP packets, and the quality is the E-model estimate for
    the stream's RTP loss (RFC 3550 A.3). It transfers by REFER
    (:meth:`SipCall.transfer`)."""

    call: SipCall

    def __init__(self, call: SipCall) -> None:
        self.call = call

    @property
    def control_id(self) -> str | None:
        return self.call.call_id if self.call.answered_at is not None else None

    @property
    def state(self) -> str:
        call = self.call
        if call.close_code is not None:
            return "closing"
        return "up" if call._confirmed.is_set() else "connecting"

    @property
    def duration_s(self) -> float | None:
        begun = self.call.answered_at
        return None if begun is None else round(time.monotonic() - begun, 3)

    def describe(self, server_delay_ms: float, network_delay_ms: float) -> dict[str, Any]:
        from voxwire.quality import mos, r_factor

        call = self.call
        stats = call.stats
        rtp = stats.rtp
        received = rtp.received if rtp is not None else 0
        loss = rtp.lost / rtp.expected if rtp is not None and rtp.expected > 0 else 0.0
        loss = min(max(loss, 0.0), 1.0)  # duplicates can make RFC 3550's count negative
        delay = server_delay_ms + network_delay_ms
        r = r_factor(delay, 100 * loss, codec="g711-plc")
        rate = call.line_rate
        return {
            "protocol": call.codec.name,
            "muted": call.muted,
            "messages_in": received,
            "messages_out": stats.packets_sent,
            "audio_in_s": round(received * call.session.frame_ms / 1000, 3),
            "audio_out_s": round(call.committed_samples / rate, 3),
            "muted_audio_s": round(call.muted_samples / rate, 3),
            "quality": {
                "loss_ratio": round(loss, 5),
                "delay_ms": round(delay, 1),
                "r_factor": round(r, 2),
                "mos": round(mos(r), 3),
            },
        }

    def check_transfer(self) -> None:
        call = self.call
        if call.close_code is not None or call._refer is None:
            raise Refused(409, "the call has ended")
        if call._transfer is not None:
            raise Refused(409, "a transfer of this call is in progress")

    async def transfer(self, target: str, timeout: float) -> TransferOutcome:
        self.check_transfer()
        try:
            transferred = await self.call.transfer(target, timeout=timeout)
        except RuntimeError as exc:  # it ended, or another transfer began, meanwhile
            raise Refused(409, str(exc).removeprefix("transfer: ")) from None
        except (KeyError, ValueError) as exc:  # the dialog went away under the REFER
            raise Refused(409, f"the call cannot be transferred: {exc}") from None
        return TransferOutcome(transferred, tuple(self.call.transfer_statuses))


class DatagramClaim(Protocol):
    """Something else that speaks on the server's socket (a registration,
    :mod:`voxwire.aio.sip_register`): it takes the datagrams that are its own."""

    def claims(self, data: bytes, addr: Address) -> bool: ...


class _SrtpTransport(asyncio.DatagramTransport):
    """The call's RTP socket seen through SRTP: what is sent is protected first."""

    def __init__(self, transport: asyncio.DatagramTransport, srtp: SrtpContext) -> None:
        super().__init__()
        self._inner = transport
        self._srtp = srtp

    def sendto(self, data: bytes | bytearray | memoryview, addr: object = None) -> None:
        packet = self._srtp.protect(bytes(data))
        if packet is not None:
            self._inner.sendto(packet, addr)  # type: ignore[arg-type]

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()


class _MediaProtocol(asyncio.DatagramProtocol):
    def __init__(self, remote_host: str, latch: bool, answer: Answer) -> None:
        self.srtp: SrtpContext | None = None
        self.remote_host = remote_host
        self.latch = latch
        self.call: SipCall | None = None
        self.endpoint: RtpEndpoint | None = None
        self.event_pt = answer.telephone_event
        self.events = TelephoneEvents(answer.clock_rate) if self.event_pt is not None else None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        endpoint = self.endpoint
        if endpoint is None or endpoint.remote_addr is None:
            return
        source = (str(addr[0]), int(addr[1]))
        if source[0] != self.remote_host:
            if not (self.latch and endpoint.last_received is None and self._is_stream(data)):
                if self.call is not None:
                    self.call.foreign_packets += 1
                return
            # symmetric RTP (RFC 4961): the stream comes from elsewhere than the offer
            # said (a NAT, a peer that names another interface); answer where it is
            log.info("sip media latched to %s:%d (offer said %s)", *source, self.remote_host)
            self.remote_host = source[0]
            endpoint.remote_addr = source
            if self.call is not None:
                self.call.latched_to = source
        if self.srtp is not None:
            clear = self.srtp.unprotect(data)  # forged, damaged or replayed: dropped
            if clear is None:
                return
            data = clear
        if self.event_pt is not None and len(data) >= 12 and data[1] & 0x7F == self.event_pt:
            self._telephone_event(data, endpoint)
            return
        # the offer's host (or the latched one), from whatever port: the endpoint's stream
        endpoint.datagram_received(data, endpoint.remote_addr)

    def _telephone_event(self, data: bytes, endpoint: RtpEndpoint) -> None:
        # RFC 4733 key presses beside the audio: deduplicated by timestamp, one Dtmf each
        assert self.events is not None
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.events.malformed += 1
            return
        # its sequence number is the stream's: counted, so it does not read as loss
        endpoint.session.count_event(packet, asyncio.get_running_loop().time())
        for event in self.events.receive(bytes(packet.payload), packet.timestamp):
            if self.call is not None:
                self.call.dtmf(event)

    def _is_stream(self, data: bytes) -> bool:
        # RTP version 2 of the session's payload type (not RTCP, not another stream)
        assert self.endpoint is not None
        return (
            len(data) >= 12
            and data[0] >> 6 == 2
            and data[1] & 0x7F == self.endpoint.session.payload_type
        )

    def error_received(self, exc: Exception) -> None:
        if self.endpoint is not None:
            self.endpoint.socket_errors += 1


class SipCallServer:
    """A SIP UAS on one UDP port (and its TCP twin) running a handler per call; made by
    :func:`serve_sip`.

    :attr:`sip` is the sans-I/O :class:`~voxwire.sip.uas.SipServer` (its ``counters`` and
    ``errors`` say what came and went). :meth:`drain` makes OPTIONS and new INVITEs get
    503 while calls go on; :meth:`aclose` ends every call with a BYE and closes.
    """

    def __init__(
        self,
        handler: RtpHandler,
        *,
        media_host: str,
        rtp_ports: tuple[int, int] | None,
        answer_delay: float,
        pipeline_rate: int,
        idle_timeout: float,
        handler_grace: float,
        session_options: Mapping[str, object],
        lead: float,
        pacer: Pacer | None,
        latch: bool = True,
    ) -> None:
        if answer_delay < 0 or idle_timeout <= 0:
            raise ValueError(
                f"serve_sip: answer_delay must be >= 0 and idle_timeout > 0, got "
                f"{answer_delay}, {idle_timeout}"
            )
        if rtp_ports is not None and not (0 < rtp_ports[0] <= rtp_ports[1] < 65536):
            raise ValueError(f"serve_sip: rtp_ports must be (low, high) ports, got {rtp_ports}")
        self.handler = handler
        self.latch = latch
        self.media_host = media_host
        self.rtp_ports = rtp_ports
        self.answer_delay = answer_delay
        self.pipeline_rate = pipeline_rate
        self.idle_timeout = idle_timeout
        self.handler_grace = handler_grace
        self.session_options = dict(session_options)
        self.lead = lead
        self.pacer = pacer
        self.sip: SipServer
        #: the SIP server of the TCP listener (``tcp=True``), or None
        self.sip_tcp: SipServer | None = None
        #: the SIP server of the TLS listener (``tls=``), or None
        self.sip_tls: SipServer | None = None
        self._tls: asyncio.Server | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        # the open connections by transport ("TCP", "TLS") and peer address
        self._writers: dict[tuple[str, Address], asyncio.StreamWriter] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._owner: dict[str, SipServer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._calls: dict[str, SipCall] = {}
        self._next_port = itertools.count()
        #: calls that were answered and ran to their end
        self.calls_finished = 0
        #: ICMP errors reported by the signalling socket
        self.socket_errors = 0
        #: TCP connections closed because their byte stream broke SIP framing, by reason
        self.stream_errors: dict[str, int] = {}
        #: messages for a TCP peer whose connection had gone
        self.unsent = 0
        #: calls that could not be answered (no RTP port could be bound)
        self.media_failures = 0
        #: the registration sharing the UDP socket (its REGISTER responses), or None
        self.registration: DatagramClaim | None = None

    async def _bind(self, host: str, port: int, sip: dict[str, object]) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: DatagramForwarder(self, self._datagram), local_addr=(host, port)
        )
        self._transport = transport
        bound = int(transport.get_extra_info("sockname")[1])
        self.sip = SipServer(self.media_host, bound, **sip)  # type: ignore[arg-type]

    async def _listen_tcp(self, host: str, sip: dict[str, object]) -> None:
        # the same port number as the UDP socket (section 18: a server listens on both)
        port = self.sip.port
        self.sip_tcp = tcp = SipServer(self.media_host, port, transport="TCP", **sip)  # type: ignore[arg-type]
        self._tcp = await asyncio.start_server(lambda r, w: self._connection(tcp, r, w), host, port)

    async def _listen_tls(
        self, host: str, port: int, context: ssl.SSLContext, sip: dict[str, object]
    ) -> None:
        # section 26.2: SIP over TLS, 5061 by default; the handshake is bounded so a peer
        # that connects and says nothing does not hold a task for long
        self._tls = await asyncio.start_server(
            lambda r, w: self._connection(tls, r, w),
            host,
            port,
            ssl=context,
            ssl_handshake_timeout=10.0,
        )
        bound = int(self._tls.sockets[0].getsockname()[1])
        self.sip_tls = tls = SipServer(self.media_host, bound, transport="TLS", **sip)  # type: ignore[arg-type]

    @property
    def tls_addr(self) -> Address | None:
        """The bound (host, port) of the TLS listener, or None without one."""
        if self._tls is None or not self._tls.sockets:
            return None
        host, port = self._tls.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _connection(
        self, sip: SipServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        addr: Address = (str(peer[0]), int(peer[1]))
        key = (sip.transport, addr)
        self._writers[key] = writer
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)

        def deliver(message: bytes) -> None:
            sip.receive(message, addr, self._now())
            self._pump(sip)

        try:
            bad = await read_sip_stream(reader, sip.limits, deliver)
            if bad is not None:
                self.stream_errors[bad] = self.stream_errors.get(bad, 0) + 1
        finally:
            if self._writers.get(key) is writer:
                del self._writers[key]
            if task is not None:
                self._readers.discard(task)
            writer.close()

    @property
    def local_addr(self) -> Address:
        """The bound (host, port) of the signalling socket."""
        if self._transport is None:
            raise RuntimeError("SipCallServer is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def calls(self) -> int:
        """Calls in progress (ringing or answered)."""
        return len(self._tasks)

    def answered_calls(self) -> list[SipCall]:
        """The calls answered and not ended yet."""
        return list(self._calls.values())

    def controlled_calls(self) -> list[SipControlled]:
        """:meth:`answered_calls` for the control API
        (:func:`voxwire.aio.control.serve_control`)."""
        return [SipControlled(call) for call in self._calls.values()]

    def drain(self) -> None:
        """Answer OPTIONS and new INVITEs with 503 from now on; calls in progress go on."""
        for sip in self._servers():
            sip.draining = True

    def _servers(self) -> list[SipServer]:
        return [s for s in (self.sip, self.sip_tcp, self.sip_tls) if s is not None]

    # --- signalling ------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _datagram(self, data: bytes, addr: Address) -> None:
        if self.registration is not None and self.registration.claims(data, addr):
            return
        self.sip.receive(data, addr, self._now())
        self._pump(self.sip)

    def _on_timer(self, sip: SipServer) -> None:
        self._timers.pop(id(sip), None)
        sip.handle_timer(self._now())
        self._pump(sip)

    def _send(self, sip: SipServer, wire: bytes, dest: Address) -> None:
        if sip is self.sip:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.sendto(wire, dest)
            return
        writer = self._writers.get((sip.transport, dest))
        if writer is None or writer.is_closing():
            self.unsent += 1
            return
        writer.write(wire)

    def _pump(self, sip: SipServer) -> None:
        # send what the server wrote, act on its events (which may write more), re-arm
        while True:
            out = sip.datagrams()
            for wire, dest in out:
                self._send(sip, wire, dest)
            events = sip.events()
            if not events and not out:
                break
            for event in events:
                self._event(sip, event)
        timer = self._timers.pop(id(sip), None)
        if timer is not None:
            timer.cancel()
        when = sip.get_timer()
        if when is not None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._timers[id(sip)] = loop.call_at(when, self._on_timer, sip)

    def _event(self, sip: SipServer, event: object) -> None:
        if isinstance(event, IncomingCall):
            sip.ring(event.handle)
            self._owner[event.handle] = sip
            task = asyncio.get_running_loop().create_task(self._call(sip, event))
            self._tasks[event.handle] = task
            task.add_done_callback(lambda _: self._forget(event.handle))
        elif isinstance(event, CallCancelled):
            pending = self._tasks.get(event.handle)
            if pending is not None and event.handle not in self._calls:
                pending.cancel()
        elif isinstance(event, CallEnded):
            call = self._calls.get(event.handle)
            if call is not None:
                call._remote_end(_END_REASONS[event.reason])
            else:
                pending = self._tasks.get(event.handle)
                if pending is not None:
                    pending.cancel()
        elif isinstance(event, CallUpdated):
            call = self._calls.get(event.handle)
            if call is not None:
                call._renegotiated(event, self._now())
        elif isinstance(event, CallConfirmed):
            log.debug("sip call %s confirmed", event.handle)
            call = self._calls.get(event.handle)
            if call is not None:
                call._confirmed.set()
        elif isinstance(event, CallTransfer):
            call = self._calls.get(event.handle)
            if call is not None:
                call._transfer_progress(event.status, event.final)

    # --- media -----------------------------------------------------------------------

    async def _open_media(self, answer: Answer) -> tuple[asyncio.DatagramTransport, _MediaProtocol]:
        loop = asyncio.get_running_loop()
        protocol = _MediaProtocol(answer.remote[0], self.latch, answer)
        if self.rtp_ports is None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: protocol, local_addr=(self.media_host, 0)
            )
            return transport, protocol
        low, high = self.rtp_ports
        low += low % 2
        count = (high - low) // 2 + 1
        start = next(self._next_port)
        for i in range(count):
            port = low + 2 * ((start + i) % count)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: protocol, local_addr=(self.media_host, port)
                )
            except OSError:
                continue
            return transport, protocol
        raise OSError(f"no free RTP port in {self.rtp_ports}")

    def _session(self, answer: Answer) -> RtpSession:
        return rtp_session_for(answer, self.pipeline_rate, self.session_options)

    def _refer(self, sip: SipServer, handle: str, target: str) -> None:
        sip.refer(handle, target, self._now())
        self._pump(sip)

    def _forget(self, handle: str) -> None:
        self._tasks.pop(handle, None)
        self._owner.pop(handle, None)

    async def _call(self, sip: SipServer, incoming: IncomingCall) -> None:
        handle = incoming.handle
        transport: asyncio.DatagramTransport | None = None
        answered = False
        try:
            if self.answer_delay:
                await asyncio.sleep(self.answer_delay)
            try:
                transport, protocol = await self._open_media(incoming.answer)
            except OSError as exc:
                self.media_failures += 1
                log.warning("sip call %s: %s", incoming.call_id, exc)
                sip.reject(handle, 503, self._now())
                self._pump(sip)
                return
            session = self._session(incoming.answer)
            media: asyncio.DatagramTransport = transport
            srtp = None
            if incoming.answer.crypto is not None:
                srtp = SrtpContext(incoming.answer.crypto)
                media = _SrtpTransport(transport, srtp)
                protocol.srtp = srtp
            endpoint = RtpEndpoint.attach(
                session, media, incoming.answer.remote, lead=self.lead, pacer=self.pacer
            )
            call = SipCall(
                endpoint,
                incoming,
                pipeline_rate=self.pipeline_rate,
                idle_timeout=self.idle_timeout,
            )
            protocol.endpoint = endpoint
            protocol.call = call
            call._media = protocol
            call._rtp = media
            call.srtp = srtp
            call._refer = lambda target: self._refer(sip, handle, target)
            port = int(transport.get_extra_info("sockname")[1])
            sip.answer(handle, self.media_host, port, self._now())
            answered = True
            call.answered_at = time.monotonic()
            self._calls[handle] = call
            self._pump(sip)
            await run_call(call, self.handler, handler_grace=self.handler_grace)
        finally:
            self._calls.pop(handle, None)
            if self._transport is not None:
                sip.hangup(handle, self._now())  # BYE, or 480 when never answered
                self._pump(sip)
            if transport is not None:
                transport.close()
            if answered:
                self.calls_finished += 1

    # --- life cycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        """End every call (a BYE each, :data:`CLOSE_GOING_AWAY` for the handlers), then
        close the socket."""
        self.drain()
        tasks = list(self._tasks.values())
        for handle, task in list(self._tasks.items()):
            call = self._calls.get(handle)
            if call is not None:
                await call.close(CLOSE_GOING_AWAY, "server closing")
            else:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.handler_grace + 1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        listeners = [x for x in (self._tcp, self._tls) if x is not None]
        for listener in listeners:
            listener.close()
        for writer in list(self._writers.values()):
            writer.close()
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for listener in listeners:
            await listener.wait_closed()
        self._tcp = self._tls = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)

    async def __aenter__(self) -> SipCallServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def read_sip_stream(
    reader: asyncio.StreamReader, limits: Limits, deliver: Callable[[bytes], None]
) -> str | None:
    """Hand each SIP message on a TCP or TLS stream to ``deliver``, framed by its
    Content-Length (RFC 3261 section 18.3), until the peer closes it or it breaks (None);
    bad framing cannot be resynchronised, so it ends the reading with the
    :class:`~voxwire.errors.SipParseError` reason (the caller closes the stream)."""
    buffer = bytearray()
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return None
            buffer += chunk
            while True:
                try:
                    length = message_length(buffer, limits)
                except SipParseError as e:
                    return e.reason
                if length is None:
                    break
                message = bytes(buffer[:length])
                del buffer[:length]
                deliver(message)
    except (ConnectionError, OSError):
        return None


def rtp_session_for(
    answer: Answer, pipeline_rate: int, session_options: Mapping[str, object]
) -> RtpSession:
    """The RTP session of a call's negotiated stream (``answer``): its payload type,
    ptime and RED; Opus decoded at the pipeline rate where Opus has it (else 48 kHz);
    ``session_options`` on top (for inbound and outbound calls alike)."""
    options: dict[str, object] = {"payload_type": answer.payload_type, "frame_ms": answer.ptime}
    if answer.red is not None:
        options["red_payload_type"] = answer.red
    if answer.codec == "opus":
        options["sample_rate"] = pipeline_rate if pipeline_rate in _OPUS_RATES else 48000
    options.update(session_options)
    return RtpSession(answer.codec, **options)  # type: ignore[arg-type]


async def serve_sip(
    handler: RtpHandler,
    host: str = "127.0.0.1",
    port: int = 5060,
    *,
    media_host: str | None = None,
    rtp_ports: tuple[int, int] | None = None,
    codecs: tuple[Codec, ...] = ("pcmu", "pcma"),
    answer_delay: float = 0.0,
    pipeline_rate: int = 16000,
    idle_timeout: float = 15.0,
    handler_grace: float = 2.0,
    max_calls: int = 100,
    session_options: Mapping[str, object] | None = None,
    limits: Limits | None = None,
    t1: float = 0.5,
    lead: float = 0.04,
    pacer: Pacer | None = None,
    latch: bool = True,
    tcp: bool = False,
    tls: ssl.SSLContext | None = None,
    tls_port: int = 5061,
    auth: Authenticator | None = None,
    min_se: int = 90,
    session_expires: int = 1800,
    srtp: Literal["tls", "always", "never"] = "tls",
) -> SipCallServer:
    """Listen for SIP over UDP on ``host:port`` and run ``handler`` on every answered call.

    Parameters
    ----------
    handler : callable
        ``async def handler(call)`` for each call (``echo_handler``, a ``VoiceAgent``).
    host, port : str, int
        Where signalling listens (port 0: any free port, see
        :attr:`SipCallServer.local_addr`).
    media_host : str, optional
        The address RTP sockets bind to and that goes into Contact, Via and the SDP
        answer: what peers reach (default ``host``, which must then not be ``0.0.0.0``).
    rtp_ports : (int, int), optional
        The range RTP sockets bind in, on even ports; any free port by default.
    codecs : tuple of {"pcmu", "pcma", "opus"}
        The codecs an offer may be answered with (Opus needs ``voxwire[opus]``).
    answer_delay : float
        Seconds between the 180 and the 200.
    pipeline_rate : int
        Rate of the calls' :class:`~voxwire.protocols.events.Audio` events.
    idle_timeout : float
        Seconds without RTP after which a call ends with a BYE.
    handler_grace : float
        Seconds a handler has to return once its call ended.
    max_calls : int
        Calls at once; further INVITEs get 503.
    session_options : mapping, optional
        More keyword arguments for each call's RtpSession (jitter buffer settings...).
    limits : Limits, optional
        The SIP parser's bounds.
    t1 : float
        RFC 3261 T1, seconds (T2 stays 4 s, T4 5 s).
    lead, pacer :
        As in :class:`~voxwire.aio.rtp.RtpEndpoint`.
    tcp : bool
        Listen for SIP over TCP too, on the same port number (section 18); each TCP
        connection's byte stream is cut into messages by Content-Length (section 18.3),
        and a connection whose stream breaks the framing is closed (counted in
        :attr:`SipCallServer.stream_errors`).
    tls : ssl.SSLContext, optional
        Listen for SIP over TLS too (section 26.2), on ``tls_port`` (5061 by default; 0:
        any free port, see :attr:`SipCallServer.tls_addr`), with this server context
        (:func:`voxwire.aio.tls.server_context` of the user's certificate and key). The
        stream is framed as over TCP; the server's Via says ``TLS``, its Contact is
        ``sips:`` for a ``sips:`` Request-URI (else ``;transport=tls``), and a ``sips:``
        Request-URI over UDP or TCP gets 416.
    auth : Authenticator, optional
        Who may call: a digest challenge (401, 407 with ``proxy``) for INVITEs from
        outside its allow-list, 403 when it has no credentials (:mod:`voxwire.sip.auth`);
        the user a call authenticated as is ``metadata["sip_user"]`` of its CallStarted.
    min_se, session_expires : int
        RFC 4028 session timers: the smallest session interval taken (less gets 422) and
        the largest granted, seconds. A caller that asks for a session timer refreshes
        it (re-INVITE or UPDATE); a session not refreshed in time ends with a BYE.
    srtp : {"tls", "always", "never"}
        SDES-SRTP (RFC 4568, :mod:`voxwire.sip.srtp`): ``RTP/SAVP`` offers are taken
        over TLS only (``"tls"``, the default: the keys are in the SDP, so they must not
        cross the network in the clear), on any transport (``"always"``: insecure,
        for a network the operator trusts), or never. An offer whose only audio stream is
        SRTP where it is not taken gets 488. Without pylibsrtp installed SRTP is never
        taken (a warning at start).
    latch : bool
        Symmetric RTP (RFC 4961): when the call's first RTP packet of the negotiated
        payload type comes from another host than the offer names (a caller behind NAT,
        or one that names another interface), take the stream from there and send to
        where it comes from. False: only the offer's host is heard.
    """
    media = media_host or host
    if media in ("0.0.0.0", "::"):
        raise ValueError("serve_sip: listening on a wildcard address needs media_host")
    server = SipCallServer(
        handler,
        media_host=media,
        rtp_ports=rtp_ports,
        answer_delay=answer_delay,
        pipeline_rate=pipeline_rate,
        idle_timeout=idle_timeout,
        handler_grace=handler_grace,
        session_options=session_options or {},
        lead=lead,
        pacer=pacer,
        latch=latch,
    )
    if srtp != "never":
        try:
            import pylibsrtp  # noqa: F401
        except ImportError:
            log.warning(
                "sip: SRTP offers refused: pylibsrtp is not installed (%s)", SrtpUnavailable.__doc__
            )
            srtp = "never"
    sip: dict[str, object] = {
        "srtp": srtp,
        "codecs": codecs,
        "max_calls": max_calls,
        "t1": t1,
        "auth": auth,
        "min_se": min_se,
        "session_expires": session_expires,
    }
    if limits is not None:
        sip["limits"] = limits
    await server._bind(host, port, sip)
    try:
        if tcp:
            await server._listen_tcp(host, sip)
        if tls is not None:
            await server._listen_tls(host, tls_port, tls, sip)
    except OSError:
        await server.aclose()
        raise
    return server
