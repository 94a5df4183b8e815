"""The hostile-input table, over ws:// and again over wss://.

Each row is one hostile client against one websockets server (tight limits, so the table
runs in seconds): what it sends, the answer it must get (an HTTP status before the
upgrade, or the close code and reason the server closes the call with), the counter that
must move (``VIOLATIONS``, by kind, exactly once), and, after every row, a normal call
on the same server that must still be served. Resident memory must stay bounded: the
client runs in the same process (its TLS buffers of the 10 MB frame included) and the
allocator keeps its high-water mark, so the first pass is held to a generous bound and
three more passes of the heavy rows must not grow it further (a leak of what a row sent
would grow it by megabytes each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.certs import self_signed
from tests.aio.provider import play_call
from voxwire.aio import Call, Limits
from voxwire.aio.handshake import ConnectionCaps
from voxwire.aio.session import VIOLATIONS
from voxwire.aio.tls import client_context, server_context
from voxwire.aio.websockets_server import serve
from voxwire.protocols import Audio, CallStarted
from voxwire.security import CallTokens, TokenAuth
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide

SHARED = "hostile-table-token"
KEYS = {"k1": b"test-key-not-a-secret-0001"}
LIMITS = Limits(
    max_message_bytes=64 * 1024,
    max_messages_per_second=50,
    idle_timeout=0.6,
    auth_timeout=0.5,
    max_read_lag=1.0,
    read_probe_interval=0.25,
)
PER_ADDRESS = 3


@dataclass
class Server:
    url: str
    tls: ssl.SSLContext | None
    calls: list[Call]
    tokens: CallTokens

    def client(self, query: str = "", **kw: Any) -> Any:
        if self.tls is not None:
            kw["ssl"] = self.tls
        return connect(self.url + query, open_timeout=5, **kw)


async def server_calls(calls: list[Call], call: Call) -> None:
    """Echo, and play a long reply when the call starts (the slow peer's row needs
    outbound audio)."""
    calls.append(call)
    async for event in call:
        if isinstance(event, CallStarted) and event.custom_parameters.get("talk") == "long":
            call.play(np.zeros(8000 * 60, dtype=np.int16))
        elif isinstance(event, Audio):
            call.play(event.pcm, event.sample_rate)


@asynccontextmanager
async def hostile_server(cert: tuple[Path, Path] | None) -> AsyncIterator[Server]:
    calls: list[Call] = []
    tokens = CallTokens(KEYS)
    auth = TokenAuth(SHARED, tokens=tokens)
    caps = ConnectionCaps(max_total=50, max_per_address=PER_ADDRESS)
    kw: dict[str, Any] = {"ssl": server_context(*cert)} if cert else {}
    async with serve(
        partial(server_calls, calls),
        "twilio",
        "127.0.0.1",
        0,
        auth=auth,
        limits=LIMITS,
        caps=caps,
        **kw,
    ) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        scheme = "wss" if cert else "ws"
        tls = client_context(cert[0]) if cert else None
        yield Server(f"{scheme}://127.0.0.1:{port}/media", tls, calls, tokens)


async def status_of(server: Server, query: str = "", **kw: Any) -> tuple[int, str]:
    try:
        async with server.client(query, **kw):
            return 101, ""
    except InvalidStatus as exc:
        return exc.response.status_code, bytes(exc.response.body).decode().strip()


async def close_of(ws: ClientConnection, timeout: float = 5.0) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


async def opened(server: Server, peer: TwilioSide, query: str = "") -> Any:
    ws = await server.client(query)
    for message in peer.opening():
        await ws.send(message)
    return ws


def frames(peer: TwilioSide, seconds: float) -> list[str]:
    silence = np.zeros(160, dtype=np.int16)
    return [str(peer.audio(silence)) for _ in range(round(seconds * 50))]


# --- the rows --------------------------------------------------------------------------


async def wrong_token(server: Server) -> tuple[int | None, str]:
    return await status_of(server, "?token=not-the-token")


async def wrong_bearer(server: Server) -> tuple[int | None, str]:
    return await status_of(server, additional_headers={"Authorization": "Bearer nope"})


async def expired_token(server: Server) -> tuple[int | None, str]:
    old = CallTokens(KEYS, clock=lambda: time.time() - 3600).mint("CA1", ttl=60)
    return await status_of(server, "?token=" + old)


async def forged_token(server: Server) -> tuple[int | None, str]:
    token = server.tokens.mint("CA1", ttl=60)
    return await status_of(server, "?token=" + token[:-4] + "AAAA")


async def replayed_token(server: Server) -> tuple[int | None, str]:
    token = server.tokens.mint("CA1", ttl=60)
    async with server.client("?token=" + token):
        pass
    return await status_of(server, "?token=" + token)


async def stalling_unauthenticated(server: Server) -> tuple[int | None, str]:
    async with server.client() as ws:
        connected = TwilioSide(strict=True).opening()[0]

        async def keep_talking() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send(connected)
                    await asyncio.sleep(0.1)

        task = asyncio.get_running_loop().create_task(keep_talking())
        try:
            return await close_of(ws)
        finally:
            task.cancel()


async def wrong_token_in_start(server: Server) -> tuple[int | None, str]:
    async with server.client() as ws:
        for message in TwilioSide(strict=True, parameters={"token": "nope"}).opening():
            await ws.send(message)
        return await close_of(ws)


async def huge_frame(server: Server) -> tuple[int | None, str]:
    peer = TwilioSide(strict=True, parameters={"token": SHARED})
    ws = await opened(server, peer)
    with contextlib.suppress(ConnectionClosed):
        await ws.send("x" * (10 * 1024 * 1024))
    return await close_of(ws)  # the server closed the connection: nothing left to close


async def control_flood(server: Server) -> tuple[int | None, str]:
    ws = await opened(server, TwilioSide(strict=True, parameters={"token": SHARED}))
    with contextlib.suppress(ConnectionClosed):
        for _ in range(200):
            await ws.send(json.dumps({"event": "noise"}))
    closed = await close_of(ws)
    await ws.close()
    return closed


async def audio_flood(server: Server) -> tuple[int | None, str]:
    peer = TwilioSide(strict=True, parameters={"token": SHARED})
    ws = await opened(server, peer)
    with contextlib.suppress(ConnectionClosed):
        for message in frames(peer, 20.0):
            await ws.send(message)
    closed = await close_of(ws)
    await ws.close()
    return closed


async def silent_after_start(server: Server) -> tuple[int | None, str]:
    ws = await opened(server, TwilioSide(strict=True, parameters={"token": SHARED}))
    closed = await close_of(ws)
    await ws.close()
    return closed


async def stops_reading(server: Server) -> tuple[int | None, str]:
    before = len(server.calls)
    peer = TwilioSide(strict=True, parameters={"token": SHARED, "talk": "long"})
    ws = await server.client(max_queue=1)
    for message in peer.opening():
        await ws.send(message)
    silence = np.zeros(160, dtype=np.int16)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while loop.time() - t0 < 5.0:
        call = server.calls[before] if len(server.calls) > before else None
        if call is not None and call.close_code is not None:
            break
        with contextlib.suppress(ConnectionClosed):
            await ws.send(peer.audio(silence))
        await asyncio.sleep(0.02)
    ws.transport.abort()
    call = server.calls[before]
    return call.close_code, call.close_reason


async def crowd_from_one_address(server: Server) -> tuple[int | None, str]:
    async with contextlib.AsyncExitStack() as held:
        for _ in range(PER_ADDRESS):
            await held.enter_async_context(
                server.client("?token=" + SHARED, local_addr=("127.0.0.3", 0))
            )
        return await status_of(server, "?token=" + SHARED, local_addr=("127.0.0.3", 0))


Row = tuple[str, Callable[[Server], Awaitable[tuple[int | None, str]]], tuple[int, str], str]

ROWS: list[Row] = [
    ("wrong ?token=", wrong_token, (401, "wrong token"), "unauthorized"),
    ("wrong Authorization: Bearer", wrong_bearer, (401, "wrong token"), "unauthorized"),
    ("expired signed token", expired_token, (401, "token expired"), "unauthorized"),
    ("forged signature", forged_token, (401, "bad token signature"), "unauthorized"),
    ("replayed signed token", replayed_token, (401, "token already used"), "unauthorized"),
    (
        "no token, 'connected' every 0.1 s",
        stalling_unauthenticated,
        (1008, "not authenticated within 0.5 s (auth_timeout)"),
        "auth_deadline",
    ),
    (
        "wrong token in the start message",
        wrong_token_in_start,
        (1008, "authentication failed: wrong token"),
        "auth",
    ),
    ("10 MB frame", huge_frame, (1009, ""), "too_big"),
    (
        "200 control messages at once",
        control_flood,
        (1008, "more than 50 messages/s without audio"),
        "message_rate",
    ),
    (
        "20 s of audio at once",
        audio_flood,
        (1008, "audio faster than real time: more than 10 s ahead (sustained 1.05 s/s)"),
        "audio_rate",
    ),
    ("silent after the start", silent_after_start, (4000, "idle for 0.6 s"), "idle"),
    (
        "stops reading",
        stops_reading,
        (4001, "peer not reading: no answer to a read probe in 1 s (max_read_lag)"),
        "slow_peer",
    ),
    (
        f"{PER_ADDRESS + 1} connections from one address",
        crowd_from_one_address,
        (503, f"too many connections from this address (max {PER_ADDRESS})"),
        "per_address",
    ),
]


async def normal_call(server: Server) -> int:
    """A legitimate call: the samples of the echo it hears."""
    peer = FakePhone(TwilioSide(strict=True))
    async with server.client("?token=" + SHARED) as ws:

        async def send(message: str | bytes) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

        async def recv() -> str | bytes | None:
            try:
                return await ws.recv()
            except ConnectionClosed:
                return None

        audio = np.full(1600, 3000, dtype=np.int16)
        await play_call(peer, send, recv, audio, tail=0.15)
    return int(np.count_nonzero(peer.heard()))


def rss_kib() -> int:
    """The resident memory once garbage is collected and the allocator has returned its free
    pages: glibc keeps freed heap memory (a 10 MB frame raises its mmap threshold, so the next
    one lands on the heap) until malloc_trim, which would read as growth that is not a leak."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status to read the resident memory from")


@pytest.mark.parametrize("over", ["ws", "wss"])
def test_the_hostile_input_table(over: str, tmp_path: Path) -> None:
    cert = self_signed(tmp_path) if over == "wss" else None
    rss_before = rss_kib()

    heavy = [huge_frame, control_flood, audio_flood, crowd_from_one_address]
    rss_mid = [0]

    async def main() -> list[tuple[str, tuple[int | None, str], dict[str, int], int]]:
        table = []
        async with hostile_server(cert) as server:
            assert await normal_call(server) > 1000
            for name, row, _, _ in ROWS:
                VIOLATIONS.clear()
                got = await asyncio.wait_for(row(server), 15)
                for _ in range(100):  # the server may count just after the client saw it
                    if VIOLATIONS.count():
                        break
                    await asyncio.sleep(0.01)
                counted = VIOLATIONS.as_dict()
                table.append((name, got, counted, await normal_call(server)))
            for row in heavy:  # one pass more, so buffers sized by the first are in place
                await asyncio.wait_for(row(server), 15)
            rss_mid[0] = rss_kib()
            for _ in range(3):
                for row in heavy:
                    await asyncio.wait_for(row(server), 15)
            assert await normal_call(server) > 1000
        return table

    table = asyncio.run(asyncio.wait_for(main(), 120))
    rss_end = rss_kib()
    first_pass, repeats = rss_mid[0] - rss_before, rss_end - rss_mid[0]
    report = "\n".join(
        f"{name:36} | {got[0]} {got[1]!r} | {counted} | normal call heard {heard}"
        for name, got, counted, heard in table
    )
    for (_name, got, counted, heard), (_, _, (code, reason), kind) in zip(table, ROWS, strict=True):
        if code == 1009:
            assert got[0] == code, report  # the reason names the library's refusal
        else:
            assert got == (code, reason), report
        assert counted == {kind: 1}, report
        assert heard > 1000, report
    # a 10 MB frame and floods of every kind: nothing of them is kept
    growth = f"RSS grew {first_pass} KiB over the table and a heavy pass, {repeats} KiB over 3 more"
    assert first_pass < 128 * 1024, growth
    assert repeats < 16 * 1024, growth
