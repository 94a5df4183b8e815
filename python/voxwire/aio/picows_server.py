"""A media-stream server on ``picows`` (a WebSocket implementation in Cython), beside the
``websockets`` one.

``pip install "voxwire[picows]"``; ``voxwire serve --ws picows``; in code::

    from voxwire.aio.picows_server import serve

    server = await serve(handler, "twilio", "0.0.0.0", 8080, path="/media")
    async with server:
        await server.serve_forever()

It makes the same decisions as :func:`voxwire.aio.websockets_server.serve` before the
upgrade (the media ``path``, ``/health`` and ``/ready``, ``/metrics``, the connection
caps, the token, the subprotocol, admission) and runs each connection through
:func:`~voxwire.aio.session.run_call` with a new codec, so a call behaves the same on
either library. What differs is the connection: picows parses frames in compiled code and
hands each one to :class:`PicowsTransport` in a callback, which passes it straight to the
call (:meth:`voxwire.aio.session.Call.feed`, in the callback: no read task or queue per
call; before the call is attached the messages wait, at most ``QUEUE_PAUSE`` before the
socket stops being read) and writes sends straight to the socket. picows reads only
``GET`` requests without a body, so the control API (``POST``) is not served here: pass
``control`` and :func:`serve` raises.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from voxwire.aio.admission import METRICS_PATH, Admission, http_answer
from voxwire.aio.handshake import ConnectionCaps, check_upgrade, refused, select_subprotocol
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Handler, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.registry import codec_factory
from voxwire.security import TokenAuth

if TYPE_CHECKING:
    from picows import WSFrame, WSTransport, WSUpgradeRequest
    from picows import WSListener as _Listener
else:
    try:  # picows calls only a WSListener's subclass
        from picows import WSListener as _Listener
    except ImportError:  # pragma: no cover - depends on the environment
        _Listener = object

__all__ = ["CLOSE_TIMEOUT", "QUEUE_PAUSE", "QUEUE_RESUME", "PicowsTransport", "serve"]

#: messages queued for a call before its socket stops being read (it resumes at
#: ``QUEUE_RESUME``): a call whose handler falls behind holds at most this many
QUEUE_PAUSE = 256
QUEUE_RESUME = 64
#: seconds :meth:`PicowsTransport.close` waits for the peer's close frame
CLOSE_TIMEOUT = 2.0


def _import_picows() -> Any:
    try:
        import picows
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the picows adapter needs the "picows" package: pip install "voxwire[picows]"'
        ) from exc
    return picows


class PicowsTransport(_Listener):
    """A :class:`~voxwire.aio.session.ProbingTransport` over a picows connection: picows
    calls the ``on_ws_*`` methods (it is the connection's listener), the call awaits
    :meth:`recv` and :meth:`send`."""

    def __init__(self, remote: str, max_message: int, start: Callable[[PicowsTransport], None]):
        super().__init__()
        picows = _import_picows()
        self._types = picows.WSMsgType
        self._codes = picows.WSCloseCode
        #: the client's address, for logs and the audit log
        self.remote = remote
        self._max = max_message
        self._start = start
        self._ws: WSTransport | None = None
        self._queue: collections.deque[str | bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._parts_text = False
        self._ended: ConnectionClosed | None = None
        self._disconnected = asyncio.get_running_loop().create_future()
        self._probes: collections.deque[asyncio.Future[None]] = collections.deque()
        self._writable: asyncio.Future[None] | None = None
        self._call: Call | None = None

    # -- picows' side: callbacks -------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._start(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        types = self._types
        if kind is types.TEXT or kind is types.BINARY:
            if frame.fin and not self._parts:
                if kind is types.TEXT:
                    self._push(frame.get_payload_as_utf8_text())
                else:
                    self._push(frame.get_payload_as_bytes())
                return
            if self._parts:  # a new message before the last one ended
                self._fail(self._codes.PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            self._parts_text = kind is types.TEXT
            self._part(transport, frame)
        elif kind is types.CONTINUATION:
            if not self._parts:
                self._fail(self._codes.PROTOCOL_ERROR, "a continuation frame with no message")
                return
            self._part(transport, frame)
        elif kind is types.PONG:
            if self._probes:
                probe = self._probes.popleft()
                if not probe.done():
                    probe.set_result(None)
        elif kind is types.CLOSE:
            code = frame.get_close_code()
            reason = frame.get_close_message() or b""
            number = None if code is self._codes.NO_INFO else int(code.value)
            self._end(ConnectionClosed(number, reason.decode("utf-8", "replace")))
            if not transport.is_close_frame_sent:
                transport.send_close(code if number is not None else self._codes.OK)
            transport.disconnect()

    def _part(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        self._parts.append(payload)
        self._parts_size += len(payload)
        if self._parts_size > self._max:
            self._fail(self._codes.MESSAGE_TOO_BIG, f"a message over {self._max} bytes")
            return
        if frame.fin:
            whole = b"".join(self._parts)
            self._parts.clear()
            self._parts_size = 0
            if self._parts_text:
                try:
                    self._push(whole.decode("utf-8"))
                except UnicodeDecodeError:
                    self._fail(self._codes.INVALID_TEXT, "a text message that is not UTF-8")
            else:
                self._push(whole)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._ended is None:
            handshake = transport.close_handshake
            if handshake is not None and handshake.sent is not None and handshake.recv is None:
                # picows closed it: a frame over the size limit, a protocol error
                sent = handshake.sent
                self._end(ConnectionClosed(int(sent.code.value), str(sent.reason), local=True))
            else:
                self._end(ConnectionClosed(None, "the connection was lost"))
        if not self._disconnected.done():
            self._disconnected.set_result(None)
        for probe in self._probes:
            if not probe.done():
                probe.set_exception(ConnectionClosed(None, "the connection ended"))
        self._probes.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        transport.send_ping()

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        return False

    def _push(self, message: str | bytes) -> None:
        call = self._call
        if call is not None:
            call.feed(message)  # the call takes it now (False: it takes no more)
            return
        self._queue.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(self._queue) >= QUEUE_PAUSE and not self._paused and self._ws is not None:
            self._paused = True
            self._ws.underlying_transport.pause_reading()

    def _end(self, closed: ConnectionClosed) -> None:
        if self._ended is None:
            self._ended = closed
            if self._call is not None:
                self._call.feed_end(closed)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, code: Any, reason: str) -> None:
        self._end(ConnectionClosed(int(code.value), reason, local=True))
        if self._ws is not None:
            self._ws.send_close(code, reason.encode())
            self._ws.disconnect()

    # -- the call's side: the Transport protocol ---------------------------------------

    def attach(self, call: Call) -> None:
        """From now on hand every message to ``call.feed`` as picows parses it, in its
        callback (:func:`~voxwire.aio.session.run_call` does this instead of reading with
        :meth:`recv`: no read task and no queue per call). The messages queued before are
        fed first, in order; an end that came before is passed on."""
        self._call = call
        queue = self._queue
        while queue:
            if not call.feed(queue.popleft()):
                queue.clear()
        if self._paused and self._ws is not None:
            self._paused = False
            self._ws.underlying_transport.resume_reading()
        if self._ended is not None:
            call.feed_end(self._ended)

    async def recv(self) -> str | bytes:
        while not self._queue:
            if self._ended is not None:
                raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message = self._queue.popleft()
        if self._paused and len(self._queue) <= QUEUE_RESUME and self._ws is not None:
            self._paused = False
            self._ws.underlying_transport.resume_reading()
        return message

    async def send(self, message: Outbound) -> None:
        ws = self._ws
        if ws is None or ws.is_disconnected or ws.is_close_frame_sent:
            raise ConnectionClosed(None, "the connection is closed")
        if isinstance(message, str):
            ws.send(self._types.TEXT, message.encode())
        else:
            ws.send(self._types.BINARY, message)
        if self._writable is not None and not self._writable.done():
            await self._writable  # the socket's buffer is full: wait until it drains

    async def read_probe(self) -> None:
        """A ping; its pong comes back once the peer has read everything sent before it."""
        ws = self._ws
        if ws is None or ws.is_disconnected:
            raise ConnectionClosed(None, "the connection is closed")
        probe = asyncio.get_running_loop().create_future()
        self._probes.append(probe)
        ws.send_ping()
        await probe

    async def close(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is None or ws.is_disconnected:
            return
        if not ws.is_close_frame_sent:
            ws.send_close(self._codes(code), reason.encode()[:120])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._disconnected), CLOSE_TIMEOUT)
        ws.disconnect()


async def serve(
    handler: Handler,
    protocol: str | Callable[[], MediaStreamCodec],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    path: str | None = None,
    auth: TokenAuth | None = None,
    limits: Limits | None = None,
    pacer: Pacer | None = None,
    admission: Admission | None = None,
    metrics: Callable[[], tuple[str, bytes]] | None = None,
    on_end: Callable[[Call], object] | None = None,
    caps: ConnectionCaps | None = None,
    control: object | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Serve media streams of ``protocol`` on ``host:port`` with picows; the options are
    :func:`voxwire.aio.websockets_server.serve`'s. Extra keyword arguments go to
    :func:`picows.ws_create_server` (``reuse_port=True``, ``backlog``, ``ssl``)."""
    if control is not None:
        raise ValueError("the picows adapter serves no control API (picows reads GET only)")
    picows = _import_picows()
    factory = codec_factory(protocol)
    limits = limits or Limits()
    caps = caps if caps is not None else ConnectionCaps()
    if caps.max_per_address is not None:
        # picows hands the listener factory the request alone, without the peer's address
        raise ValueError("the picows adapter caps the connections in total, not per address")
    calls: set[asyncio.Task[None]] = set()

    def answer(status: int, body: str | bytes, content_type: str = "text/plain") -> Any:
        data = body.encode() if isinstance(body, str) else body
        make = picows.WSUpgradeResponse
        response = (
            make.create_ok_response(data)
            if status == 200
            else make.create_error_response(HTTPStatus(status), data)
        )
        response.headers["Content-Type"] = content_type
        return picows.WSUpgradeResponseWithListener(response, None)

    def listener_factory(request: WSUpgradeRequest) -> Any:
        target = request.path.decode("latin-1")
        url = urlsplit(target)
        if admission is not None and url.path != path:
            health = http_answer(admission, url.path)
            if health is not None:
                return answer(*health)
        if metrics is not None and url.path == METRICS_PATH and url.path != path:
            content_type, body = metrics()
            return answer(200, body, content_type)
        if path is not None and url.path != path:
            return answer(404, "no media stream here\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return answer(426, "a WebSocket upgrade is expected here\n")
        address = "?"  # known only once the connection is up (caps count in total)
        kind = caps.admit(address)
        if kind:
            return answer(503, refused(kind, 503, address, caps.refusal(kind)))
        check = check_upgrade(auth, dict(request.headers.items()), dict(parse_qsl(url.query)))
        if check.refuse:
            caps.release(address)
            return answer(401, refused("unauthorized", 401, address, check.reason))
        key = object()
        if admission is not None and not admission.admit(key):
            caps.release(address)
            response = picows.WSUpgradeResponse.create_error_response(
                HTTPStatus.SERVICE_UNAVAILABLE, f"{admission.refusal() or 'refused'}\n".encode()
            )
            response.headers["Retry-After"] = "1"
            return picows.WSUpgradeResponseWithListener(response, None)
        offered = [
            part.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for part in value.split(",")
            if part.strip()
        ]
        chosen = select_subprotocol(offered)

        def start(transport: PicowsTransport) -> None:
            task = asyncio.get_running_loop().create_task(run(transport, check, key, address))
            calls.add(task)
            task.add_done_callback(calls.discard)

        listener = PicowsTransport("", limits.max_message_bytes, start)
        extra = {} if chosen is None else {"Sec-WebSocket-Protocol": chosen}
        return picows.WSUpgradeResponseWithListener(
            picows.WSUpgradeResponse.create_101_response(extra), listener
        )

    async def run(transport: PicowsTransport, check: Any, key: object, address: str) -> None:
        if transport._ws is not None:
            peer = transport._ws.underlying_transport.get_extra_info("peername")
            transport.remote = str(peer[0]) if peer else ""
        try:
            call = await run_call(
                factory(),
                transport,
                handler,
                pacer=pacer,
                limits=limits,
                auth=auth,
                authenticated=check.authenticated,
                credential=check.claims,
            )
            if on_end is not None:
                on_end(call)
        finally:
            caps.release(address)
            if admission is not None:
                admission.release(key)
            if transport._ws is not None:
                transport._ws.disconnect()

    kwargs.setdefault("websocket_handshake_timeout", 10)
    server: asyncio.Server = await picows.ws_create_server(
        listener_factory,
        host,
        port,
        max_frame_size=limits.max_message_bytes,
        enable_auto_pong=True,
        **kwargs,
    )
    return server
