"""The ASGI app against a minimal in-memory ASGI harness (no server): the scope edge cases."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from tests.aio.provider import EchoLog, echo_handler
from voxwire.aio.asgi import MediaStreamApp
from voxwire.security import TokenAuth
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide


class Harness:
    """Feeds ASGI events in and collects what the app sends."""

    def __init__(self, incoming: list[dict[str, Any]]) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for event in incoming:
            self.incoming.put_nowait(event)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming.empty():
            await asyncio.sleep(0.3)  # the client stays a moment, then goes away
            return {"type": "websocket.disconnect", "code": 1000}
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(dict(message))


def run(app: MediaStreamApp, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> Harness:
    harness = Harness(incoming)

    async def main() -> None:
        await asyncio.wait_for(app(scope, harness.receive, harness.send), 10)

    asyncio.run(main())
    return harness


def ws_scope(query: bytes = b"", subprotocols: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/media",
        "query_string": query,
        "headers": [],
        "subprotocols": subprotocols or [],
    }


def test_http_requests_get_404_and_lifespan_is_ignored() -> None:
    app = MediaStreamApp(echo_handler(EchoLog()), "twilio")
    harness = run(app, {"type": "http", "path": "/"}, [])
    assert harness.sent[0]["status"] == 404
    assert run(app, {"type": "lifespan"}, []).sent == []


def test_a_wrong_token_closes_before_accepting() -> None:
    app = MediaStreamApp(
        echo_handler(EchoLog()), "twilio", auth=TokenAuth("k", custom_parameter=None)
    )
    harness = run(app, ws_scope(b"token=bad"), [{"type": "websocket.connect"}])
    assert harness.sent == [{"type": "websocket.close", "code": 1008}]


def test_a_call_through_asgi_events() -> None:
    log = EchoLog()
    app = MediaStreamApp(echo_handler(log), "twilio")
    peer = FakePhone(TwilioSide(strict=True))
    frames = [peer.say(np.full(160, 1000 * (i + 1), np.int16)) for i in range(3)]
    incoming = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": m} for m in [*peer.opening(), *frames]]
    harness = run(app, ws_scope(subprotocols=["audio.jambonz.org"]), incoming)
    assert harness.sent[0] == {"type": "websocket.accept", "subprotocol": "audio.jambonz.org"}
    media = [json.loads(m["text"]) for m in harness.sent if m["type"] == "websocket.send"]
    assert [m["event"] for m in media] == ["media"] * 3  # the echo, within the 60 ms lead
    assert all(m["streamSid"] == peer.side.sid for m in media)
    for message in media:
        peer.deliver(json.dumps(message))
    peer.advance(1.0)
    levels = [int(np.median(np.abs(chunk))) for chunk in peer.played]
    assert levels == sorted(levels)
    assert levels[0] > 0
    # the client left: nothing is sent after its disconnect
    assert harness.sent[-1]["type"] == "websocket.send"


def test_client_disconnect_ends_the_call() -> None:
    log = EchoLog()
    app = MediaStreamApp(echo_handler(log), "twilio")
    peer = FakePhone(TwilioSide(strict=True))
    incoming = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": m} for m in peer.opening()]
    harness = run(app, ws_scope(), incoming)
    # nothing is sent after the peer went away
    assert all(m["type"] != "websocket.close" for m in harness.sent)
    assert [type(e).__name__ for e in log.events] == ["Connected", "CallStarted"]
