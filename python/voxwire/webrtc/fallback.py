"""The talk page's fallback: voxwire's raw-PCM WebSocket dialect on the WebRTC server.

A browser without ``RTCPeerConnection`` (or a page opened with ``?ws=1``) calls the same
handler over :mod:`voxwire.protocols.rawpcm` on ``GET /ws`` of the same aiohttp server
(``wss://`` when the server has TLS): 16-bit PCM both ways, marks echoed once played, a
clear answered with ``cleared``. The call runs through :func:`voxwire.aio.session.run_call`
like every media-stream call, with the server's token auth checked on the upgrade
request (``?token=``: a browser's ``WebSocket`` cannot send a header).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from voxwire.errors import ConnectionClosed
from voxwire.protocols.base import Outbound

__all__ = ["AiohttpTransport"]


class AiohttpTransport:
    """A :class:`~voxwire.aio.session.Transport` over an aiohttp ``WebSocketResponse``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def recv(self) -> str | bytes:
        from aiohttp import WSMsgType

        msg = await self.ws.receive()
        if msg.type is WSMsgType.TEXT:
            return str(msg.data)
        if msg.type is WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type is WSMsgType.ERROR:
            # aiohttp closes with 1009 itself when a frame is over max_msg_size
            code = 1009 if self.ws.close_code == 1009 else None
            raise ConnectionClosed(code, str(msg.data), local=code is not None)
        code = self.ws.close_code if msg.type is not WSMsgType.CLOSE else msg.data
        raise ConnectionClosed(code, str(msg.extra or ""))

    async def send(self, message: Outbound) -> None:
        if self.ws.closed:
            raise ConnectionClosed(self.ws.close_code, "closed")
        try:
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(None, str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await self.ws.close(code=code, message=reason[:120].encode())
