"""Outbound SIP calls over UDP, TCP or TLS: the asyncio driver of
:class:`voxwire.sip.uac.SipClient`.

>>> async def main():                                                  # doctest: +SKIP
...     async with await open_dialer("192.0.2.1") as dialer:
...         result = await dialer.dial("sip:alice@192.0.2.9", echo_handler)
...     print(result.outcome, result.status)

:func:`open_dialer` binds one UDP socket for signalling, or with ``transport="tcp"`` or
``"tls"`` listens on that address and connects to each next hop when it first has a
message for it (one connection per hop, kept while it lasts, made again when a later
message finds it closed; a connection that cannot be made fails the transactions to that
hop as a 503 would, section 8.1.3.1). Requests from the peer come on that connection or
on the listener. :meth:`SipDialer.dial` binds an
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
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal

from voxwire.aio.pacer import Pacer
from voxwire.aio.rtp import Address, DatagramForwarder, RtpEndpoint
from voxwire.aio.rtp_call import run_call
from voxwire.aio.sip import (
    SipCall,
    _MediaProtocol,
    _SrtpTransport,
    read_sip_stream,
    rtp_session_for,
)
from voxwire.errors import SdpError
from voxwire.protocols.rtp_session import Codec, RtpSession
from voxwire.sip.message import Request, parse_message
from voxwire.sip.sdp import SRTP_SUITES, Answer, Crypto, answer_offer, parse_sdp
from voxwire.sip.srtp import SrtpContext, SrtpUnavailable
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
_SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"


def render_offer(
    host: str,
    port: int,
    codecs: tuple[Codec, ...],
    *,
    session_id: int,
    crypto: Crypto | None = None,
) -> bytes:
    """The SDP offer of one audio stream on ``host:port``: ``codecs`` in order of
    preference (PCMU 0, PCMA 8, Opus 111 as ``opus/48000/2``) and telephone-event 101 at
    8000 Hz (RFC 4733 section 7.1.1), ptime 20, sendrecv. With ``crypto`` the stream is
    ``RTP/SAVP`` and offers its local key (SDES, RFC 4568 section 6.1)."""
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
        f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} {' '.join(map(str, pts))}",
    ]
    if crypto is not None:
        lines.append(f"a=crypto:{crypto.line()}")
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


class SipDialer:
    """A UAC on one UDP socket or a TCP/TLS listener and its connections; made by
    :func:`open_dialer`. :attr:`client` is the sans-I/O
    :class:`~voxwire.sip.uac.SipClient` (its ``counters`` say what went)."""

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
        self._open = False
        # TCP and TLS: the listener, each hop's connection (by its address), the messages
        # waiting for one being made, the hosts' names (TLS checks the certificate's)
        self._stream: Literal["", "TCP", "TLS"] = ""
        self._ssl: ssl.SSLContext | None = None
        self._listener: asyncio.Server | None = None
        self._bound: Address = ("", 0)
        self._writers: dict[Address, asyncio.StreamWriter] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        self._names: dict[Address, str] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self.connect_timeout = 10.0
        #: offer SDES-SRTP (``RTP/SAVP``) on every call
        self.srtp = False
        #: connections that could not be made, by hop
        self.connect_errors = 0
        #: connections closed for bad framing, by SipParseError reason
        self.stream_errors: dict[str, int] = {}
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
        """The bound (host, port) of the signalling socket (or the TCP/TLS listener)."""
        if not self._open:
            raise RuntimeError("SipDialer is not open")
        if self._transport is None:
            return self._bound
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
            for wire, dest in out:
                self._send(wire, dest)
            events = client.events()
            if not events and not out:
                break
            for event in events:
                self._event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = client.get_timer()
        if when is not None and self._open:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    # --- the transports ---------------------------------------------------------------

    def _send(self, wire: bytes, dest: Address) -> None:
        if not self._open:
            return
        if not self._stream:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.sendto(wire, dest)
            return
        writer = self._writers.get(dest)
        if writer is not None and not writer.is_closing():
            writer.write(wire)
            return
        waiting = self._connecting.get(dest)
        if waiting is not None:
            waiting.append(wire)
            return
        self._connecting[dest] = [wire]
        self._track(asyncio.ensure_future(self._connect(dest)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _connect(self, dest: Address) -> None:
        context = self._ssl if self._stream == "TLS" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    dest[0],
                    dest[1],
                    ssl=context,
                    server_hostname=self._names.get(dest, dest[0]) if context else None,
                    local_addr=(self._bound[0], 0),
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self._connecting.pop(dest, None)
            self.connect_errors += 1
            log.warning("sip dial: no %s connection to %s:%d (%s)", self._stream, *dest, exc)
            if self._open:
                self.client.transport_error(dest, self._now())
                self._pump()
            return
        for wire in self._connecting.pop(dest, []):
            writer.write(wire)
        await self._read(dest, reader, writer)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        await self._read((str(peer[0]), int(peer[1])), reader, writer)

    async def _read(
        self, addr: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers[addr] = writer

        def deliver(message: bytes) -> None:
            self.client.receive(message, addr, self._now())
            self._pump()

        try:
            bad = await read_sip_stream(reader, self.client.limits, deliver)
            if bad is not None:
                self.stream_errors[bad] = self.stream_errors.get(bad, 0) + 1
        finally:
            if self._writers.get(addr) is writer:
                del self._writers[addr]
            writer.close()
        if self._open:
            # the connection is gone: what still waits for a response on it has failed
            self.client.transport_error(addr, self._now())
            self._pump()

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
        # SIP over TLS is on 5061 unless the URI says otherwise (RFC 3261 section 19.1.2)
        hostport = uri_address(uri, 5061 if self._stream == "TLS" else 5060)
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
            host,
            port,
            family=socket.AF_INET,
            type=socket.SOCK_STREAM if self._stream else socket.SOCK_DGRAM,
        )
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        dest = str(infos[0][4][0]), port
        self._names[dest] = host  # the name a TLS certificate must carry
        return dest

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
            keys = None
            if self.srtp:  # a key of voxwire's for each call; the answer brings the callee's
                suite = _SRTP_SUITE
                keys = Crypto(1, suite, b"", secrets.token_bytes(SRTP_SUITES[suite]))
            offer = render_offer(self.media_host, port, self.codecs, session_id=port, crypto=keys)
            handle = self.client.invite(uri, offer, self._now(), dest=dest, display=display)
            queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
            self._waiters[handle] = queue
            self._pump()
            try:
                return await self._outcome(
                    handle, queue, ring_timeout, transport, protocol, handler, keys
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
        keys: Crypto | None,
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
                return await self._answered(event, transport, protocol, progress, handler, keys)

    async def _answered(
        self,
        event: CallAnswered,
        transport: asyncio.DatagramTransport,
        protocol: _MediaProtocol,
        progress: list[int],
        handler: CallHandler,
        keys: Crypto | None,
    ) -> DialResult:
        handle = event.handle
        try:
            answer = answer_offer(parse_sdp(event.sdp), self.codecs, srtp=keys is not None)
            if keys is not None:
                # the answer's key is the callee's, for the tag and suite offered
                got = answer.crypto
                if got is None or (got.tag, got.suite) != (keys.tag, keys.suite):
                    raise SdpError("no_srtp", "the answer has no SRTP key for the offer's")
                crypto = Crypto(keys.tag, keys.suite, got.remote_key, keys.local_key)
                answer = replace(answer, crypto=crypto)
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
        media: asyncio.DatagramTransport = transport
        srtp = None
        if answer.crypto is not None:
            srtp = SrtpContext(answer.crypto)
            media = _SrtpTransport(transport, srtp)
            protocol.srtp = srtp
        endpoint = RtpEndpoint.attach(
            session, media, answer.remote, lead=self.lead, pacer=self.pacer
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
        call.srtp = srtp
        self._calls[handle] = call
        # the callee may wait for voxwire to speak first: the call starts at the answer,
        # not at the first RTP packet as an answered one does
        call._start()
        try:
            await run_call(call, lambda _: handler(call), handler_grace=self.handler_grace)
        finally:
            self._calls.pop(handle, None)
            if self._open:
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
        close the socket and the connections."""
        if not self._open:
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
        self._open = False
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._writers.values()):
            writer.close()
        for task in list(self._readers):
            task.cancel()
        if self._readers:
            await asyncio.wait(list(self._readers), timeout=timeout)
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
    transport: Literal["udp", "tcp", "tls"] = "udp",
    ssl_context: ssl.SSLContext | None = None,
    listen_ssl: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    srtp: bool = False,
) -> SipDialer:
    """Bind the dialer's signalling socket on ``host:port`` (0: any free port).

    ``user``/``password`` answer 401/407 challenges (digest, SHA-256 or MD5) and name
    the From and Contact user. With ``transport="tcp"`` or ``"tls"`` the dialer connects
    to each hop within ``connect_timeout`` seconds, over TLS with ``ssl_context`` (by
    default the system's trust store, checking the host name of the URI dialled), and
    listens on ``host:port`` for a peer's connections to its Contact (over TLS only when
    ``listen_ssl``, a server context with voxwire's certificate, is given; without it a
    peer's requests come on the connection voxwire made). With ``srtp`` every call offers
    ``RTP/SAVP`` with an SDES key of its own (``AES_CM_128_HMAC_SHA1_80``, RFC 4568), over
    TLS only (the keys travel in the SDP); an answer without a key for it is not taken.
    The other parameters are those of :func:`~voxwire.aio.sip.serve_sip`.

    Raises
    ------
    ValueError
        A bad option, or ``srtp`` without ``transport="tls"``.
    voxwire.sip.srtp.SrtpUnavailable
        ``srtp`` without pylibsrtp installed.
    """
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"open_dialer: transport must be udp, tcp or tls, got {transport!r}")
    if connect_timeout <= 0:
        raise ValueError(f"open_dialer: connect_timeout must be > 0, got {connect_timeout}")
    if srtp:
        if transport != "tls":
            raise ValueError("open_dialer: srtp needs transport='tls' (the keys are in the SDP)")
        try:
            import pylibsrtp  # noqa: F401
        except ImportError:
            raise SrtpUnavailable("SRTP needs pylibsrtp: pip install 'voxwire[sip-srtp]'") from None
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
    dialer.connect_timeout = connect_timeout
    dialer.srtp = srtp
    if transport == "udp":
        udp, _ = await loop.create_datagram_endpoint(
            lambda: DatagramForwarder(dialer, dialer._datagram), local_addr=(host, port)
        )
        dialer._transport = udp
        bound = int(udp.get_extra_info("sockname")[1])
    else:
        context = ssl_context
        if transport == "tls" and context is None:
            context = ssl.create_default_context()
        dialer._stream = "TLS" if transport == "tls" else "TCP"
        dialer._ssl = context
        # a peer's requests may come on a connection of its own, to the Contact: the
        # listener takes them
        if transport == "tcp":
            dialer._listener = await asyncio.start_server(dialer._accepted, host, port)
        elif listen_ssl is not None:
            dialer._listener = await asyncio.start_server(
                dialer._accepted, host, port, ssl=listen_ssl, ssl_handshake_timeout=10.0
            )
        if dialer._listener is not None:
            bound = int(dialer._listener.sockets[0].getsockname()[1])
        else:
            bound = port or 5061
    dialer._bound = (host, bound)
    dialer._open = True
    dialer.client = SipClient(
        media,
        bound,
        user=user,
        password=password,
        t1=t1,
        transport=dialer._stream or "UDP",
    )
    return dialer
