"""Authentication before the upgrade, over real sockets: a wrong, expired or replayed
token gets 401 from every WebSocket adapter; a connection that may still show its token
in the start message has ``Limits.auth_timeout`` to do so; signed per-call tokens work
in the query, the headers and the start message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.provider import EchoLog, echo_handler, kinds, play_call
from tests.aio.servers import uvicorn_server
from voxwire.aio import Call, Limits
from voxwire.aio.aiohttp_adapter import media_stream_handler
from voxwire.aio.asgi import MediaStreamApp
from voxwire.aio.session import CLOSE_POLICY, VIOLATIONS
from voxwire.aio.websockets_server import serve
from voxwire.security import CallTokens, TokenAuth
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide

KEY = b"test-key-not-a-secret-0001"


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


Server = Callable[[Callable[[Call], Awaitable[None]], TokenAuth, Limits], Any]


@asynccontextmanager
async def websockets_server(
    handler: Callable[[Call], Awaitable[None]], auth: TokenAuth, limits: Limits
) -> AsyncIterator[str]:
    async with serve(handler, "twilio", "127.0.0.1", 0, auth=auth, limits=limits) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/media"


@asynccontextmanager
async def asgi_server(
    handler: Callable[[Call], Awaitable[None]], auth: TokenAuth, limits: Limits
) -> AsyncIterator[str]:
    async with uvicorn_server(MediaStreamApp(handler, "twilio", auth=auth, limits=limits)) as url:
        yield url + "/media"


@asynccontextmanager
async def aiohttp_server(
    handler: Callable[[Call], Awaitable[None]], auth: TokenAuth, limits: Limits
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/media", media_stream_handler(handler, "twilio", auth=auth, limits=limits))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/media"
    finally:
        await runner.cleanup()


SERVERS: dict[str, Server] = {
    "websockets": websockets_server,
    "asgi": asgi_server,
    "aiohttp": aiohttp_server,
}


async def status(url: str, **kw: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **kw):
            pass
    return info.value.response.status_code, bytes(info.value.response.body)


def twilio(**parameters: str) -> FakePhone[TwilioSide]:
    """A strict Twilio phone whose start message carries ``parameters``."""
    return FakePhone(TwilioSide(strict=True, parameters=parameters))


async def echo_call(
    ws: ClientConnection, peer: FakePhone[TwilioSide] | None = None
) -> FakePhone[TwilioSide]:
    peer = peer or twilio()

    async def send(message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)

    async def recv() -> str | bytes | None:
        try:
            return await ws.recv()
        except ConnectionClosed:
            return None

    await play_call(peer, send, recv, np.full(1600, 3000, dtype=np.int16), tail=0.2)
    return peer


async def close_of(ws: ClientConnection) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_bad_credentials_get_401_before_the_upgrade(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Even with a start-message token allowed (the default), a token shown on the
    request must be valid."""
    VIOLATIONS.clear()
    clock = [1_800_000_000.0]
    tokens = CallTokens({"k1": KEY}, clock=lambda: clock[0], max_skew=5)
    auth = TokenAuth("s3cret", tokens=tokens)
    log = EchoLog()

    async def main() -> None:
        async with SERVERS[kind](echo_handler(log), auth, Limits()) as url:
            assert await status(url + "?token=nope") == (401, b"wrong token\n")
            bearer = {"Authorization": "Bearer nope"}
            assert await status(url, additional_headers=bearer) == (401, b"wrong token\n")
            signed = tokens.mint("CA42", ttl=60)
            async with connect(url + "?token=" + signed) as ws:
                peer = await echo_call(ws)
            assert len(peer.heard()) > 0
            assert await status(url + "?token=" + signed) == (401, b"token already used\n")
            stale = tokens.mint("CA43", ttl=60)
            clock[0] += 66
            assert await status(url + "?token=" + stale) == (401, b"token expired\n")
            header = {"X-Voxwire-Token": tokens.mint("CA44", ttl=60)}
            async with connect(url, additional_headers=header) as ws:
                await echo_call(ws)
            async with connect(url + "?token=s3cret") as ws:
                await echo_call(ws)

    run(main())
    assert VIOLATIONS.as_dict() == {"unauthorized": 4}
    assert kinds(log.events).count("CallStarted") == 3
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("401 token already used" in m for m in messages) == 1
    assert not any("vx1." in m for m in messages)  # reasons, never the tokens


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_without_a_token_on_the_request_the_start_message_has_a_deadline(kind: str) -> None:
    """The old hole: sending 'connected' every few seconds held an unauthenticated
    connection open forever."""
    VIOLATIONS.clear()
    auth = TokenAuth("s3cret")
    log = EchoLog()
    limits = Limits(auth_timeout=0.6)

    async def main() -> tuple[tuple[int | None, str], float]:
        loop = asyncio.get_running_loop()
        async with SERVERS[kind](echo_handler(log), auth, limits) as url:
            async with connect(url) as ws:
                t0 = loop.time()
                connected = twilio().opening()[0]

                async def keep_talking() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        while True:
                            await ws.send(connected)
                            await asyncio.sleep(0.1)

                talking = loop.create_task(keep_talking())
                closed = await close_of(ws)
                elapsed = loop.time() - t0
                talking.cancel()
            # the token in the start message, in time: the call goes on
            async with connect(url) as ws:
                await echo_call(ws, twilio(token="s3cret"))
            return closed, elapsed

    closed, elapsed = run(main())
    assert closed == (CLOSE_POLICY, "not authenticated within 0.6 s (auth_timeout)")
    assert 0.5 < elapsed < 2.0
    assert VIOLATIONS.as_dict() == {"auth_deadline": 1}
    assert kinds(log.events).count("CallStarted") == 1


def test_a_signed_token_in_the_start_message_is_accepted_once() -> None:
    VIOLATIONS.clear()
    tokens = CallTokens({"k1": KEY})
    auth = TokenAuth(tokens=tokens)
    log = EchoLog()

    async def main() -> tuple[int | None, str]:
        async with websockets_server(echo_handler(log), auth, Limits()) as url:
            signed = tokens.mint("CA362b", ttl=60)
            async with connect(url) as ws:
                await echo_call(ws, twilio(token=signed))
            async with connect(url) as ws:
                for message in twilio(token=signed).opening():
                    await ws.send(message)
                return await close_of(ws)

    assert run(main()) == (CLOSE_POLICY, "authentication failed: token already used")
    assert VIOLATIONS.as_dict() == {"auth": 1}
    assert kinds(log.events).count("CallStarted") == 1


def test_the_simulated_phone_reports_the_close_code_and_reason() -> None:
    """What ``voxwire call`` prints: a Twilio call whose start message lacks the token."""
    from voxwire.sim import CallPlan, place_call

    auth = TokenAuth("s3cret")
    plan = CallPlan(np.full(8000, 2000, dtype=np.int16))

    async def main() -> Any:
        async with websockets_server(echo_handler(EchoLog()), auth, Limits()) as url:
            return await place_call(url, "twilio", plan)

    report = run(main())
    assert report.closed_by_server
    assert (report.close_code, report.close_reason) == (
        CLOSE_POLICY,
        "authentication failed: missing token",
    )
    assert "closed by the server: 1008 authentication failed: missing token" in report.summary()
    assert report.as_dict()["close_code"] == CLOSE_POLICY
