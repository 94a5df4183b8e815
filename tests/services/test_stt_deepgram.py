"""The Deepgram live client against a local fake of its WebSocket protocol (127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the Deepgram client needs websockets")

import voxwire
from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import SpeechToText, SttStream, Transcript
from voxwire.services.stt_deepgram import DeepgramStream, DeepgramStt, transcript_from_results
from voxwire.services.testing.stt import KEY, SERVER_LOG, FakeDeepgram

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def client(server: FakeDeepgram, **kwargs: Any) -> DeepgramStt:
    return DeepgramStt(api_key=kwargs.pop("api_key", KEY), url=server.url, **kwargs)


async def collect(stream: DeepgramStream, got: list[Transcript]) -> None:
    async for t in stream:
        got.append(t)  # noqa: PERF401 - results before an error are kept


async def pace(stream: SttStream, pcm: np.ndarray, rate: int, piece: float = 0.03) -> None:
    """Push ``pcm`` in real time, in pieces of ``piece`` seconds (not a frame multiple)."""
    n = int(piece * rate) + 7
    for i in range(0, pcm.size, n):
        stream.push(pcm[i : i + n])
        await asyncio.sleep(0.002)


def test_the_client_fits_the_contract() -> None:
    stt = DeepgramStt(api_key=KEY)
    assert isinstance(stt, SpeechToText)
    assert isinstance(stt.stream(), SttStream)
    assert KEY not in repr(stt)


def test_the_query_and_the_header_are_as_documented() -> None:
    async def main() -> tuple[FakeDeepgram, list[Transcript]]:
        async with FakeDeepgram(["Hello world."]) as server:
            got: list[Transcript] = []
            async with client(server, endpointing_ms=25).stream() as s:
                reader = asyncio.ensure_future(collect(s, got))
                await pace(s, tone(0.5), 16000)
                s.end_input()
                await reader
            return server, got

    server, got = run(main)
    (session,) = server.sessions
    assert session.headers["Authorization"] == f"Token {KEY}"
    assert session.query == {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "language": "en",
        "interim_results": "true",
        "punctuate": "true",
        "vad_events": "true",
        "endpointing": "25",
        "utterance_end_ms": "1000",
    }
    assert session.texts[-1] == '{"type":"CloseStream"}'
    assert got[-1].final
    assert got[-1].text == "Hello world."


def test_pushes_of_any_size_go_as_50_ms_frames() -> None:
    async def main() -> FakeDeepgram:
        async with FakeDeepgram() as server:
            async with client(server).stream() as s:
                reader = asyncio.ensure_future(collect(s, []))
                pcm = tone(0.33)
                await pace(s, pcm, 16000, piece=0.011)
                s.end_input()
                await reader
            return server

    (session,) = run(main).sessions
    sizes = [len(f) for f in session.frames]
    assert all(n == 1600 for n in sizes[:-1])  # 800 samples of PCM16
    assert 0 < sizes[-1] <= 1600
    assert b"".join(session.frames) == tone(0.33).astype("<i2").tobytes()


def test_finalize_gives_final_results_with_words_and_from_finalize() -> None:
    async def main() -> tuple[list[Transcript], DeepgramStream]:
        async with FakeDeepgram(["Book a table.", "For two."]) as server:
            got: list[Transcript] = []
            async with client(server).stream() as s:
                reader = asyncio.ensure_future(collect(s, got))
                await pace(s, tone(0.6), 16000)
                s.finalize()
                await pace(s, tone(0.4), 16000)
                s.finalize()
                await asyncio.sleep(0.2)
                s.end_input()
                await reader
            return got, s

    got, stream = run(main)
    interims = [t for t in got if not t.final]
    finals = [t for t in got if t.final]
    assert interims
    assert interims[0].text == "Book"
    assert [t.text for t in finals] == ["Book a table.", "For two."]
    first, second = finals
    assert first.from_finalize
    assert first.speech_final
    assert first.confidence == pytest.approx(0.93)
    assert first.start == 0.0
    assert first.end == pytest.approx(0.6, abs=0.002)
    assert [w.text for w in first.words] == ["Book", "a", "table."]  # punctuated_word
    assert first.words[0].start == 0.0
    assert first.words[-1].end == pytest.approx(0.6, abs=0.002)
    assert second.start == pytest.approx(0.6, abs=0.002)
    assert second.end == pytest.approx(1.0, abs=0.002)
    assert stream.speech_started == 1
    assert stream.utterance_ends == 2
    assert stream.metadata is not None
    assert stream.metadata["type"] == "Metadata"


def test_end_input_flushes_the_last_results_then_the_iteration_ends() -> None:
    async def main() -> list[Transcript]:
        async with FakeDeepgram(["Goodbye."]) as server, client(server).stream() as s:
            s.push(tone(0.3))  # before any iteration: held, then sent
            s.end_input()
            return [t async for t in s]

    got = run(main)
    assert got[-1].text == "Goodbye."
    assert got[-1].final
    assert not got[-1].from_finalize


def test_keepalive_keeps_the_stream_open_over_silence() -> None:
    async def main() -> tuple[FakeDeepgram, DeepgramStream, list[Transcript]]:
        async with FakeDeepgram(["Still here."], idle_timeout=0.4) as server:
            got: list[Transcript] = []
            async with client(server, keepalive=0.15).stream() as s:
                reader = asyncio.ensure_future(collect(s, got))
                await pace(s, tone(0.2), 16000)
                await asyncio.sleep(1.2)  # three idle timeouts without audio
                await pace(s, tone(0.2), 16000)
                s.finalize()
                s.end_input()
                await reader
            return server, s, got

    server, stream, got = run(main)
    (session,) = server.sessions
    assert session.closed_by_server == ""
    assert stream.keepalives_sent >= 5
    assert session.texts.count('{"type":"KeepAlive"}') == stream.keepalives_sent
    assert got[-1].text == "Still here."
    assert got[-1].from_finalize


def test_without_keepalive_the_server_closes_and_the_error_says_so() -> None:
    async def main() -> tuple[ServiceError, FakeDeepgram]:
        async with FakeDeepgram(idle_timeout=0.3) as server:
            async with client(server, keepalive=5.0).stream() as s:
                s.push(tone(0.1))
                with pytest.raises(ServiceError) as info:
                    await collect(s, [])
            return info.value, server

    error, server = run(main)
    assert error.service == "stt"
    assert error.reason == "closed"
    assert "NET-0001" in str(error)
    assert "1011" in str(error)
    assert server.sessions[0].closed_by_server == "NET-0001"


def test_a_refused_upgrade_is_status_401_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    secret = "dg-WRONG-key-987"

    async def main() -> ServiceError:
        async with FakeDeepgram() as server:
            async with client(server, api_key=secret).stream() as s:
                s.push(tone(0.1))
                with pytest.raises(ServiceError) as info:
                    await collect(s, [])
            return info.value

    with caplog.at_level(logging.DEBUG):
        error = run(main)
    assert error.reason == "status_401"
    assert secret not in str(error)
    assert secret not in repr(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    client_lines = [r.getMessage() for r in caplog.records if r.name != SERVER_LOG.name]
    assert any("Authorization: Token ***" in line for line in client_lines)
    assert not [line for line in client_lines if secret in line]


def test_other_refusals_keep_their_status() -> None:
    async def main() -> ServiceError:
        async with FakeDeepgram(status=503) as server, client(server).stream() as s:
            s.end_input()
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            return info.value

    assert run(main).reason == "status_503"


def test_no_server_is_connect() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def main() -> ServiceError:
        stt = DeepgramStt(api_key=KEY, url=f"ws://127.0.0.1:{port}/v1/listen")
        async with stt.stream() as s:
            s.push(tone(0.1))
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            return info.value

    error = run(main)
    assert error.reason == "connect"
    assert KEY not in str(error)


def test_an_upgrade_that_never_comes_is_a_timeout() -> None:
    async def main() -> ServiceError:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        try:
            stt = DeepgramStt(
                api_key=KEY, url=f"ws://127.0.0.1:{port}/v1/listen", connect_timeout=0.3
            )
            async with stt.stream() as s:
                s.push(tone(0.1))
                with pytest.raises(ServiceTimeout) as info:
                    await collect(s, [])
                return info.value
        finally:
            listener.close()

    assert run(main).reason == "timeout"


def test_a_dropped_connection_is_closed() -> None:
    async def main() -> ServiceError:
        async with FakeDeepgram(mode="drop") as server, client(server).stream() as s:
            reader = asyncio.ensure_future(collect(s, []))
            await pace(s, tone(0.3), 16000)
            with pytest.raises(ServiceError) as info:
                await reader
            return info.value

    assert run(main).reason == "closed"


def test_garbage_is_bad_message() -> None:
    async def main() -> ServiceError:
        async with FakeDeepgram(mode="garbage") as server, client(server).stream() as s:
            reader = asyncio.ensure_future(collect(s, []))
            await pace(s, tone(0.3), 16000)
            with pytest.raises(ServiceError) as info:
                await reader
            return info.value

    error = run(main)
    assert error.reason == "bad_message"
    assert "not JSON" in str(error)


def test_an_error_is_reported_before_a_close_the_server_never_answers() -> None:
    """A server that upgrades, sends one bad message and then reads nothing more: the
    closing handshake waits for the close timeout, the reader must not."""

    async def main() -> tuple[ServiceError, float, float]:
        closed = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
            accept = base64.b64encode(hashlib.sha1((key + magic).encode()).digest()).decode()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            text = b"<html>not json</html>"
            writer.write(bytes([0x81, len(text)]) + text)  # one unmasked text frame
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # the client's abort ends this (nothing is answered)
            closed.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        try:
            stt = DeepgramStt(api_key=KEY, url=f"ws://127.0.0.1:{port}/v1/listen")
            s = stt.stream()
            began = loop.time()
            s.push(tone(0.1))
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            reported = loop.time() - began
            await s.aclose()  # during the unanswered close: the socket is aborted
            await asyncio.wait_for(closed.wait(), 2.0)
            return info.value, reported, loop.time() - began
        finally:
            server.close()
            await server.wait_closed()

    error, reported, gone = run(main)
    assert error.reason == "bad_message"
    assert reported < 0.5, reported  # not after the 1 s close timeout
    assert gone < 1.0, gone  # aclose did not wait for the close timeout either


@pytest.mark.parametrize(
    "message",
    [
        {"type": "Results"},
        {"type": "Results", "channel": {"alternatives": []}},
        {"type": "Results", "channel": {"alternatives": [{"transcript": 3}]}},
        {"type": "Results", "start": "0", "channel": {"alternatives": [{"transcript": ""}]}},
        {"type": "Results", "channel": {"alternatives": [{"words": [{"start": 0, "end": 1}]}]}},
    ],
)
def test_malformed_results_are_bad_message(message: dict[str, Any]) -> None:
    with pytest.raises(ServiceError) as info:
        transcript_from_results(message)
    assert info.value.reason == "bad_message"


def test_aclose_closes_at_once_and_drops_what_is_pending() -> None:
    async def main() -> tuple[float, list[Transcript]]:
        loop = asyncio.get_running_loop()
        async with FakeDeepgram(latency=0.3) as server:
            s = client(server).stream()
            got: list[Transcript] = []
            reader = asyncio.ensure_future(collect(s, got))
            await pace(s, tone(0.25), 16000)
            s.finalize()
            began = loop.time()
            await s.aclose()
            await asyncio.wait_for(server.disconnected.wait(), 2.0)
            took = loop.time() - began
            await reader  # ends, without an error
            s.push(tone(0.1))  # ignored after aclose
            return took, got

    took, got = run(main)
    assert took < 1.0  # the close does not wait for the server's pending results
    assert not [t for t in got if t.final]


def test_mulaw_at_8_khz_goes_as_it_is() -> None:
    async def main() -> FakeDeepgram:
        async with FakeDeepgram(["Telephone."]) as server:
            stt = client(server, sample_rate=8000, encoding="mulaw")
            assert stt.sample_rate == 8000
            assert stt.frame_samples == 400
            async with stt.stream() as s:
                reader = asyncio.ensure_future(collect(s, []))
                await pace(s, tone(0.3, 8000), 8000)
                s.end_input()
                await reader
            return server

    (session,) = run(main).sessions
    assert session.query["encoding"] == "mulaw"
    assert session.query["sample_rate"] == "8000"
    assert all(len(f) == 400 for f in session.frames[:-1])  # one byte a sample
    assert b"".join(session.frames) == voxwire.encode_ulaw(tone(0.3, 8000).tobytes())


def test_utterance_end_can_be_a_final_marker() -> None:
    async def main() -> list[Transcript]:
        async with FakeDeepgram(["One."]) as server:
            async with client(server, utterance_end_results=True).stream() as s:
                got: list[Transcript] = []
                reader = asyncio.ensure_future(collect(s, got))
                await pace(s, tone(0.3), 16000)
                s.finalize()
                s.end_input()
                await reader
            return got

    got = run(main)
    finals = [t for t in got if t.final]
    assert [t.text for t in finals] == ["One.", ""]
    marker = finals[1]
    assert marker.speech_final
    assert not marker.from_finalize
    assert marker.start == marker.end == pytest.approx(0.3, abs=0.002)


def test_bad_parameters_and_pushes_are_typed_errors() -> None:
    with pytest.raises(ValueError, match="api_key"):
        DeepgramStt(api_key="")
    with pytest.raises(ValueError, match="sample_rate"):
        DeepgramStt(api_key=KEY, sample_rate=11025)
    with pytest.raises(ValueError, match="url"):
        DeepgramStt(api_key=KEY, url="https://api.deepgram.com/v1/listen")
    with pytest.raises(ValueError, match="keepalive"):
        DeepgramStt(api_key=KEY, keepalive=12.0)
    with pytest.raises(ValueError, match="utterance_end_ms"):
        DeepgramStt(api_key=KEY, utterance_end_ms=500)
    stream = DeepgramStt(api_key=KEY).stream()
    with pytest.raises(TypeError):
        stream.push(np.zeros(10, np.float32))
    with pytest.raises(TypeError):
        stream.push(np.zeros((2, 10), np.int16))


def test_the_voice_agent_answers_a_call_through_deepgram() -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
    from voxwire.agents.server import agent_server
    from voxwire.aio.surface import CallSurface
    from voxwire.services.fake import FakeLlm, FakeTts
    from voxwire.sim import PROVIDERS, CallPlan, place_call, synthesize

    question = "What are your opening hours?"
    reply = "We open at nine."

    async def main() -> tuple[FakeDeepgram, list[AgentCallResult], VoiceAgent]:
        results: list[AgentCallResult] = []

        def on_end(call: CallSurface, result: AgentCallResult) -> None:
            results.append(result)

        async with FakeDeepgram([question], interim_every=0.0) as server:
            # telephony audio as it comes: 8 kHz mu-law, so pipeline_rate == stt.sample_rate
            stt = client(server, sample_rate=8000, encoding="mulaw", interim_results=False)
            agent = VoiceAgent(stt, FakeLlm(lambda messages: reply), FakeTts(), on_end=on_end)
            assert agent.pipeline_rate == 8000
            rate = PROVIDERS["twilio"].default_rate
            plan = CallPlan(synthesize(question, rate, seed=1))
            async with agent_server(agent, "twilio") as url:
                await asyncio.wait_for(place_call(url, "twilio", plan), 20)
                for _ in range(150):
                    if results:
                        break
                    await asyncio.sleep(0.02)
            return server, results, agent

    server, results, _agent = run(main, timeout=30)
    (session,) = server.sessions
    assert session.query["encoding"] == "mulaw"
    assert '{"type":"Finalize"}' in session.texts
    (result,) = results
    assert [m.role for m in result.history.messages] == ["user", "assistant"]
    assert result.history.messages[0].content == question
    assert result.history.messages[1].content == reply
