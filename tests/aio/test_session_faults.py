"""No call fails silently; the rate limits let held audio through and stop floods; the
idle timer closes only idle calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsClosed

import voxwire
from voxwire.aio import Call, Limits
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    ERRORS,
    CallErrors,
    run_call,
)
from voxwire.aio.websockets_server import serve
from voxwire.call.core import CallCore
from voxwire.call.policy import RateWindow
from voxwire.errors import ConnectionClosed, RemoteProtocolError
from voxwire.protocols import Audio
from voxwire.protocols.registry import CODECS
from voxwire.protocols.twilio import TwilioCodec
from voxwire.sim.providers import (
    JambonzSide,
    PlivoSide,
    ProviderSide,
    TelerSide,
    TelnyxSide,
    TwilioSide,
    VonageSide,
)


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class ScriptTransport:
    """Hands out its messages (``None`` sleeps 0.1 s), then waits until it is closed."""

    def __init__(
        self, messages: Sequence[str | bytes | None], *, fail_send: Exception | None = None
    ) -> None:
        self.messages = list(messages)
        self.fail_send = fail_send
        self.fail_recv: Exception | None = None
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None
        self._ended = asyncio.Event()

    async def recv(self) -> str | bytes:
        while self.messages:
            message = self.messages.pop(0)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            return message
        if self.fail_recv is not None:
            raise self.fail_recv
        await self._ended.wait()
        raise ConnectionClosed(None, "closed")

    async def send(self, message: str | bytes) -> None:
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._ended.set()


def media(peer: TwilioSide, seconds: float) -> list[str]:
    """Twilio media messages of 20 ms carrying ``seconds`` of audio."""
    frame = np.zeros(160, dtype=np.int16)
    return [str(peer.audio(frame)) for _ in range(round(seconds * 50))]


async def echo(call: Call) -> None:
    async for event in call:
        if isinstance(event, Audio):
            call.play(event.pcm, event.sample_rate)


async def drain(call: Call) -> None:
    async for _ in call:
        pass


def one_call(
    transport: ScriptTransport,
    handler: Callable[[Call], Awaitable[None]] = drain,
    codec: TwilioCodec | None = None,
    limits: Limits | None = None,
) -> Call:
    async def main() -> Call:
        pacer = Pacer()
        try:
            return await run_call(
                codec or TwilioCodec(), transport, handler, pacer=pacer, limits=limits
            )
        finally:
            await pacer.aclose()

    call: Call = run(main())
    return call


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    ERRORS.clear()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and "call" in r.message]


# --- every stage: logged once, counted, closed with a code ------------------------------

CALL_ID = "18ad3ab5-a668-481c-e02b-83e7395059f0"


def twilio() -> TwilioSide:
    """The strict Twilio side of the call every test here places (one stream id)."""
    return TwilioSide(call_id=CALL_ID, strict=True)


SID = twilio().sid


class Boom(RuntimeError):
    """The injected fault."""


def test_codec_receive_raising_closes_1011_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = twilio()
    codec = TwilioCodec()
    receive = codec.receive

    def failing(data: str | bytes, now: float) -> list[Any]:
        if codec.started is not None:
            raise Boom("decoder broke")
        return receive(data, now)

    codec.receive = failing  # type: ignore[method-assign]
    transport = ScriptTransport([*peer.opening(), *media(peer, 0.1)])
    call = one_call(transport, codec=codec)
    assert transport.closed == (CLOSE_INTERNAL, "internal error in receive: Boom")
    assert call.close_code == CLOSE_INTERNAL
    assert ERRORS.as_dict() == {("receive", "Boom"): 1}
    records = errors_logged(caplog)
    assert len(records) == 1
    assert SID in records[0].getMessage()
    assert "receive raised Boom" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is Boom


def test_transport_recv_raising_is_counted_under_recv(caplog: pytest.LogCaptureFixture) -> None:
    peer = twilio()
    transport = ScriptTransport(list(peer.opening()))
    transport.fail_recv = OSError("socket broke")
    one_call(transport)
    assert transport.closed == (CLOSE_INTERNAL, "internal error in recv: OSError")
    assert ERRORS.count("recv", "OSError") == 1
    assert len(errors_logged(caplog)) == 1


def test_dispatch_raising_closes_1011(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deliver(self: CallCore, event: object) -> None:
        raise Boom("queue broke")

    monkeypatch.setattr(CallCore, "_deliver", deliver)
    peer = twilio()
    transport = ScriptTransport([*peer.opening(), *media(peer, 0.1)])
    one_call(transport)
    assert transport.closed == (CLOSE_INTERNAL, "internal error in dispatch: Boom")
    assert ERRORS.as_dict() == {("dispatch", "Boom"): 1}
    assert len(errors_logged(caplog)) == 1


def test_codec_timer_raising_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    codec = TwilioCodec()
    fired: list[float] = []

    def get_timer() -> float | None:
        return None if fired else asyncio.get_running_loop().time() + 0.01

    def handle_timer(now: float) -> list[Any]:
        fired.append(now)
        raise Boom("reorder buffer broke")

    codec.get_timer = get_timer  # type: ignore[method-assign]
    codec.handle_timer = handle_timer  # type: ignore[method-assign]
    peer = twilio()
    transport = ScriptTransport([*peer.opening(), None, *media(peer, 0.1)])
    one_call(transport, codec=codec)
    assert len(fired) == 1
    assert transport.closed == (CLOSE_INTERNAL, "internal error in timer: Boom")
    assert ERRORS.as_dict() == {("timer", "Boom"): 1}
    records = errors_logged(caplog)
    assert len(records) == 1
    assert SID in records[0].getMessage()


def test_pacer_sink_raising_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    codec = TwilioCodec()

    def send_audio(pcm: object, sample_rate: int | None = None) -> list[str | bytes]:
        raise Boom("encoder broke")

    codec.send_audio = send_audio  # type: ignore[method-assign]
    peer = twilio()
    transport = ScriptTransport([*peer.opening(), *media(peer, 0.1), None, None])
    call = one_call(transport, echo, codec=codec)
    assert transport.closed == (CLOSE_INTERNAL, "internal error in sink: Boom")
    assert call.close_code == CLOSE_INTERNAL
    assert ERRORS.as_dict() == {("sink", "Boom"): 1}
    records = errors_logged(caplog)
    assert len(records) == 1
    assert SID in records[0].getMessage()


def test_writer_raising_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    peer = twilio()
    transport = ScriptTransport(
        [*peer.opening(), *media(peer, 0.1), None, None], fail_send=OSError("peer reset")
    )
    one_call(transport, echo)
    assert transport.closed == (CLOSE_INTERNAL, "internal error in writer: OSError")
    assert ERRORS.as_dict() == {("writer", "OSError"): 1}
    records = errors_logged(caplog)
    assert len(records) == 1
    assert SID in records[0].getMessage()


def test_handler_raising_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(call: Call) -> None:
        async for _ in call:
            raise Boom("application bug")

    peer = twilio()
    transport = ScriptTransport([*peer.opening(), *media(peer, 0.1)])
    one_call(transport, handler)
    assert transport.closed == (CLOSE_INTERNAL, "handler error")
    assert ERRORS.as_dict() == {("handler", "Boom"): 1}
    assert len(errors_logged(caplog)) == 1


def test_a_protocol_error_closes_1002_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = twilio()
    other = str(peer.opening()[1]).replace(peer.sid, "MZother")
    transport = ScriptTransport([*peer.opening(), other])
    one_call(transport)
    assert transport.closed is not None
    assert transport.closed[0] == CLOSE_PROTOCOL_ERROR
    assert "second start" in transport.closed[1]
    assert ERRORS.as_dict() == {("receive", "RemoteProtocolError"): 1}
    records = errors_logged(caplog)
    assert len(records) == 1
    assert "second start" in records[0].getMessage()


def test_call_errors_counts_by_stage_and_type() -> None:
    errors = CallErrors()
    errors.note("sink", Boom())
    errors.note("sink", Boom())
    errors.note("writer", OSError())
    assert errors.count() == 3
    assert errors.count("sink") == 2
    assert errors.count(kind="OSError") == 1
    assert errors.as_dict() == {("sink", "Boom"): 2, ("writer", "OSError"): 1}
    with pytest.raises(ValueError, match="unknown stage"):
        errors.note("elsewhere", Boom())
    errors.clear()
    assert errors.count() == 0


# --- a refused start message closes 1002 naming the value, per protocol ------------------


def twilio_opening(rate: int) -> list[str | bytes]:
    connected, start = twilio().opening()
    body = json.loads(start)
    body["start"]["mediaFormat"]["sampleRate"] = rate
    return [connected, json.dumps(body)]


def peer_opening(cls: type[ProviderSide], rate: int) -> list[str | bytes]:
    peer = cls(strict=True)
    peer.rate = rate  # a rate the side would refuse to be built with
    opening: list[str | bytes] = peer.opening()
    return opening


OPENINGS: dict[str, Callable[[int], list[str | bytes]]] = {
    "twilio": twilio_opening,
    "telnyx": lambda rate: peer_opening(TelnyxSide, rate),
    "plivo": lambda rate: peer_opening(PlivoSide, rate),
    "teler": lambda rate: peer_opening(TelerSide, rate),
    "jambonz": lambda rate: peer_opening(JambonzSide, rate),
    "vonage": lambda rate: peer_opening(VonageSide, rate),
}


@asynccontextmanager
async def server(
    handler: Callable[[Call], Awaitable[None]], protocol: Any, **kw: Any
) -> AsyncIterator[str]:
    async with serve(handler, protocol, "127.0.0.1", 0, **kw) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def close_code(ws: ClientConnection) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 3)
    except WsClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


REFUSED = [
    (protocol, rate, pipeline)
    for protocol in sorted(OPENINGS)
    for rate in (7999, 4000, 1, 384000, 10**30)
    for pipeline in (None, 16000)
    # 384 kHz at the line rate is a valid (if unusual) stream, except on Vonage
    if not (rate == 384000 and pipeline is None and protocol != "vonage")
]


@pytest.mark.parametrize(("protocol", "rate", "pipeline"), REFUSED)
def test_a_refused_rate_closes_1002_naming_it(
    protocol: str, rate: int, pipeline: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    def factory() -> Any:
        if pipeline is None:
            return CODECS[protocol]()
        return CODECS[protocol](pipeline_rate=pipeline, resampler=voxwire.Resampler)

    seen: list[Call] = []

    async def handler(call: Call) -> None:
        seen.append(call)
        await drain(call)

    async def main() -> tuple[int | None, str]:
        async with server(handler, factory) as url, connect(url) as ws:
            for message in OPENINGS[protocol](rate):
                with contextlib.suppress(WsClosed):
                    await ws.send(message)
            return await close_code(ws)

    code, reason = run(main())
    assert code == CLOSE_PROTOCOL_ERROR
    assert str(rate) in reason
    assert ERRORS.count("receive", "RemoteProtocolError") == 1
    assert ERRORS.count() == 1
    assert any(str(rate) in r.getMessage() for r in errors_logged(caplog))


def test_the_codec_refuses_a_rate_before_recording_the_start() -> None:
    codec = CODECS["telnyx"](pipeline_rate=16000, resampler=voxwire.Resampler)
    opening = peer_opening(TelnyxSide, 7999)
    for message in opening[:-1]:
        codec.receive(message, 0.0)
    with pytest.raises(RemoteProtocolError, match="7999"):
        codec.receive(opening[-1], 0.0)
    assert codec.started is None


# --- rate limits: held audio passes, floods do not ---------------------------------------


def test_budget_lets_a_6_s_stall_through_at_once() -> None:
    budget = RateWindow(Limits(), 0.0)
    now = 0.0
    for _ in range(3000):  # a minute of real-time audio, 20 ms frames
        now += 0.02
        assert budget.audio(now, 0.02) == ""
    now += 6.0  # the network stalls, then hands over the 6 s it held
    for _ in range(300):
        assert budget.audio(now, 0.02) == ""
    for _ in range(500):  # and the call goes on in real time
        now += 0.02
        assert budget.audio(now, 0.02) == ""


def test_budget_refuses_20_s_of_audio_in_1_s() -> None:
    budget = RateWindow(Limits(), 0.0)
    reasons = [budget.audio(i / 1000, 0.02) for i in range(1000)]
    assert reasons[400] == ""  # 8 s ahead of real time is within the burst
    refused = reasons.index(next(r for r in reasons if r))
    assert 500 < refused < 600  # about 10 s (plus what refilled) got through
    assert "faster than real time" in reasons[refused]


def test_budget_refuses_tiny_media_and_control_messages_at_a_huge_rate() -> None:
    tiny = RateWindow(Limits(), 0.0)
    assert any(tiny.audio(i / 5000, 1 / 8000) for i in range(5000))
    control = RateWindow(Limits(), 0.0)
    reasons = [control.message(i / 5000) for i in range(5000)]
    refused = reasons.index(next(r for r in reasons if r))
    assert 250 < refused < 400
    assert "messages/s without audio" in reasons[refused]


def test_a_stall_delivered_at_once_survives_over_a_socket() -> None:
    """Real time for 0.5 s, then 6 s of held audio at once: every frame is echoed."""
    heard: list[int] = []

    async def handler(call: Call) -> None:
        heard.extend([len(event.pcm) async for event in call if isinstance(event, Audio)])

    async def main() -> tuple[int | None, str]:
        async with server(handler, "twilio") as url, connect(url) as ws:
            peer = twilio()
            for message in peer.opening():
                await ws.send(message)
            for message in media(peer, 0.5):
                await ws.send(message)
                await asyncio.sleep(0.02)
            for message in media(peer, 6.0):
                await ws.send(message)
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"event": "stop", "streamSid": peer.sid, "stop": {}}))
            return await close_code(ws)

    code, _ = run(main())
    assert code == CLOSE_NORMAL
    assert len(heard) == 25 + 300
    assert ERRORS.count() == 0


def test_a_flood_of_audio_is_closed_1008_over_a_socket() -> None:
    async def main() -> tuple[int | None, str]:
        async with server(drain, "twilio") as url, connect(url) as ws:
            peer = twilio()
            for message in peer.opening():
                await ws.send(message)
            with contextlib.suppress(WsClosed):
                for message in media(peer, 20.0):  # 20 s of audio as fast as it goes
                    await ws.send(message)
            return await close_code(ws)

    code, reason = run(main())
    assert code == CLOSE_POLICY
    assert "faster than real time" in reason


def test_a_flood_of_control_messages_is_closed_1008_over_a_socket() -> None:
    async def main() -> tuple[int | None, str]:
        async with server(drain, "twilio") as url, connect(url) as ws:
            peer = twilio()
            for message in peer.opening():
                await ws.send(message)
            with contextlib.suppress(WsClosed):
                for _ in range(5000):
                    await ws.send(peer.dtmf("5"))
            return await close_code(ws)

    code, reason = run(main())
    assert code == CLOSE_POLICY
    assert "messages/s without audio" in reason


# --- the one idle timer -----------------------------------------------------------------


def test_the_idle_timer_rearms_while_messages_come_and_fires_when_they_stop() -> None:
    peer = twilio()
    # a message every 0.1 s for 0.6 s (longer than the 0.25 s timeout), then silence
    script: list[str | bytes | None] = [*peer.opening()]
    for message in media(peer, 0.12):
        script += [None, message]
    transport = ScriptTransport(script)
    call = one_call(transport, limits=Limits(idle_timeout=0.25))
    assert transport.closed == (CLOSE_IDLE, "idle for 0.25 s")
    assert call.stats.audio_chunks_in == 6
    assert ERRORS.count() == 0


def test_the_idle_timer_stops_with_the_stream() -> None:
    """After the stop message the handler's grace runs on; idleness no longer counts."""
    peer = twilio()
    stop = json.dumps({"event": "stop", "streamSid": peer.sid, "stop": {}})
    transport = ScriptTransport([*peer.opening(), *media(peer, 0.1), stop])

    async def handler(call: Call) -> None:
        await drain(call)
        await asyncio.sleep(0.5)  # longer than the idle timeout, within the grace

    one_call(transport, handler, limits=Limits(idle_timeout=0.2, handler_grace=2.0))
    assert transport.closed == (CLOSE_NORMAL, "")
