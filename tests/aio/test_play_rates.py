"""A handler playing audio at a rate other than the line rate (24 kHz, as TTS services
send) works with serve() and MediaStreamApp given just a protocol name; and the FastAPI
example in docs/examples runs as written, on /media."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.provider import play_call
from tests.aio.servers import uvicorn_server
from voxwire.aio import Call
from voxwire.aio.asgi import MediaStreamApp
from voxwire.aio.websockets_server import serve
from voxwire.protocols import CallStarted
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "fastapi_app.py"


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def tone(seconds: float, rate: int, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def plays_24k(call: Call) -> None:
    async for event in call:
        if isinstance(event, CallStarted):
            call.play(tone(0.5, 24000, 1000.0), 24000)
            call.flush()


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


async def listen(url: str) -> FakePhone[TwilioSide]:
    peer = FakePhone(TwilioSide(strict=True))
    async with connect(url) as ws:

        async def send(message: str | bytes) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

        async def recv() -> str | bytes | None:
            try:
                return await ws.recv()
            except ConnectionClosed:
                return None

        await play_call(peer, send, recv, np.zeros(8000, dtype=np.int16), tail=0.3)
    return peer


@asynccontextmanager
async def websockets_url() -> AsyncIterator[str]:
    async with serve(plays_24k, "twilio", "127.0.0.1", 0) as srv:
        yield f"ws://127.0.0.1:{next(iter(srv.sockets)).getsockname()[1]}/media"


@asynccontextmanager
async def asgi_url() -> AsyncIterator[str]:
    async with uvicorn_server(MediaStreamApp(plays_24k, "twilio")) as url:
        yield url + "/media"


@pytest.mark.parametrize("server", [websockets_url, asgi_url])
def test_24_khz_audio_plays_on_an_8_khz_line(server: Any) -> None:
    async def main() -> FakePhone[TwilioSide]:
        async with server() as url:
            return await listen(url)

    heard = run(main()).heard()
    start, end = np.nonzero(heard)[0][[0, -1]]
    assert abs(end + 1 - start - 4000) <= 160  # 0.5 s at 8 kHz, not 1.5 s
    rms = float(np.sqrt(np.mean(heard[start : end + 1].astype(np.float64) ** 2)))
    assert rms == pytest.approx(8000 / np.sqrt(2), rel=0.1)  # the tone's level, intact
    assert peak_hz(heard, 8000) == pytest.approx(1000.0, abs=20)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_example_serves_media_on_the_path_itself() -> None:
    pytest.importorskip("fastapi", reason="the example is a FastAPI app")
    example = load_example()

    async def main() -> tuple[str, FakePhone[TwilioSide], int]:
        async with uvicorn_server(example.app) as url:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
            writer.write(
                b"POST /voice HTTP/1.1\r\nHost: voice.example.com\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            twiml = (await reader.read()).decode()
            writer.close()
            peer = await listen(url + "/media")
            # what the docstring warns about: mounted, /media itself is not served
            from fastapi import FastAPI

            mounted = FastAPI()
            mounted.mount("/media", example.media)
        async with uvicorn_server(mounted) as other:
            with pytest.raises(InvalidStatus) as info:
                async with connect(other + "/media"):
                    pass
            status = info.value.response.status_code
        return twiml, peer, status

    twiml, peer, status = run(main())
    assert '<Stream url="wss://voice.example.com/media"' in twiml
    heard = peer.heard()
    assert peak_hz(heard[:4000], 8000) == pytest.approx(440.0, abs=20)  # the greeting
    assert status == 403
