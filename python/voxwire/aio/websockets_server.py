"""A standalone media-stream server on the ``websockets`` package.

``pip install "voxwire[websockets]"``, then::

    import asyncio
    from voxwire.aio.websockets_server import serve

    async def handler(call):
        async for event in call:
            ...

    async def main():
        async with serve(handler, "twilio", "0.0.0.0", 8080, path="/media"):
            await asyncio.Future()

The server accepts the media WebSocket on ``path`` (any path when ``None``), checks the
optional :class:`~voxwire.security.TokenAuth` on the upgrade request (401 when absent and
the protocol cannot carry it in the start message), refuses connections beyond its
:class:`~voxwire.aio.handshake.ConnectionCaps` with 503, asks the optional
:class:`~voxwire.aio.admission.Admission` whether the call is taken (503 before the
upgrade when the worker is draining or full), and runs each connection through
:func:`~voxwire.aio.session.run_call` with a new codec. Every refusal is logged and
counted in :data:`~voxwire.aio.session.VIOLATIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
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
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

__all__ = ["WebSocketsTransport", "serve"]

ControlAnswer = Callable[[str, str, "str | None"], "tuple[int, bytes, dict[str, str]] | None"]
"""What answers the control API's requests: (method, path with its query string,
Authorization header) to (status, body, headers), or None for another path."""


def _import_websockets() -> Any:
    try:
        import websockets.asyncio.server as server
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the websockets adapter needs the "websockets" package: '
            'pip install "voxwire[websockets]"'
        ) from exc
    return server


class WebSocketsTransport:
    """A :class:`~voxwire.aio.session.Transport` over a ``websockets`` connection."""

    def __init__(self, connection: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed as WsClosed

        self.connection = connection
        # imported once here: an import statement per message costs more than the
        # receive itself (websockets resolves its submodules through a lazy __getattr__)
        self._ws_closed = WsClosed
        address = connection.remote_address
        #: the client's address, for logs and the audit log
        self.remote = str(address[0]) if address else ""

    async def recv(self) -> str | bytes:
        try:
            return await self.connection.recv()
        except self._ws_closed as exc:
            if exc.sent is not None and exc.sent.code == 1009 and not exc.rcvd_then_sent:
                # the library refused a frame over max_size before reading it whole
                raise ConnectionClosed(1009, exc.sent.reason, local=True) from None
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
            raise ConnectionClosed(code, reason) from None

    async def send(self, message: Outbound) -> None:
        try:
            await self.connection.send(message)
        except self._ws_closed as exc:
            raise ConnectionClosed(None, str(exc)) from None

    async def read_probe(self) -> None:
        """A ping; its pong comes back once the peer has read everything sent before it."""
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            pong = await self.connection.ping()
            await pong
        except WsClosed as exc:
            raise ConnectionClosed(None, str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        # Keep reading (and discarding) while closing: messages the peer sent before it
        # saw our close frame would otherwise fill the receive queue, pause reading, and
        # hold the closing handshake until close_timeout.
        async def drain() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await self.connection.recv()

        task = asyncio.get_running_loop().create_task(drain())
        try:
            await self.connection.close(code, reason[:120])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    """Accept a registered protocol's subprotocol when offered; none otherwise."""
    return select_subprotocol(offered)


def serve(
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
    control: ControlAnswer | None = None,
    **kwargs: Any,
) -> Server:
    """Serve media streams of ``protocol`` (a name from ``voxwire.protocols.CODECS`` or a
    codec factory) on ``host:port``; use as ``async with serve(...) as server``.

    With ``admission``, an upgrade is answered 503 (``Retry-After: 1``) while it refuses
    calls, a call it takes is held until its connection ends, and ``GET /health`` and
    ``GET /ready`` are answered before any upgrade (:func:`~voxwire.aio.admission.
    http_answer`; the media ``path``, when it is one of them, keeps it). ``metrics``
    answers ``GET /metrics`` with its (content type, body); ``control`` answers the
    control API's paths (``control(method, path, authorization)`` gives (status, JSON
    body, headers), or None for a path that is not its own; :class:`~voxwire.aio.
    control.Control`); ``on_end`` receives each
    finished :class:`~voxwire.aio.session.Call`. ``caps`` bounds the open connections
    (default :class:`ConnectionCaps()`: 1000 in total, none per address). Extra keyword
    arguments go to :func:`websockets.asyncio.server.serve` (``reuse_port=True`` for
    workers sharing the port).
    """
    ws = _import_websockets()
    from websockets.protocol import State

    factory = codec_factory(protocol)
    limits = limits or Limits()
    caps = caps if caps is not None else ConnectionCaps()
    watchers: set[asyncio.Task[None]] = set()

    async def release_when_closed(connection: ServerConnection, address: str) -> None:
        try:
            await connection.wait_closed()
        finally:
            caps.release(address)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if admission is not None and url.path != path:
            answer = http_answer(admission, url.path)
            if answer is not None:
                return connection.respond(HTTPStatus(answer[0]), answer[1])
        if control is not None and url.path != path:
            method = getattr(request, "method", "GET")  # websockets < 14 reads GET only
            answered = control(method, request.path, request.headers.get("Authorization"))
            if answered is not None:
                status, body, headers = answered
                response = connection.respond(HTTPStatus(status), "")
                response.body = body
                response.headers["Content-Type"] = "application/json"
                response.headers["Content-Length"] = str(len(body))
                for name, value in headers.items():
                    response.headers[name] = value
                return response
        if metrics is not None and url.path == METRICS_PATH and url.path != path:
            content_type, body = metrics()
            response = connection.respond(HTTPStatus.OK, "")
            response.body = body
            response.headers["Content-Type"] = content_type
            response.headers["Content-Length"] = str(len(body))
            return response
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        if path is not None and url.path != path:
            return connection.respond(HTTPStatus.NOT_FOUND, "no media stream here\n")
        kind = caps.admit(address)
        if kind:
            text = refused(kind, 503, address, caps.refusal(kind))
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, text)
        task = asyncio.get_running_loop().create_task(release_when_closed(connection, address))
        watchers.add(task)
        task.add_done_callback(watchers.discard)
        if auth is not None:
            headers = dict(request.headers.raw_items())
            check = check_upgrade(auth, headers, dict(parse_qsl(url.query)))
            connection.voxwire_check = check  # type: ignore[attr-defined]
            if check.refuse:
                text = refused("unauthorized", 401, address, check.reason)
                return connection.respond(HTTPStatus.UNAUTHORIZED, text)
        return None

    def process_response(
        connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        # Decided here, on the response that would upgrade, so that an upgrade refused
        # for any other reason (a bad handshake, a wrong token) never holds a call.
        if admission is None or response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            return None
        if admission.admit(connection, lambda: connection.state is not State.CLOSED):
            return None
        refused = connection.respond(
            HTTPStatus.SERVICE_UNAVAILABLE, f"{admission.refusal() or 'refused'}\n"
        )
        refused.headers["Retry-After"] = "1"
        return refused

    async def on_connection(connection: ServerConnection) -> None:
        check = getattr(connection, "voxwire_check", None)
        try:
            call = await run_call(
                factory(),
                WebSocketsTransport(connection),
                handler,
                pacer=pacer,
                limits=limits,
                auth=auth,
                authenticated=True if check is None else check.authenticated,
                credential=None if check is None else check.claims,
            )
            if on_end is not None:
                on_end(call)
        finally:
            if admission is not None:
                admission.release(connection)

    kwargs.setdefault("max_size", limits.max_message_bytes)
    kwargs.setdefault("compression", None)
    kwargs.setdefault("close_timeout", 2.0)
    kwargs.setdefault("select_subprotocol", _select_subprotocol)
    server: Server = ws.serve(
        on_connection,
        host,
        port,
        process_request=process_request,
        process_response=process_response,
        **kwargs,
    )
    return server
