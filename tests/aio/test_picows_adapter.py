"""What only the picows adapter does: its HTTP answers before the upgrade, fragmented
messages, the bounded queue between picows' callbacks and the call, and the options it
refuses. (Calls, limits and tokens run on it in tests/aio/test_websockets_adapter.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

picows = pytest.importorskip("picows", reason="the picows adapter needs voxwire[picows]")

from websockets.asyncio.client import connect  # noqa: E402

from tests.aio.provider import EchoLog, echo_handler  # noqa: E402
from voxwire.aio.admission import Admission  # noqa: E402
from voxwire.aio.handshake import ConnectionCaps  # noqa: E402
from voxwire.aio.picows_server import QUEUE_PAUSE, QUEUE_RESUME, PicowsTransport, serve  # noqa: E402
from voxwire.errors import ConnectionClosed  # noqa: E402
from voxwire.protocols import Audio  # noqa: E402
from voxwire.sim.phone import FakePhone  # noqa: E402
from voxwire.sim.providers import TwilioSide  # noqa: E402


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_health_ready_metrics_and_other_paths_are_answered_before_any_upgrade() -> None:
    async def main() -> None:
        admission = Admission(max_calls=1)
        server = await serve(
            echo_handler(EchoLog()),
            "twilio",
            "127.0.0.1",
            0,
            path="/media",
            admission=admission,
            metrics=lambda: ("text/plain; version=0.0.4", b"voxwire_calls_active 0\n"),
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            assert await http_get(port, "/health") == (200, "ok\n")
            assert await http_get(port, "/ready") == (200, "ready\n")
            assert await http_get(port, "/metrics") == (200, "voxwire_calls_active 0\n")
            assert (await http_get(port, "/other"))[0] == 404
            assert (await http_get(port, "/media"))[0] == 426  # a GET that is no upgrade
            admission.start_drain()
            assert await http_get(port, "/ready") == (503, "draining\n")

    run(main())


def test_a_draining_server_refuses_the_upgrade_with_503() -> None:
    async def main() -> None:
        admission = Admission()
        admission.start_drain()
        server = await serve(echo_handler(EchoLog()), "twilio", "127.0.0.1", 0, admission=admission)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(Exception, match="503"):
                async with connect(f"ws://127.0.0.1:{port}"):
                    pass
            assert admission.active == 0

    run(main())


def test_a_fragmented_message_reaches_the_call_whole() -> None:
    log = EchoLog()

    async def main() -> None:
        server = await serve(echo_handler(log), "twilio", "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            peer = FakePhone(TwilioSide(strict=True))
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                for message in peer.opening():
                    await ws.send(message)
                media = peer.say(np.zeros(peer.frame, np.int16))
                assert isinstance(media, str)
                third = len(media) // 3
                await ws.send(iter([media[:third], media[third : 2 * third], media[2 * third :]]))
                for message in peer.hang_up():
                    await ws.send(message)
                for _ in range(100):
                    if any(isinstance(e, Audio) for e in log.events):
                        break
                    await asyncio.sleep(0.02)
        assert sum(isinstance(e, Audio) for e in log.events) == 1

    run(main())


def test_a_read_probe_returns_once_the_peer_answers_the_ping() -> None:
    async def main() -> None:
        probed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler(call: Any) -> None:
            await asyncio.wait_for(call.transport.read_probe(), 3)
            probed.set_result(call.transport.remote)
            async for _ in call:
                pass

        server = await serve(handler, "twilio", "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                for message in FakePhone(TwilioSide(strict=True)).opening():
                    await ws.send(message)
                assert await asyncio.wait_for(probed, 5) == "127.0.0.1"

    run(main())


def test_the_options_it_cannot_serve_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="control API"):
            await serve(echo_handler(EchoLog()), "twilio", "127.0.0.1", 0, control=object())
        caps = ConnectionCaps(max_per_address=2)
        with pytest.raises(ValueError, match="per address"):
            await serve(echo_handler(EchoLog()), "twilio", "127.0.0.1", 0, caps=caps)

    run(main())


# -- the transport alone, with stand-ins for picows' objects ------------------------------


@dataclass
class _Socket:
    paused: list[bool] = field(default_factory=list)

    def pause_reading(self) -> None:
        self.paused.append(True)

    def resume_reading(self) -> None:
        self.paused.append(False)


@dataclass
class _Ws:
    underlying_transport: _Socket = field(default_factory=_Socket)
    sent: list[tuple[Any, Any]] = field(default_factory=list)
    closes: list[tuple[Any, Any]] = field(default_factory=list)
    is_disconnected: bool = False
    is_close_frame_sent: bool = False
    close_handshake: Any = None

    def send(self, kind: Any, message: Any) -> None:
        self.sent.append((kind, message))

    def send_close(self, code: Any, message: Any = None) -> None:
        self.closes.append((code, message))
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        self.is_disconnected = True


@dataclass
class _Frame:
    msg_type: Any
    payload: bytes
    fin: bool = True

    def get_payload_as_bytes(self) -> bytes:
        return self.payload

    def get_payload_as_utf8_text(self) -> str:
        return self.payload.decode()

    def get_close_code(self) -> Any:
        return picows.WSCloseCode(int.from_bytes(self.payload[:2], "big"))

    def get_close_message(self) -> bytes:
        return self.payload[2:]


def _connected(max_message: int = 1 << 16) -> tuple[PicowsTransport, _Ws]:
    started: list[PicowsTransport] = []
    transport = PicowsTransport("", max_message, started.append)
    ws = _Ws()
    transport.on_ws_connected(ws)  # type: ignore[arg-type]
    assert started == [transport]
    return transport, ws


def test_a_call_that_falls_behind_stops_the_socket_being_read_then_resumes() -> None:
    async def main() -> None:
        transport, ws = _connected()
        text = picows.WSMsgType.TEXT
        for i in range(QUEUE_PAUSE + 10):
            transport.on_ws_frame(ws, _Frame(text, str(i).encode()))  # type: ignore[arg-type]
        assert ws.underlying_transport.paused == [True]  # paused once, at QUEUE_PAUSE
        got = [await transport.recv() for _ in range(QUEUE_PAUSE + 10 - QUEUE_RESUME)]
        assert got == [str(i) for i in range(len(got))]  # in order, none lost
        assert ws.underlying_transport.paused == [True, False]

    run(main())


def test_fragments_over_the_size_limit_close_1009_and_recv_reports_it() -> None:
    async def main() -> None:
        transport, ws = _connected(max_message=100)
        frame = _Frame(picows.WSMsgType.BINARY, bytes(60), fin=False)
        transport.on_ws_frame(ws, frame)  # type: ignore[arg-type]
        more = _Frame(picows.WSMsgType.CONTINUATION, bytes(60), fin=False)
        transport.on_ws_frame(ws, more)  # type: ignore[arg-type]
        assert ws.closes[0][0] is picows.WSCloseCode.MESSAGE_TOO_BIG
        with pytest.raises(ConnectionClosed) as info:
            await transport.recv()
        assert info.value.code == 1009

    run(main())


def test_the_peers_close_frame_is_answered_and_ends_recv_with_its_code() -> None:
    async def main() -> None:
        transport, ws = _connected()
        text = picows.WSMsgType.TEXT
        transport.on_ws_frame(ws, _Frame(text, b"last"))  # type: ignore[arg-type]
        close = _Frame(picows.WSMsgType.CLOSE, (1000).to_bytes(2, "big") + b"bye")
        transport.on_ws_frame(ws, close)  # type: ignore[arg-type]
        assert ws.closes
        assert ws.is_disconnected
        assert await transport.recv() == "last"  # what came before the close is kept
        with pytest.raises(ConnectionClosed) as info:
            await transport.recv()
        assert (info.value.code, info.value.reason) == (1000, "bye")
        with pytest.raises(ConnectionClosed):
            await transport.send("late")

    run(main())


class _Feed:
    """Stands in for a Call: records what the transport pushes into it."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.fed: list[str | bytes] = []
        self.ended: list[ConnectionClosed | None] = []
        self.stop_after = stop_after

    def feed(self, message: str | bytes) -> bool:
        self.fed.append(message)
        return self.stop_after is None or len(self.fed) < self.stop_after

    def feed_end(self, closed: ConnectionClosed | None) -> None:
        self.ended.append(closed)


def test_an_attached_call_is_fed_each_message_in_the_callback_after_the_queued_ones() -> None:
    async def main() -> None:
        transport, ws = _connected()
        text = picows.WSMsgType.TEXT
        for i in range(QUEUE_PAUSE + 3):  # queued before the call is attached: paused
            transport.on_ws_frame(ws, _Frame(text, str(i).encode()))  # type: ignore[arg-type]
        assert ws.underlying_transport.paused == [True]
        call = _Feed()
        transport.attach(call)  # type: ignore[arg-type]
        assert call.fed == [str(i) for i in range(QUEUE_PAUSE + 3)]  # in order, none lost
        assert ws.underlying_transport.paused == [True, False]  # reading again
        transport.on_ws_frame(ws, _Frame(text, b"now"))  # type: ignore[arg-type]
        assert call.fed[-1] == "now"  # straight from the callback, not queued
        assert not transport._queue
        transport.on_ws_frame(ws, _Frame(picows.WSMsgType.CLOSE, (1000).to_bytes(2, "big")))  # type: ignore[arg-type]
        assert len(call.ended) == 1
        assert call.ended[0] is not None
        assert call.ended[0].code == 1000

    run(main())


def test_an_end_before_the_attach_reaches_the_call_and_a_full_call_takes_no_more() -> None:
    async def main() -> None:
        transport, ws = _connected()
        text = picows.WSMsgType.TEXT
        for i in range(5):
            transport.on_ws_frame(ws, _Frame(text, str(i).encode()))  # type: ignore[arg-type]
        transport.on_ws_frame(ws, _Frame(picows.WSMsgType.CLOSE, (1001).to_bytes(2, "big")))  # type: ignore[arg-type]
        call = _Feed(stop_after=2)  # the call decides to close on the second message
        transport.attach(call)  # type: ignore[arg-type]
        assert call.fed == ["0", "1"]
        assert not transport._queue  # the rest dropped: the call's input has ended
        assert [c.code for c in call.ended if c is not None] == [1001]

    run(main())
