"""A peer that stops reading cannot make a call's outbound queue grow without bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsClosed

from voxwire.aio import CLOSE_SLOW_PEER, Call, Limits
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import VIOLATIONS
from voxwire.aio.websockets_server import serve
from voxwire.protocols import CallStarted
from voxwire.protocols.twilio import TwilioCodec
from voxwire.sim.providers import TwilioSide


class NeverReads:
    """A transport whose peer has stopped reading: every send waits forever."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: str | bytes) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_outbound_queue_is_bounded_and_the_call_closes() -> None:
    async def main() -> Call:
        codec = TwilioCodec()
        for message in TwilioSide(strict=True).opening():
            codec.receive(message, 0.0)
        call = Call(codec, NeverReads(), pacer=Pacer(), limits=Limits(max_pending_out=5))
        frame = np.zeros(160, dtype=np.int16)
        for _ in range(5):
            call._sink(frame)  # what the pacer does every 20 ms
        assert call.close_code is None
        call._sink(frame)
        return call

    call = asyncio.run(main())
    assert call.close_code == CLOSE_SLOW_PEER
    assert "peer not reading: 5 messages pending (max_pending_out=5)" in call.close_reason
    assert len(call.core.outbox) == 5  # the five messages; nothing more


# --- over a socket: the read probe ------------------------------------------------------


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def talk(calls: list[Call], started: asyncio.Event, call: Call) -> None:
    """Plays two minutes of audio as soon as the call starts (far more than the kernel's
    socket buffers hold before the peer's reading matters)."""
    calls.append(call)
    async for event in call:
        if isinstance(event, CallStarted):
            call.play(np.zeros(8000 * 120, dtype=np.int16))
            started.set()


async def caller_sending(ws: ClientConnection, peer: TwilioSide, seconds: float) -> None:
    """Keep sending caller audio (so the call is not idle) without reading anything."""
    frame = np.zeros(160, dtype=np.int16)
    for _ in range(round(seconds * 50)):
        try:
            await ws.send(peer.audio(frame))
        except WsClosed:
            return
        await asyncio.sleep(0.02)


FAST = Limits(max_read_lag=1.0, read_probe_interval=0.25)


def test_a_peer_that_stops_reading_is_closed_4001_by_the_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    VIOLATIONS.clear()
    calls: list[Call] = []
    sid: list[str] = []

    async def main() -> float:
        started = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with serve(partial(talk, calls, started), "twilio", "127.0.0.1", 0, limits=FAST) as s:
            port = next(iter(s.sockets)).getsockname()[1]
            # a receive queue of one message: once it is full the client reads no more
            async with connect(f"ws://127.0.0.1:{port}/", max_queue=1) as ws:
                peer = TwilioSide(strict=True)
                sid.append(peer.sid)
                for message in peer.opening():
                    await ws.send(message)
                await started.wait()
                t0 = loop.time()
                sending = loop.create_task(caller_sending(ws, peer, 8.0))
                while calls[0].close_code is None and loop.time() - t0 < 8.0:
                    await asyncio.sleep(0.05)
                elapsed = loop.time() - t0
                ws.transport.abort()  # it cannot read the close frame: go away
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
                return elapsed

    elapsed = run(main())
    call = calls[0]
    assert call.close_code == CLOSE_SLOW_PEER
    assert call.close_reason == "peer not reading: no answer to a read probe in 1 s (max_read_lag)"
    # one probe interval, then the lag: long before the websockets keepalive's 40 s
    assert elapsed < 1.25 + 1.0 + 1.0
    assert VIOLATIONS.as_dict() == {"slow_peer": 1}
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("for slow_peer: 4001 peer not reading" in m and sid[0] in m for m in logged)


def test_a_peer_that_pauses_reading_shorter_than_the_lag_survives() -> None:
    VIOLATIONS.clear()
    calls: list[Call] = []

    async def main() -> int:
        started = asyncio.Event()
        loop = asyncio.get_running_loop()
        limits = Limits(max_read_lag=1.5, read_probe_interval=0.25)
        async with serve(
            partial(talk, calls, started), "twilio", "127.0.0.1", 0, limits=limits
        ) as s:
            port = next(iter(s.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", max_queue=1) as ws:
                peer = TwilioSide(strict=True)
                for message in peer.opening():
                    await ws.send(message)
                await started.wait()
                sending = loop.create_task(caller_sending(ws, peer, 2.0))
                await asyncio.sleep(0.7)  # not reading: the queue fills, reading pauses
                received = 0
                while not sending.done():  # reading again, to the end of the call
                    await asyncio.wait_for(ws.recv(), 1.0)
                    received += 1
                assert calls[0].close_code is None
                assert VIOLATIONS.count() == 0
                return received

    received = run(main())
    assert received > 50  # what was held, then the real-time stream
