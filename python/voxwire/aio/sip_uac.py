"""Outbound SIP calls over UDP: the asyncio driver of :class:`voxwire.sip.uac.SipClient`.

>>> async def main():                                                  # doctest: +SKIP
...     async with await open_dialer("192.0.2.1") as dialer:
...         result = await dialer.dial("sip:alice@192.0.2.9", echo_handler)
...     print(result.outcome, result.status)

:func:`open_dialer` binds one UDP socket for signalling; :meth:`SipDialer.dial` binds an
RTP socket, offers PCMU, PCMA (and Opus, when asked) with ``telephone-event``, and waits
for the outcome. An answered call is an :class:`OutboundCall`, a
:class:`~voxwire.aio.sip.SipCall`: the same handlers run on it as on the calls
:func:`~voxwire.aio.sip.serve_sip` answers (the echo agent, a voice agent: anything
written for :class:`~voxwire.aio.surface.CallSurface`), with symmetric RTP, RFC 4733 key
presses both ways and the inactivity timeout. :meth:`OutboundCall.transfer` hands the
callee to another party (a blind transfer, RFC 3515) and ends this leg when it worked.

:meth:`SipDialer.dial` returns a :class:`DialResult` whose ``outcome`` is

* ``answered``: a 2xx came, the handler ran to the call's end (either side's BYE);
* ``busy``: 486 or 600;
* ``no_answer``: the callee rang but did not answer in ``ring_timeout`` seconds (the
  INVITE was cancelled), or 408/480/487 came;
* ``failed``: anything else: no response at all within ``ring_timeout`` (nor Timer B),
  another 4xx-6xx, an answer without a codec voxwire takes.

:meth:`SipDialer.register` keeps a registration (RFC 3261 section 10) of the socket's
Contact until :meth:`SipDialer.aclose`, which unregisters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from voxwire.aio.pacer import Pacer
from voxwire.aio.rtp import Address, RtpEndpoint
from voxwire.aio.rtp_call import run_call
from voxwire.aio.sip import SipCall, _MediaProtocol, rtp_session_for
from voxwire.errors import SdpError
from voxwire.protocols.rtp_session import Codec, RtpSession
from voxwire.sip.message import Request, parse_message
from voxwire.sip.sdp import Answer, answer_offer, parse_sdp
from voxwire.sip.uac import (
    CallAnswered,
    CallEnded,
    CallFailed,
    CallProgress,
    ClientEvent,
    Registered,
    RegistrationFailed,
    SipClient,
    TransferProgress,
    uri_address,
)
from voxwire.sip.uas import IncomingCall

__all__ = ["CallHandler", "DialResult", "OutboundCall", "SipDialer", "open_dialer", "render_offer"]

log = logging.getLogger("voxwire.aio")

Outcome = Literal["answered", "busy", "no_answer", "failed"]
CallHandler = Callable[["OutboundCall"], Awaitable[None]]
"""A handler of outbound calls (any RtpCall handler is one)."""
_OPUS_PT = 111
_EVENT_PT = 101
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def render_offer(host: str, port: int, codecs: tuple[Codec, ...], *, session_id: int) -> bytes:
    """The SDP offer of one audio stream on ``host:port``: ``codecs`` in order of
    preference (PCMU 0, PCMA 8, Opus 111 as ``opus/48000/2``) and telephone-event 101 at
    8000 Hz (RFC 4733 section 7.1.1), ptime 20, sendrecv."""
    family = "IP6" if ":" in host else "IP4"
    pts: list[int] = []
    lines: list[str] = []
    for codec in codecs:
        if codec == "pcmu":
            pts.append(0)
            lines.append("a=rtpmap:0 PCMU/8000")
        elif codec == "pcma":
            pts.append(8)
            lines.append("a=rtpmap:8 PCMA/8000")
        elif codec == "opus":
            pts.append(_OPUS_PT)
            lines += [f"a=rtpmap:{_OPUS_PT} opus/48000/2", f"a=fmtp:{_OPUS_PT} useinbandfec=1"]
    if not pts:
        raise ValueError("render_offer: no codec to offer")
    pts.append(_EVENT_PT)
    lines += [f"a=rtpmap:{_EVENT_PT} telephone-event/8000", f"a=fmtp:{_EVENT_PT} 0-15"]
    head = [
        "v=0",
        f"o=voxwire {session_id} {session_id} IN {family} {host}",
        "s=voxwire",
        f"c=IN {family} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}",
    ]
    return ("\r\n".join([*head, *lines, "a=ptime:20", "a=sendrecv"]) + "\r\n").encode("ascii")


@dataclass
class DialResult:
    """How an outbound call went."""

    outcome: Outcome
    status: int
    """The INVITE's final status (408 when nothing answered at all)."""
    reason: str = ""
    call: OutboundCall | None = None
    """The call, when it was answered (its statistics stay readable)."""
    progress: list[int] = field(default_factory=list)
    """The provisional statuses that came (180, 183...)."""


class OutboundCall(SipCall):
    """An answered outbound call: a :class:`SipCall` (with :meth:`SipCall.transfer`)
    whose handle is the dialer's."""

    def __init__(self, dialer: SipDialer, handle: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.handle = handle
        self._refer = lambda target: dialer._refer(handle, target)
        self._confirmed.set()  # the dialer acknowledged the 200 before the call was made


class _Signalling(asyncio.DatagramProtocol):
    def __init__(self, dialer: SipDialer) -> None:
        self.dialer = dialer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.dialer._datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.dialer.socket_errors += 1


class SipDialer:
    """A UAC on one UDP socket; made by :func:`open_dialer`. :attr:`client` is the
    sans-I/O :class:`~voxwire.sip.uac.SipClient` (its ``counters`` say what went)."""

    def __init__(
        self,
        *,
        media_host: str,
        codecs: tuple[Codec, ...],
        pipeline_rate: int,
        idle_timeout: float,
        handler_grace: float,
        session_options: Mapping[str, object],
        lead: float,
        pacer: Pacer | None,
        latch: bool,
    ) -> None:
        self.media_host = media_host
        self.codecs = codecs
        self.pipeline_rate = pipeline_rate
        self.idle_timeout = idle_timeout
        self.handler_grace = handler_grace
        self.session_options = dict(session_options)
        self.lead = lead
        self.pacer = pacer
        self.latch = latch
        self.client: SipClient
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: dict[str, asyncio.Queue[ClientEvent]] = {}
        self._calls: dict[str, OutboundCall] = {}
        #: every registration event, in order (Registered, RegistrationFailed)
        self.registrations: list[Registered | RegistrationFailed] = []
        self._registered = asyncio.Event()
        self._unregistered = asyncio.Event()
        #: ICMP errors reported by the signalling socket
        self.socket_errors = 0

    @property
    def local_addr(self) -> Address:
        """The bound (host, port) of the signalling socket."""
        if self._transport is None:
            raise RuntimeError("SipDialer is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _datagram(self, data: bytes, addr: Address) -> None:
        self.client.receive(data, addr, self._now())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.client.handle_timer(self._now())
        self._pump()

    def _pump(self) -> None:
        client = self.client
        while True:
            out = client.datagrams()
            transport = self._transport
            for wire, dest in out:
                if transport is not None and not transport.is_closing():
                    transport.sendto(wire, dest)
            events = client.events()
            if not events and not out:
                break
            for event in events:
                self._event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = client.get_timer()
        if when is not None and self._transport is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _event(self, event: ClientEvent) -> None:
        if isinstance(event, Registered | RegistrationFailed):
            self.registrations.append(event)
            if isinstance(event, Registered):
                (self._unregistered if event.expires == 0 else self._registered).set()
            elif not self.client.registered:
                self._unregistered.set()
            return
        handle = event.handle
        if isinstance(event, TransferProgress):
            call = self._calls.get(handle)
            if call is not None:
                call._transfer_progress(event.status, event.final)
            return
        if isinstance(event, CallEnded):
            call = self._calls.get(handle)
            if call is not None and event.reason == "remote_bye":
                call._remote_end("remote hung up")
            # "transferred": the client sent the BYE; SipCall.transfer closes the call
            return
        queue = self._waiters.get(handle)
        if queue is not None:
            queue.put_nowait(event)

    def _refer(self, handle: str, target: str) -> None:
        self.client.refer(handle, target, self._now())
        self._pump()

    async def _resolve(self, uri: str) -> Address:
        hostport = uri_address(uri)
        if hostport is None:
            raise ValueError(f"not a sip: URI with a host: {uri!r}")
        host, port = hostport
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            return host, port
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        return str(infos[0][4][0]), port

    async def dial(
        self,
        uri: str,
        handler: CallHandler,
        *,
        ring_timeout: float = 30.0,
        display: str = "",
    ) -> DialResult:
        """Call ``uri`` and run ``handler`` on the call when it is answered; see the
        module documentation for the outcomes."""
        loop = asyncio.get_running_loop()
        dest = await self._resolve(uri)
        protocol = _MediaProtocol(dest[0], self.latch, _placeholder(dest))
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=(self.media_host, 0)
        )
        try:
            port = int(transport.get_extra_info("sockname")[1])
            offer = render_offer(self.media_host, port, self.codecs, session_id=port)
            handle = self.client.invite(uri, offer, self._now(), dest=dest, display=display)
            queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
            self._waiters[handle] = queue
            self._pump()
            try:
                return await self._outcome(
                    handle, queue, ring_timeout, transport, protocol, handler
                )
            finally:
                self._waiters.pop(handle, None)
        finally:
            transport.close()

    async def _outcome(
        self,
        handle: str,
        queue: asyncio.Queue[ClientEvent],
        ring_timeout: float,
        transport: asyncio.DatagramTransport,
        protocol: _MediaProtocol,
        handler: CallHandler,
    ) -> DialResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_timeout
        progress: list[int] = []
        cancelled = False
        while True:
            timeout = deadline - loop.time()
            try:
                event = await asyncio.wait_for(
                    queue.get(), max(timeout, 0.0) if not cancelled else None
                )
            except TimeoutError:
                cancelled = True
                self.client.hangup(handle, self._now())  # CANCEL (once a 1xx came)
                self._pump()
                continue
            if isinstance(event, CallProgress):
                progress.append(event.status)
            elif isinstance(event, CallFailed):
                if cancelled and (event.status == 487 or (event.status == 408 and progress)):
                    return DialResult("no_answer", event.status, "no answer", progress=progress)
                if event.status == 408 and not progress:
                    return DialResult("failed", 408, "no response", progress=progress)
                return DialResult(
                    _classify(event.status), event.status, event.reason, progress=progress
                )
            elif isinstance(event, CallAnswered):
                return await self._answered(event, transport, protocol, progress, handler)

    async def _answered(
        self,
        event: CallAnswered,
        transport: asyncio.DatagramTransport,
        protocol: _MediaProtocol,
        progress: list[int],
        handler: CallHandler,
    ) -> DialResult:
        handle = event.handle
        try:
            answer = answer_offer(parse_sdp(event.sdp), self.codecs)
        except SdpError as exc:
            log.warning("sip dial: the answer cannot be used (%s): hanging up", exc)
            self.client.hangup(handle, self._now())
            self._pump()
            return DialResult("failed", event.response.status, f"bad answer: {exc.reason}")
        protocol.remote_host = answer.remote[0]
        protocol.event_pt = answer.telephone_event
        protocol.events = None
        if answer.telephone_event is not None:
            from voxwire.protocols.telephone_event import TelephoneEvents

            protocol.events = TelephoneEvents(answer.clock_rate)
        session = self._session(answer)
        endpoint = RtpEndpoint.attach(
            session, transport, answer.remote, lead=self.lead, pacer=self.pacer
        )
        invite = _invite_request(event)
        incoming = IncomingCall(handle, event.response.call_id, answer, invite, answer.remote)
        call = OutboundCall(
            self,
            handle,
            endpoint,
            incoming,
            pipeline_rate=self.pipeline_rate,
            idle_timeout=self.idle_timeout,
        )
        protocol.endpoint = endpoint
        protocol.call = call
        call._media = protocol
        call._rtp = transport
        self._calls[handle] = call
        # the callee may wait for voxwire to speak first: the call starts at the answer,
        # not at the first RTP packet as an answered one does
        call._start()
        try:
            await run_call(call, lambda _: handler(call), handler_grace=self.handler_grace)
        finally:
            self._calls.pop(handle, None)
            if self._transport is not None:
                self.client.hangup(handle, self._now())  # BYE unless the peer sent one
                self._pump()
        return DialResult("answered", event.response.status, "", call=call, progress=progress)

    def _session(self, answer: Answer) -> RtpSession:
        return rtp_session_for(answer, self.pipeline_rate, self.session_options)

    async def register(
        self, aor: str, *, registrar: str | None = None, expires: int = 3600, timeout: float = 10.0
    ) -> bool:
        """Register this socket's Contact for ``aor`` (``sip:ext@pbx``) at ``registrar``
        (default: the AOR's host) and keep it refreshed; True when the first REGISTER
        succeeded within ``timeout`` seconds (refreshes go on either way)."""
        target = registrar or "sip:" + aor.partition("@")[2]
        dest = await self._resolve(target)
        self._registered.clear()
        self.client.register(target, aor, self._now(), expires=expires, dest=dest)
        self._pump()
        try:
            await asyncio.wait_for(self._registered.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self, *, timeout: float = 2.0) -> None:
        """Unregister (waiting up to ``timeout`` for the registrar), end every call,
        close the socket."""
        if self._transport is None:
            return
        for call in list(self._calls.values()):
            await call.close()
        self._unregistered.clear()
        if self.client.unregister(self._now()):
            self._pump()
            try:
                await asyncio.wait_for(self._unregistered.wait(), timeout)
            except TimeoutError:
                log.warning("sip: the registrar did not answer the unregistration")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.close()
        self._transport = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> SipDialer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _placeholder(dest: Address) -> Answer:
    # the media protocol is made before the answer is known; its settings are set then
    offer = parse_sdp(
        f"v=0\r\no=- 0 0 IN IP4 {dest[0]}\r\ns=-\r\nc=IN IP4 {dest[0]}\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\n".encode()
    )
    return answer_offer(offer, ("pcmu",))


def _invite_request(event: CallAnswered) -> Request:
    # the call's identity for CallStarted: the dialog's From (voxwire) and To (callee)
    r = event.response
    headers = [(n, v) for n, v in r.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    message = parse_message(Request("INVITE", (r.header("To") or "").strip("<>"), headers).encode())
    assert isinstance(message, Request)
    return message


def _classify(status: int) -> Outcome:
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no_answer"
    return "failed"


async def open_dialer(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    media_host: str | None = None,
    user: str = "voxwire",
    password: str | None = None,
    codecs: tuple[Codec, ...] = ("pcmu", "pcma"),
    pipeline_rate: int = 16000,
    idle_timeout: float = 15.0,
    handler_grace: float = 2.0,
    session_options: Mapping[str, object] | None = None,
    t1: float = 0.5,
    lead: float = 0.04,
    pacer: Pacer | None = None,
    latch: bool = True,
) -> SipDialer:
    """Bind the dialer's signalling socket on ``host:port`` (0: any free port).

    ``user``/``password`` answer 401/407 challenges (digest, SHA-256 or MD5) and name
    the From and Contact user.
    The other parameters are those of :func:`~voxwire.aio.sip.serve_sip`.
    """
    media = media_host or host
    if media in ("0.0.0.0", "::"):
        raise ValueError("open_dialer: a wildcard address needs media_host")
    dialer = SipDialer(
        media_host=media,
        codecs=codecs,
        pipeline_rate=pipeline_rate,
        idle_timeout=idle_timeout,
        handler_grace=handler_grace,
        session_options=session_options or {},
        lead=lead,
        pacer=pacer,
        latch=latch,
    )
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Signalling(dialer), local_addr=(host, port)
    )
    dialer._transport = transport
    bound = int(transport.get_extra_info("sockname")[1])
    dialer.client = SipClient(media, bound, user=user, password=password, t1=t1)
    return dialer
