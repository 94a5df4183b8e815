"""The audit log over real sockets: call start and end, refusals, authentication
failures and limit violations as JSON lines, with caller metadata and without audio or
any secret; transcripts in the agent's log lines redacted of digit runs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.provider import EchoLog, echo_handler, play_call
from voxwire.aio import Limits
from voxwire.aio.websockets_server import serve
from voxwire.audit import AUDIT_LOGGER, open_audit_log
from voxwire.security import CallTokens, TokenAuth, redact_digits
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide
from voxwire.voice.metrics import TurnMetrics

SHARED = "shared-test-token-8c1f"
KEY = b"test-key-not-a-secret-0001"


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def audit_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "audit.jsonl"
    handler = open_audit_log(path)
    try:
        yield path
    finally:
        logging.getLogger(AUDIT_LOGGER).removeHandler(handler)
        handler.close()


async def close_of(ws: ClientConnection) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_the_audit_log_records_calls_refusals_and_violations_without_secrets(
    audit_file: Path,
) -> None:
    tokens = CallTokens({"k1": KEY})
    auth = TokenAuth(SHARED, tokens=tokens)
    signed = tokens.mint("CA-audit-1", ttl=60)
    tone = (3000 * np.sin(np.arange(4000) / 5)).astype(np.int16)
    sent: list[str | bytes] = []
    # a call with a signed token, and custom parameters, one of them a secret
    custom = {"agent": "echo", "api_key": "custom-secret-value"}
    peer = FakePhone(TwilioSide(strict=True, parameters=custom))

    async def main() -> None:
        limits = Limits(auth_timeout=0.3, max_messages_per_second=20)
        async with serve(
            echo_handler(EchoLog()), "twilio", "127.0.0.1", 0, auth=auth, limits=limits
        ) as srv:
            url = f"ws://127.0.0.1:{next(iter(srv.sockets)).getsockname()[1]}/"
            with pytest.raises(InvalidStatus):
                async with connect(url + "?token=not-" + SHARED):
                    pass
            async with connect(url + "?token=" + signed) as ws:

                async def send(message: str | bytes) -> None:
                    sent.append(message)
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(message)

                async def recv() -> str | bytes | None:
                    try:
                        return await ws.recv()
                    except ConnectionClosed:
                        return None

                await play_call(peer, send, recv, tone, tail=0.2)
            # the token in the start message of another call, then a flood
            async with connect(url) as ws:
                for message in TwilioSide(strict=True, parameters={"token": SHARED}).opening():
                    await ws.send(message)
                with contextlib.suppress(ConnectionClosed):
                    for _ in range(60):
                        await ws.send('{"event": "noise"}')
                assert await close_of(ws) == 1008
            # no token at all: the deadline
            async with connect(url) as ws:
                assert await close_of(ws) == 1008

    run(main())
    lines = audit_file.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == [
        "connection_refused",
        "call_start",
        "call_end",
        "call_start",
        "limit_violation",
        "call_end",
        "auth_failure",
        "call_end",
    ]
    refused, start, end = events[:3]
    assert (refused["status"], refused["kind"], refused["reason"]) == (
        401,
        "unauthorized",
        "wrong token",
    )
    assert refused["remote"] == "127.0.0.1"
    assert start["stream_id"] == peer.side.sid
    assert start["call_id"] == peer.side.call_sid
    assert (start["encoding"], start["rate"], start["remote"]) == ("mulaw", 8000, "127.0.0.1")
    assert start["custom"] == {"agent": "echo"}
    assert (start["token_call"], start["key_id"]) == ("CA-audit-1", "k1")
    assert end["call"] == start["call"]
    assert end["code"] == 1000
    assert end["audio_in_seconds"] == pytest.approx(0.5, abs=0.05)
    assert events[3]["custom"] == {}  # the token parameter is never recorded
    assert events[4]["kind"] == "message_rate"
    assert events[4]["code"] == 1008
    assert events[6]["kind"] == "auth_deadline"
    assert all(e["time"].endswith("Z") for e in events)
    text = audit_file.read_text(encoding="utf-8")
    for secret in (SHARED, signed, signed.split(".")[3], "custom-secret-value"):
        assert secret not in text
    # no audio either: not one media payload of the call
    payloads = [json.loads(m)["media"]["payload"] for m in sent if '"media"' in str(m)]
    assert payloads
    assert not any(p[:24] in text for p in payloads)
    assert "payload" not in text
    assert base64.b64encode(tone.tobytes()[:18]).decode() not in text


def test_turn_log_lines_redact_digit_runs_by_default() -> None:
    turn = TurnMetrics(
        1, user_text="my card is 4111 1111 1111 1111", heard_text="I have 4111-1111 noted"
    )
    line = turn.log_line(redact_digits)
    assert 'caller="my card is [digits]"' in line
    assert 'heard="I have [digits] noted"' in line
    assert "4111" not in line
    assert "caller=" not in turn.log_line()
