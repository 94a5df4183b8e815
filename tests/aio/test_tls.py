"""TLS in transit: wss:// from the websockets server and the CLI, AudioSocket over TLS,
with a self-signed certificate made by the test."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

import voxwire
from tests.aio.certs import self_signed
from tests.aio.provider import EchoLog, echo_handler, play_call
from tests.serving import serving
from voxwire.agents.server import serve_echo
from voxwire.aio.tcp import serve_audiosocket
from voxwire.aio.tls import client_context, server_context
from voxwire.aio.websockets_server import serve
from voxwire.sim import CallPlan, place_call
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import AudioSocketSide, TwilioSide
from voxwire.sim.speech import synthesize


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def tone(seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def ulaw_line(pcm: np.ndarray) -> np.ndarray:
    return np.frombuffer(voxwire.decode_ulaw(voxwire.encode_ulaw(pcm.tobytes())), np.int16)


@pytest.mark.parametrize("maker", ["cryptography", "openssl"])
def test_wss_echo_with_a_self_signed_certificate(tmp_path: Path, maker: str) -> None:
    cert, key = self_signed(tmp_path, use_openssl=maker == "openssl")
    log = EchoLog()

    async def main() -> FakePhone[TwilioSide]:
        tls = server_context(cert, key)
        async with serve(echo_handler(log), "twilio", "127.0.0.1", 0, ssl=tls) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            url = f"wss://127.0.0.1:{port}/media"
            # a client that does not trust the certificate does not get in
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(url, ssl=client_context()):
                    pass
            # nor does one speaking plain ws:// to the TLS port (no HTTP answer comes back)
            with pytest.raises(InvalidMessage):
                async with connect(f"ws://127.0.0.1:{port}/media", open_timeout=2):
                    pass
            peer = FakePhone(TwilioSide(strict=True))
            async with connect(url, ssl=client_context(cert)) as ws:

                async def send(message: str | bytes) -> None:
                    await ws.send(message)

                async def recv() -> str | bytes | None:
                    try:
                        return await ws.recv()
                    except ConnectionClosed:
                        return None

                await play_call(peer, send, recv, tone(0.4), tail=0.3)
            return peer

    peer = run(main())
    np.testing.assert_array_equal(peer.heard(), ulaw_line(tone(0.4)))


def test_audiosocket_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    log = EchoLog()

    async def main() -> FakePhone[AudioSocketSide]:
        server = await serve_audiosocket(
            echo_handler(log), "127.0.0.1", 0, ssl=server_context(cert, key)
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(cert)
            )
            peer = FakePhone(AudioSocketSide(strict=True))

            async def send(message: str | bytes) -> None:
                writer.write(message if isinstance(message, bytes) else message.encode())
                await writer.drain()

            async def recv() -> bytes | None:
                data = await reader.read(65536)
                return data or None

            await play_call(peer, send, recv, tone(0.4), tail=0.3)
            writer.close()
            return peer

    peer = run(main())
    assert len(peer.heard()) == len(tone(0.4))
    np.testing.assert_array_equal(peer.heard(), tone(0.4))


def test_serve_echo_over_tls_with_the_simulated_phone(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    try:
        speech = synthesize("Testing the secure line.", 8000)
    except Exception as exc:  # the speech engine is an optional dependency
        pytest.skip(f"no speech synthesis: {exc}")

    async def call(protocol: str) -> Any:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_echo(
                protocol,
                "127.0.0.1",
                0,
                stop=stop,
                ready=urls.append,
                ssl=server_context(cert, key),
            )
        )
        try:
            while not urls:
                await asyncio.sleep(0.01)
            return urls[0], await place_call(
                urls[0], protocol, CallPlan(speech), ssl=client_context(cert)
            )
        finally:
            stop.set()
            await asyncio.wait_for(server, 10)

    for protocol, scheme in (("twilio", "wss://"), ("audiosocket", "tls://")):
        url, report = run(call(protocol))
        assert url.startswith(scheme)
        (said,) = report.utterances
        assert said.reply_start is not None, report.summary()
        assert said.correlation > 0.9, report.summary()


def test_cli_serve_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    command = [sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--echo"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bad = subprocess.run(
        [*command, "--tls-cert", str(cert)], capture_output=True, text=True, env=env, timeout=30
    )
    assert bad.returncode == 2
    assert "--tls-cert and --tls-key go together" in bad.stderr
    wrong = subprocess.run(
        [*command, "--tls-cert", str(key), "--tls-key", str(key)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert wrong.returncode == 2
    assert "cannot load the TLS certificate and key" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    with serving("--protocol", "twilio", "--echo", "--port", "0", *tls, "-q") as server:
        url = server.url
        assert url.startswith("wss://127.0.0.1:")

        async def opened() -> str | None:
            async with connect(url, ssl=client_context(cert)) as ws:
                return ws.protocol.state.name

        assert run(opened()) == "OPEN"
