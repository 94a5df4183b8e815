"""``place_call(strict=True)`` and ``voxwire call --strict`` over a real WebSocket: a server
that breaks Twilio's documented format is reported, message by message, and the call
goes on; the lenient phone lets the same message play, as Twilio would."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from websockets.asyncio.server import ServerConnection, serve

from voxwire.g711 import encode_ulaw
from voxwire.sim import CallPlan, CallReport, place_call

RATE = 8000


async def sloppy_server(ws: ServerConnection) -> None:
    """Reads Twilio's start, sends 20 ms of audio twice (once with a key Twilio's media
    message does not have), then hangs up."""
    sid = ""
    async for message in ws:
        msg = json.loads(message)
        if msg.get("event") == "start":
            sid = msg["streamSid"]
            break
    payload = base64.b64encode(encode_ulaw(np.full(160, 3000, np.int16)).tobytes()).decode()
    media = {"event": "media", "streamSid": sid, "media": {"payload": payload}}
    await ws.send(json.dumps({**media, "track": "outbound"}))
    await ws.send(json.dumps(media))
    await asyncio.sleep(0.3)
    await ws.close()


async def call(strict: bool) -> CallReport:
    plan = CallPlan(np.zeros(RATE // 5, np.int16), lead=0.0, reply_timeout=2.0, quiet=0.2)
    async with serve(sloppy_server, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        return await asyncio.wait_for(
            place_call(f"ws://127.0.0.1:{port}/", "twilio", plan, strict=strict), 20
        )


def test_a_strict_call_reports_each_message_that_breaks_the_format() -> None:
    report = asyncio.run(call(strict=True))
    (violation,) = report.violations
    assert violation.startswith("twilio: media: expected keys")
    assert "track" in violation
    assert [n for _, n in report.played] == [160]  # the conforming message played, not the other
    assert report.as_dict()["violations"] == [violation]
    assert "wire-format violations: 1" in report.summary()


def test_a_lenient_call_plays_what_twilio_would_accept() -> None:
    report = asyncio.run(call(strict=False))
    assert report.violations == []
    assert [n for _, n in report.played] == [160, 160]
