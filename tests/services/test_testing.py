"""The public fake servers themselves: what they record and how they answer misuse."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

pytest.importorskip("aiohttp", reason="the fakes need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket fakes need websockets")

from voxwire.services.testing import ProtocolViolation
from voxwire.services.testing.llm import FakeServer, Script, openai_text
from voxwire.services.testing.tts import ElevenLabsFake


def test_importing_the_package_needs_neither_aiohttp_nor_websockets() -> None:
    code = (
        "import sys, voxwire.services.testing as t; "
        "assert 'aiohttp' not in sys.modules and 'websockets' not in sys.modules; "
        "print(t.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ProtocolViolation" in out.stdout


def test_a_request_past_the_scripts_is_a_500_that_says_so() -> None:
    import aiohttp

    async def main() -> tuple[int, str, int]:
        async with FakeServer([Script(openai_text(["Hi"]))]) as server:
            async with aiohttp.ClientSession() as session:
                for _ in range(2):
                    response = await session.post(f"{server.base}/v1/chat/completions", json={})
                    body = await response.text()
            return response.status, body, len(server.requests)

    status, body, requests = asyncio.run(main())
    assert (status, requests) == (500, 2)
    assert "no script left" in body


def test_a_websocket_fake_records_a_protocol_violation_and_closes() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def main() -> list[str]:
        async with ElevenLabsFake(key="k-1") as fake:
            url = f"{fake.base}/v1/text-to-speech/v/multi-stream-input"
            async with connect(url, additional_headers={"xi-api-key": "k-1"}) as ws:
                # the first message of a context must be the init message {"text": " "}
                await ws.send(json.dumps({"text": "Hello", "context_id": "c1"}))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 2.0)
            return fake.violations

    (violation,) = asyncio.run(main())
    assert "broke the protocol" in violation
    assert "Hello" in violation
    assert issubclass(ProtocolViolation, AssertionError)
