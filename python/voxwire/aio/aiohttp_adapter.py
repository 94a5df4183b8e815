"""An aiohttp request handler serving one media-stream protocol.

``pip install "voxwire[aiohttp]"``, then::

    from aiohttp import web
    from voxwire.aio.aiohttp_adapter import media_stream_handler

    app = web.Application()
    app.router.add_get("/media", media_stream_handler(handler, "twilio"))
    web.run_app(app, port=8080)

A failed token check answers HTTP 401 before the upgrade (a wrong token always; a
missing one unless the protocol can still carry it in its start message). The refusal
is logged and counted in :data:`~voxwire.aio.session.VIOLATIONS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from voxwire.aio.handshake import check_upgrade, refused, select_subprotocol
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Handler, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.registry import codec_factory
from voxwire.security import TokenAuth

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["AiohttpTransport", "media_stream_handler"]


def _import_aiohttp() -> Any:
    try:
        from aiohttp import web
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the aiohttp adapter needs the "aiohttp" package: pip install "voxwire[aiohttp]"'
        ) from exc
    return web


class AiohttpTransport:
    """A :class:`~voxwire.aio.session.Transport` over an aiohttp ``WebSocketResponse``."""

    def __init__(self, ws: web.WebSocketResponse, *, remote: str = "") -> None:
        self.ws = ws
        #: the client's address, for logs and the audit log
        self.remote = remote

    async def recv(self) -> str | bytes:
        from aiohttp import WSMsgType

        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.TEXT:
                return str(msg.data)
            if msg.type == WSMsgType.BINARY:
                return bytes(msg.data)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                raise ConnectionClosed(self.ws.close_code, "")
            if msg.type == WSMsgType.ERROR:
                raise ConnectionClosed(self.ws.close_code, str(msg.data))

    async def send(self, message: Outbound) -> None:
        if self.ws.closed:
            raise ConnectionClosed(self.ws.close_code, "closed")
        try:
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(self.ws.close_code, str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason[:120].encode("utf-8"))


def media_stream_handler(
    handler: Handler,
    protocol: str | Callable[[], MediaStreamCodec],
    *,
    auth: TokenAuth | None = None,
    limits: Limits | None = None,
    pacer: Pacer | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler that upgrades to a media WebSocket and runs ``handler``."""
    web_mod = _import_aiohttp()
    factory = codec_factory(protocol)
    lim = limits or Limits()

    async def view(request: web.Request) -> web.StreamResponse:
        check = check_upgrade(auth, dict(request.headers), dict(request.query))
        if check.refuse:
            text = refused("unauthorized", 401, request.remote or "?", check.reason)
            response: web.StreamResponse = web_mod.Response(status=401, text=text)
            return response
        offered = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
        subprotocol = select_subprotocol(p.strip() for p in offered.split(","))
        ws: web.WebSocketResponse = web_mod.WebSocketResponse(
            protocols=() if subprotocol is None else (subprotocol,),
            max_msg_size=lim.max_message_bytes,
            compress=False,
            autoping=True,
        )
        await ws.prepare(request)
        await run_call(
            factory(),
            AiohttpTransport(ws, remote=request.remote or ""),
            handler,
            pacer=pacer,
            limits=lim,
            auth=auth,
            authenticated=check.authenticated,
            credential=check.claims,
        )
        return ws

    return view
