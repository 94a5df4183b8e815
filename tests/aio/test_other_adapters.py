"""ASGI (uvicorn + Starlette), aiohttp and AudioSocket TCP adapters over loopback sockets,
and the process pacer in real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import voxwire
from tests.aio.provider import EchoLog, echo_handler, kinds, play_call
from tests.aio.servers import uvicorn_server
from voxwire.aio import Call, Pacer
from voxwire.aio.aiohttp_adapter import media_stream_handler
from voxwire.aio.asgi import MediaStreamApp
from voxwire.aio.tcp import serve_audiosocket
from voxwire.pacing import PacedStream
from voxwire.protocols import CallStarted, MarkPlayed
from voxwire.protocols.audiosocket import AudioSocketCodec
from voxwire.security import TokenAuth
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import AudioSocketSide, TelnyxSide, TwilioSide, VonageSide


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def speech(seconds: float, rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2500, int(seconds * rate)).clip(-32768, 32767).astype(np.int16)


def ulaw_line(pcm: np.ndarray) -> np.ndarray:
    return np.frombuffer(voxwire.decode_ulaw(voxwire.encode_ulaw(pcm.tobytes())), np.int16)


def pair(ws: Any) -> tuple[Callable[[Any], Awaitable[None]], Callable[[], Awaitable[Any]]]:
    async def send(message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)

    async def recv() -> str | bytes | None:
        try:
            return await ws.recv()
        except ConnectionClosed:
            return None

    return send, recv


# --- ASGI under uvicorn, mounted in Starlette ------------------------------------------


def test_asgi_app_in_starlette_under_uvicorn() -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    log = EchoLog()
    media = MediaStreamApp(echo_handler(log), "telnyx", auth=TokenAuth("s3cret"))
    app = Starlette(routes=[WebSocketRoute("/media", media)])

    async def main() -> None:
        peer = FakePhone(TelnyxSide(strict=True))
        audio = speech(0.4)
        async with uvicorn_server(app) as url:
            async with connect(url + "/media?token=s3cret") as ws:
                send, recv = pair(ws)
                await play_call(peer, send, recv, audio, tail=0.3)
            np.testing.assert_array_equal(peer.heard(), ulaw_line(audio))
            assert [e for e in log.events if isinstance(e, MarkPlayed)] == [
                MarkPlayed("m10"),
                MarkPlayed("m20"),
            ]
            # a wrong token (and no custom parameter) never reaches the handler: uvicorn
            # offers the websocket.http.response extension, so the answer is a 401
            media.auth = TokenAuth("s3cret", custom_parameter=None)
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/media?token=bad"):
                    pass
            assert info.value.response.status_code == 401
            assert info.value.response.body == b"wrong token\n"

    run(main())


# --- aiohttp ------------------------------------------------------------------------------


@asynccontextmanager
async def aiohttp_server(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_aiohttp_handler_echo_and_auth() -> None:
    log = EchoLog()
    app = web.Application()
    app.router.add_get(
        "/media",
        media_stream_handler(
            echo_handler(log), "vonage", auth=TokenAuth("s3cret", custom_parameter=None)
        ),
    )

    async def main() -> None:
        peer = FakePhone(VonageSide(strict=True))
        audio = speech(0.4, 16000)
        async with aiohttp_server(app) as url:
            headers = {"Authorization": "Bearer s3cret"}
            async with connect(url + "/media", additional_headers=headers) as ws:
                send, recv = pair(ws)
                await play_call(peer, send, recv, audio, tail=0.3)
            np.testing.assert_array_equal(peer.heard(), audio)
            assert kinds(log.events)[:2] == ["Connected", "CallStarted"]
            assert MarkPlayed("m20") in log.events
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/media"):
                    pass
            assert info.value.response.status_code == 401

    run(main())


# --- AudioSocket over TCP -------------------------------------------------------------------


def test_audiosocket_tcp_echo_and_hangup() -> None:
    log = EchoLog()

    async def main() -> None:
        server = await serve_audiosocket(echo_handler(log), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        peer = FakePhone(AudioSocketSide(strict=True))
        audio = speech(0.4)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def send(message: str | bytes) -> None:
                assert isinstance(message, bytes)
                writer.write(message)
                await writer.drain()

            async def recv() -> bytes | None:
                data = await reader.read(1000)  # arbitrary chunking of the byte stream
                return data or None

            report = await play_call(peer, send, recv, audio, tail=0.3)
            writer.close()
            await writer.wait_closed()
        np.testing.assert_array_equal(peer.heard(), audio)
        # local marks: no echo on the wire, the pacer times them
        assert [e for e in log.events if isinstance(e, MarkPlayed)] == [
            MarkPlayed("m10"),
            MarkPlayed("m20"),
        ]
        assert kinds(log.events)[-1] == "Stopped"
        # the server answered the hangup with its own hangup message and closed
        assert report.closed
        assert peer.side.hung_up

    run(main())


@pytest.mark.parametrize("default", [False, True], ids=["factory", "default-codec"])
def test_audiosocket_takes_a_codec_factory_and_plays_any_rate_by_default(default: bool) -> None:
    made: list[AudioSocketCodec] = []

    def factory() -> AudioSocketCodec:
        made.append(AudioSocketCodec(resampler=voxwire.Resampler))
        return made[-1]

    async def answer_at_16k(call: Call) -> None:
        async for event in call:
            if isinstance(event, CallStarted):
                # 16 kHz on an 8 kHz line: the codec's resampler makes this playable
                call.play(speech(0.2, rate=16000), 16000)
                call.flush()

    async def main() -> None:
        options = {} if default else {"codec_factory": factory}
        server = await serve_audiosocket(answer_at_16k, "127.0.0.1", 0, **options)
        port = server.sockets[0].getsockname()[1]
        peer = FakePhone(AudioSocketSide(strict=True))
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def send(message: str | bytes) -> None:
                assert isinstance(message, bytes)
                writer.write(message)
                await writer.drain()

            async def recv() -> bytes | None:
                data = await reader.read(1000)
                return data or None

            await play_call(peer, send, recv, speech(0.4), tail=0.3)
            writer.close()
            await writer.wait_closed()
        assert len(made) == (0 if default else 1)
        if not default:
            assert made[0].stats.audio_samples_out == 1600  # 0.2 s at the 8 kHz line rate
        assert len(peer.heard()) == 1600

    run(main())


# --- the process pacer in real time -------------------------------------------------------


def test_pacer_real_time_smoke() -> None:
    """Loose bounds on a real clock; exact pacing is tested on the virtual clock."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(lead=0.06)
        streams = [PacedStream(8000, name=str(i)) for i in range(20)]
        sent: dict[int, list[float]] = {i: [] for i in range(20)}
        t0 = loop.time()
        for i, stream in enumerate(streams):
            pacer.open(stream, lambda item, i=i: sent[i].append(loop.time() - t0))
            stream.push(np.zeros(160 * 100, np.int16))
        await asyncio.sleep(0.6)
        for stream in streams:
            pacer.close(stream)
        await asyncio.sleep(0.05)
        assert pacer._task is not None
        assert pacer._task.done()  # no stream, no task
        for times in sent.values():
            # 0.6 s of real time plus the 60 ms lead is 33 frames; allow generous slack
            assert 25 <= len(times) <= 36
            gaps = np.diff(times[3:])
            assert np.median(gaps) == pytest.approx(0.02, abs=0.005)

    run(main())


def test_handler_sees_marks_and_can_clear_before_start_guarded() -> None:
    async def handler(call: Call) -> None:
        with pytest.raises(RuntimeError, match="not started"):
            call.play(np.zeros(160, np.int16))
        async for _ in call:
            pass

    async def main() -> None:
        from voxwire.aio.websockets_server import serve

        async with serve(handler, "twilio", "127.0.0.1", 0) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                send, recv = pair(ws)
                await play_call(
                    FakePhone(TwilioSide(strict=True)), send, recv, speech(0.1), tail=0.1
                )

    run(main())
