"""An ASGI application serving one media-stream protocol (Starlette, FastAPI, uvicorn...).

No dependency beyond an ASGI server. Mount it where the provider connects::

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from voxwire.aio.asgi import MediaStreamApp

    app = Starlette(routes=[WebSocketRoute("/media", MediaStreamApp(handler, "twilio"))])

or, in FastAPI, ``app.router.add_websocket_route("/media", MediaStreamApp(handler,
"twilio"))`` (not ``app.mount("/media", ...)``: a mount serves only ``/media/`` and below,
and a connection to ``/media`` gets 403). It speaks the
ASGI WebSocket protocol (https://asgi.readthedocs.io/en/latest/specs/www.html). A request
it refuses (a failed token check: 401; more connections than its
:class:`~voxwire.aio.handshake.ConnectionCaps`: 503) is answered before
``websocket.accept`` with that HTTP status where the server offers the
``websocket.http.response`` extension (uvicorn does), else closed before the accept,
which servers answer with HTTP 403. Refusals are logged and counted in
:data:`~voxwire.aio.session.VIOLATIONS`. Other scopes get a 404 (HTTP) or are ignored
(lifespan).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from voxwire.aio.handshake import ConnectionCaps, check_upgrade, refused, select_subprotocol
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import CLOSE_POLICY, Handler, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.registry import codec_factory
from voxwire.security import TokenAuth

__all__ = ["ASGITransport", "MediaStreamApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGITransport:
    """A :class:`~voxwire.aio.session.Transport` over an accepted ASGI WebSocket."""

    def __init__(self, receive: Receive, send: Send, *, remote: str = "") -> None:
        self._receive = receive
        self._send = send
        self.closed = False
        #: the client's address, for logs and the audit log
        self.remote = remote

    async def recv(self) -> str | bytes:
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "websocket.receive":
                if message.get("bytes") is not None:
                    return bytes(message["bytes"])
                if message.get("text") is not None:
                    return str(message["text"])
                continue
            if kind == "websocket.disconnect":
                self.closed = True
                raise ConnectionClosed(message.get("code"), str(message.get("reason") or ""))

    async def send(self, message: Outbound) -> None:
        if self.closed:
            raise ConnectionClosed(None, "closed")
        key = "text" if isinstance(message, str) else "bytes"
        try:
            await self._send({"type": "websocket.send", key: message})
        except OSError as exc:  # the server's way to say the client went away
            self.closed = True
            raise ConnectionClosed(None, str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    """Answer a WebSocket request with an HTTP error instead of accepting it."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": text.encode("utf-8")})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY})


class MediaStreamApp:
    """ASGI app running ``handler`` for each media WebSocket of ``protocol``.

    ``caps`` bounds the open connections (default :class:`ConnectionCaps()`: 1000 in
    total, none per address; the address is the ASGI ``client``).
    """

    def __init__(
        self,
        handler: Handler,
        protocol: str | Callable[[], MediaStreamCodec],
        *,
        auth: TokenAuth | None = None,
        limits: Limits | None = None,
        pacer: Pacer | None = None,
        caps: ConnectionCaps | None = None,
    ) -> None:
        self.handler = handler
        self.factory = codec_factory(protocol)
        self.auth = auth
        self.limits = limits or Limits()
        self.pacer = pacer
        self.caps = caps if caps is not None else ConnectionCaps()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"media streams only\n"})
            return
        if scope["type"] != "websocket":
            return
        first = await receive()
        if first.get("type") != "websocket.connect":
            return
        client = scope.get("client")
        address = str(client[0]) if client else "?"
        kind = self.caps.admit(address)
        if kind:
            await _refuse(scope, send, 503, refused(kind, 503, address, self.caps.refusal(kind)))
            return
        try:
            headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])
            }
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            check = check_upgrade(self.auth, headers, query)
            if check.refuse:
                await _refuse(scope, send, 401, refused("unauthorized", 401, address, check.reason))
                return
            accept: Message = {"type": "websocket.accept"}
            subprotocol = select_subprotocol(scope.get("subprotocols", []))
            if subprotocol is not None:
                accept["subprotocol"] = subprotocol
            await send(accept)
            await run_call(
                self.factory(),
                ASGITransport(receive, send, remote=address),
                self.handler,
                pacer=self.pacer,
                limits=self.limits,
                auth=self.auth,
                authenticated=check.authenticated,
                credential=check.claims,
            )
        finally:
            self.caps.release(address)
