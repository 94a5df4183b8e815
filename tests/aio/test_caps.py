"""Connection caps: the total and the per-address cap refuse the excess with 503 before
the upgrade, count it, and free a slot when a connection closes (websockets server and
the ASGI app under uvicorn, over loopback sockets; 127.0.0.x are distinct addresses)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.provider import EchoLog, echo_handler, play_call
from tests.aio.servers import uvicorn_server
from voxwire.aio.asgi import MediaStreamApp
from voxwire.aio.handshake import ConnectionCaps
from voxwire.aio.session import VIOLATIONS
from voxwire.aio.websockets_server import serve
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@asynccontextmanager
async def websockets_server(caps: ConnectionCaps, log: EchoLog) -> AsyncIterator[str]:
    async with serve(echo_handler(log), "twilio", "127.0.0.1", 0, caps=caps) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


@asynccontextmanager
async def asgi_server(caps: ConnectionCaps, log: EchoLog) -> AsyncIterator[str]:
    async with uvicorn_server(MediaStreamApp(echo_handler(log), "twilio", caps=caps)) as url:
        yield url


SERVERS = {"websockets": websockets_server, "asgi": asgi_server}


def client(url: str, address: str) -> Any:
    return connect(url + "/media", local_addr=(address, 0), open_timeout=5)


async def refused(url: str, address: str) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with client(url, address):
            pass
    return info.value.response.status_code, info.value.response.body


async def one_call(ws: ClientConnection) -> FakePhone[TwilioSide]:
    peer = FakePhone(TwilioSide(strict=True))

    async def send(message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)

    async def recv() -> str | bytes | None:
        try:
            return await ws.recv()
        except ConnectionClosed:
            return None

    audio = np.full(1600, 3000, dtype=np.int16)
    await play_call(peer, send, recv, audio, tail=0.2)
    return peer


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_caps_refuse_with_503_and_free_slots_on_close(kind: str) -> None:
    VIOLATIONS.clear()
    caps = ConnectionCaps(max_total=3, max_per_address=2)
    log = EchoLog()
    server: Callable[[ConnectionCaps, EchoLog], Any] = SERVERS[kind]

    async def main() -> None:
        async with server(caps, log) as url, AsyncExitStack() as held:
            first = await held.enter_async_context(client(url, "127.0.0.1"))
            await held.enter_async_context(client(url, "127.0.0.1"))
            assert await refused(url, "127.0.0.1") == (
                503,
                b"too many connections from this address (max 2)\n",
            )
            await held.enter_async_context(client(url, "127.0.0.2"))
            assert caps.open == 3
            assert await refused(url, "127.0.0.3") == (503, b"too many connections (max 3)\n")
            assert VIOLATIONS.as_dict() == {"per_address": 1, "connections": 1}
            # a closed connection frees its slot: a new one from that address is served
            await first.close()
            for _ in range(100):
                if caps.open == 2:
                    break
                await asyncio.sleep(0.02)
            assert caps.open == 2
            async with client(url, "127.0.0.1") as ws:
                peer = await one_call(ws)
            assert len(peer.heard()) > 0
        assert caps.open == 0

    run(main())


def test_caps_validate_their_values() -> None:
    with pytest.raises(ValueError, match="max_total must be >= 1 or None, got 0"):
        ConnectionCaps(max_total=0)
    with pytest.raises(ValueError, match="no admitted connection"):
        ConnectionCaps().release("127.0.0.1")


def test_limits_validate_their_values() -> None:
    from voxwire.aio import Limits

    with pytest.raises(ValueError, match=r"Limits\.max_read_lag must be positive, got 0"):
        Limits(max_read_lag=0)
    with pytest.raises(ValueError, match=r"Limits\.handler_grace must be >= 0, got -1"):
        Limits(handler_grace=-1)
