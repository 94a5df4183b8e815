"""The WebSocket adapters (websockets, picows) over real loopback sockets, against
simulated providers: every test runs on each adapter."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.aio.provider import EchoLog, echo_handler, kinds, play_call
from voxwire.aio import CLOSE_IDLE, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, Call, Limits
from voxwire.aio.websockets_server import serve
from voxwire.protocols import CODECS, Audio, Dtmf, MarkPlayed, protocol_names
from voxwire.security import TokenAuth
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import PROVIDERS, TwilioSide


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


ADAPTERS = ["websockets", "picows"]
_adapter = {"name": "websockets"}


@pytest.fixture(params=ADAPTERS, autouse=True)
def adapter(request: pytest.FixtureRequest) -> str:
    """The adapter :func:`server` starts, for each test in turn."""
    name: str = request.param
    if name == "picows":
        pytest.importorskip("picows", reason="the picows adapter needs voxwire[picows]")
    _adapter["name"] = name
    return name


@asynccontextmanager
async def server(
    handler: Callable[[Call], Awaitable[None]], protocol: str, **kw: Any
) -> AsyncIterator[str]:
    if _adapter["name"] == "picows":
        from voxwire.aio.picows_server import serve as picows_serve

        async with await picows_serve(handler, protocol, "127.0.0.1", 0, **kw) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}"
        return
    async with serve(handler, protocol, "127.0.0.1", 0, **kw) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def io(
    ws: ClientConnection,
) -> tuple[Callable[[str | bytes], Awaitable[None]], Callable[[], Awaitable[str | bytes | None]]]:
    async def send(message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)

    async def recv() -> str | bytes | None:
        try:
            return await ws.recv()
        except ConnectionClosed:
            return None

    return send, recv


async def close_code(ws: ClientConnection) -> tuple[int | None, str]:
    """Read until the server closes; return its close code and reason."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 3)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


def speech(seconds: float, rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2500, int(seconds * rate)).clip(-32768, 32767).astype(np.int16)


def through_line(protocol: str, pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as it reaches the other end of a line of ``protocol`` (G.711 is lossy)."""
    side, codec = PROVIDERS[protocol](), CODECS[protocol]()
    for message in side.opening():
        codec.receive(message, 0.0)
    n = side.frame
    frames = [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]
    events = [e for frame in frames for e in codec.receive(side.audio(frame), 0.0)]
    events += codec.handle_timer(60.0)  # what a reorder buffer holds
    return np.concatenate([e.pcm for e in events if isinstance(e, Audio)])


@pytest.mark.parametrize("protocol", protocol_names(transport="websocket"))
def test_echo_round_trip(protocol: str) -> None:
    log = EchoLog()

    async def main() -> None:
        peer = FakePhone(PROVIDERS[protocol](strict=True))
        audio = speech(0.42, peer.rate)
        async with server(echo_handler(log), protocol) as url:
            subprotocols = list(CODECS[protocol].subprotocols) or None
            async with connect(url, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
                send, recv = io(ws)
                report = await play_call(peer, send, recv, audio, tail=0.25)
        heard = peer.heard()
        np.testing.assert_array_equal(heard, through_line(protocol, audio))
        assert report.arrivals
        marks = [e for e in log.events if isinstance(e, MarkPlayed)]
        assert marks == [MarkPlayed("m10"), MarkPlayed("m20")]
        call = log.calls[0]
        assert call.played_samples == 20 * peer.frame
        assert call.played_seconds == pytest.approx(0.4)
        assert call.stats.skipped == 0

    run(main())


def test_paced_output_and_barge_in_clear() -> None:
    """The agent plays 2 s at once; the pacer sends it in real time; a key press clears."""
    log = EchoLog()
    cleared_at: list[float] = []

    async def handler(call: Call) -> None:
        loop = asyncio.get_running_loop()
        async for event in call:
            log.events.append(event)
            if event.__class__.__name__ == "CallStarted":
                call.play(speech(2.0, 8000, seed=3))
                call.mark("end-of-reply")
            if isinstance(event, Dtmf):
                cleared_at.append(loop.time())
                call.clear()

    async def main() -> None:
        peer = FakePhone(TwilioSide(strict=True))
        async with server(handler, "twilio") as url, connect(url) as ws:
            send, recv = io(ws)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            arrivals: list[tuple[float, dict[str, Any]]] = []

            async def reader() -> None:
                while (message := await recv()) is not None:
                    now = loop.time() - t0
                    msg = json.loads(message)
                    arrivals.append((now, msg))
                    replies = peer.advance(now)
                    replies += peer.deliver(message, now)
                    for reply in replies:
                        await send(reply)

            task = loop.create_task(reader())
            for message in peer.opening():
                await send(message)
            await asyncio.sleep(0.6)
            pressed = loop.time() - t0
            await send(peer.side.dtmf("1"))
            await asyncio.sleep(0.4)
            await send(peer.hang_up()[0])
            await asyncio.wait_for(task, 5)

        media = [(t, m) for t, m in arrivals if m["event"] == "media"]
        clear = [t for t, m in arrivals if m["event"] == "clear"]
        assert len(clear) == 1
        # barge-in: the clear reaches the provider within 100 ms of the key press
        assert clear[0] - pressed < 0.1
        start = media[0][0]
        for k, (t, _) in enumerate(media):
            # never more than the 60 ms lead ahead of real time (10 ms scheduling slack)
            assert t - start >= (k + 1) * 0.02 - 0.06 - 0.01
        sent_before_clear = [t for t, _ in media if t < clear[0]]
        # real time, not a burst: ~0.6 s of audio by the key press, plus the lead
        assert 0.45 <= len(sent_before_clear) * 0.02 <= 0.8
        assert all(t <= clear[0] for t, _ in media)  # nothing after the clear
        marks = [e for e in log.events if isinstance(e, MarkPlayed)]
        assert marks == [MarkPlayed("end-of-reply", cleared=True)]

    run(main())


def test_wrong_token_is_refused_at_the_handshake() -> None:
    async def main() -> None:
        auth = TokenAuth("s3cret", custom_parameter=None)
        async with server(echo_handler(EchoLog()), "twilio", auth=auth) as url:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/?token=nope"):
                    pass
            assert info.value.response.status_code == 401
            async with connect(url + "/?token=s3cret") as ws:
                await ws.send(FakePhone(TwilioSide(strict=True)).opening()[0])

    run(main())


def test_token_in_custom_parameters() -> None:
    log = EchoLog()

    async def main() -> None:
        auth = TokenAuth("s3cret")
        async with server(echo_handler(log), "twilio", auth=auth) as url:
            async with connect(url) as ws:
                for message in FakePhone(
                    TwilioSide(strict=True, parameters={"token": "wrong"})
                ).opening():
                    await ws.send(message)
                assert (await close_code(ws))[0] == CLOSE_POLICY
            assert log.events == []
            peer = FakePhone(TwilioSide(strict=True, parameters={"token": "s3cret"}))
            async with connect(url) as ws:
                send, recv = io(ws)
                await play_call(peer, send, recv, speech(0.2), tail=0.2)
            assert "CallStarted" in kinds(log.events)

    run(main())


@pytest.mark.parametrize(
    ("limits", "messages", "code"),
    [
        (Limits(max_message_bytes=1000), ["x" * 2000], CLOSE_TOO_BIG),
        (Limits(idle_timeout=0.2), [], CLOSE_IDLE),
        (Limits(max_messages_per_second=20), ['{"event": "noise"}'] * 40, CLOSE_POLICY),
    ],
    ids=["too-big", "idle", "rate"],
)
def test_limits_close_with_clear_codes(limits: Limits, messages: list[str], code: int) -> None:
    async def main() -> None:
        handler = echo_handler(EchoLog())
        async with (
            server(handler, "twilio", limits=limits) as url,
            connect(url, max_size=None) as ws,
        ):
            for message in FakePhone(TwilioSide(strict=True)).opening():
                await ws.send(message)
            for message in messages:
                await ws.send(message)
            assert (await close_code(ws))[0] == code

    run(main())


def test_protocol_violation_closes_with_1002_and_the_handler_ends() -> None:
    log = EchoLog()

    async def main() -> None:
        async with server(echo_handler(log), "twilio") as url, connect(url) as ws:
            peer = FakePhone(TwilioSide(strict=True))
            for message in peer.opening():
                await ws.send(message)
            other = peer.opening()[1].replace(peer.side.sid, "MZother")
            await ws.send(other)
            code, reason = await close_code(ws)
            assert code == CLOSE_PROTOCOL_ERROR
            assert "second start" in reason

    run(main())


def test_bad_input_is_skipped_and_the_call_goes_on() -> None:
    log = EchoLog()

    async def main() -> None:
        peer = FakePhone(TwilioSide(strict=True))
        async with server(echo_handler(log), "twilio") as url, connect(url) as ws:
            send, recv = io(ws)
            await send("{not json")
            await send(json.dumps({"event": "media", "media": {"payload": "AAAA"}}))
            await send(b"\x00\x01")
            await play_call(peer, send, recv, speech(0.2), tail=0.2)
        stats = log.calls[0].stats
        assert stats.malformed == 1
        assert stats.media_before_start == 1
        assert stats.wrong_frame_type == 1
        assert sum(isinstance(e, Audio) for e in log.events) == 10

    run(main())


def test_path_filter() -> None:
    async def main() -> None:
        async with server(echo_handler(EchoLog()), "twilio", path="/media") as url:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/other"):
                    pass
            assert info.value.response.status_code == 404
            async with connect(url + "/media") as ws:
                await ws.send(FakePhone(TwilioSide(strict=True)).opening()[0])

    run(main())


def test_a_handler_that_raises_closes_with_1011() -> None:
    async def handler(call: Call) -> None:
        async for event in call:
            if isinstance(event, Audio):
                raise RuntimeError("agent bug")

    async def main() -> None:
        async with server(handler, "twilio") as url, connect(url) as ws:
            peer = FakePhone(TwilioSide(strict=True))
            for message in peer.opening():
                await ws.send(message)
            await ws.send(peer.say(speech(0.02)))
            assert (await close_code(ws)) == (1011, "handler error")

    run(main())


def test_audio_queued_when_the_stream_stops_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(call: Call) -> None:
        async for event in call:
            if event.__class__.__name__ == "CallStarted":
                call.play(speech(5.0))

    async def main() -> None:
        async with server(handler, "twilio") as url, connect(url) as ws:
            peer = FakePhone(TwilioSide(strict=True))
            for message in peer.opening():
                await ws.send(message)
            await asyncio.sleep(0.1)
            await ws.send(peer.hang_up()[0])
            assert (await close_code(ws))[0] == 1000

    run(main())
    assert "failed" not in caplog.text
