"""ElevenLabsTts: the multi-context WebSocket client, against a local fake server.

The fake (``voxwire.services.testing.tts.ElevenLabsFake``) checks each message, sends the audio of a
counter signal in messages that split words, with per-message alignment, and records
what it saw per context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the WebSocket TTS clients need websockets")

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import SpeechAudio, TextToSpeech, TtsStream
from voxwire.services.testing.tts import CHAR_SECONDS, ElevenLabsFake, expected_words, signal
from voxwire.services.tts_elevenlabs import ElevenLabsStream, ElevenLabsTts

T = TypeVar("T")
KEY = "k-123"


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def client(fake: ElevenLabsFake, **kw: object) -> ElevenLabsTts:
    return ElevenLabsTts(
        "voice-1",
        api_key=KEY,
        sample_rate=fake.rate,
        base_url=fake.base,
        **kw,  # type: ignore[arg-type]
    )


async def collect(stream: TtsStream) -> list[SpeechAudio]:
    return [chunk async for chunk in stream]


def words_of(chunks: list[SpeechAudio]) -> list[tuple[str, float, float]]:
    return [(w.text, round(w.start, 6), round(w.end, 6)) for c in chunks for w in c.words]


def rounded(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    return [(w, round(s, 6), round(e, 6)) for w, s, e in words]


SENTENCES = ["Hello there, friend. ", "How are you today?"]


def test_protocol_shape() -> None:
    tts = ElevenLabsTts("v", api_key=KEY)
    assert isinstance(tts, TextToSpeech)
    assert KEY not in repr(tts)
    assert tts.sample_rate == 16000
    assert isinstance(tts.stream(), ElevenLabsStream)
    with pytest.raises(ValueError, match="sample_rate"):
        ElevenLabsTts("v", sample_rate=44100)
    with pytest.raises(ValueError, match="base_url"):
        ElevenLabsTts("v", base_url="http://x")


@pytest.mark.parametrize("rate", [16000, 24000])
def test_reply_audio_words_and_requests(rate: int) -> None:
    async def main() -> None:
        async with ElevenLabsFake(rate) as fake:
            tts = client(fake)
            async with tts, tts.stream() as stream:
                assert isinstance(stream, TtsStream)
                for sentence in SENTENCES:
                    stream.push(sentence)
                    stream.flush()
                stream.end_input()
                chunks = await collect(stream)
            text = "".join(SENTENCES)
            pcm = np.concatenate([c.pcm for c in chunks])
            assert pcm.dtype == np.int16
            spc = round(rate * CHAR_SECONDS)
            assert len(pcm) == spc * len(text)
            assert np.array_equal(pcm, signal(0, len(pcm), 1))
            assert words_of(chunks) == rounded(expected_words(text))
            starts = [w.start for c in chunks for w in c.words]
            assert starts == sorted(starts)
            # each chunk carries exactly the words whose audio starts in it, though the
            # fake splits words over messages
            position = 0
            for c in chunks:
                begin, position = position, position + len(c.pcm)
                assert len(c.pcm)
                for w in c.words:
                    assert begin / rate - 1e-9 <= w.start < position / rate - 1e-9
            assert len(chunks) > len(text) // 7  # streamed as the messages come
            path = fake.paths[0]
            assert path.startswith("/v1/text-to-speech/voice-1/multi-stream-input?")
            assert f"output_format=pcm_{rate}" in path
            assert "sync_alignment=true" in path
            assert fake.headers[0]["xi-api-key"] == KEY
            (ctx,) = fake.contexts.values()
            assert ctx.messages[0] == {"text": " ", "context_id": ctx.id}
            assert [m.get("text") for m in ctx.messages[1:]] == [
                SENTENCES[0],
                None,
                SENTENCES[1],
                None,
                None,
            ]
            assert ctx.messages[2] == {"context_id": ctx.id, "flush": True}
            assert ctx.messages[-1] == {"context_id": ctx.id, "close_context": True}
            assert ctx.finished

    run(main)


def test_two_contexts_share_a_connection_and_do_not_mix() -> None:
    async def main() -> None:
        async with ElevenLabsFake() as fake:
            async with client(fake) as tts:
                a, b = tts.stream(), tts.stream()
                assert a.context_id != b.context_id
                a.push("One two three four five. ")
                b.push("Six seven eight nine ten. ")
                a.flush()
                b.flush()
                a.end_input()
                b.end_input()
                got_a, got_b = await asyncio.gather(collect(a), collect(b))
            assert fake.connections == 1
            sign = {c.id: c.sign for c in fake.contexts.values()}
            for stream, got in ((a, got_a), (b, got_b)):
                pcm = np.concatenate([c.pcm for c in got])
                assert np.array_equal(pcm, signal(0, len(pcm), sign[stream.context_id]))
            assert [w[0] for w in words_of(got_a)] == ["One", "two", "three", "four", "five."]
            assert [w[0] for w in words_of(got_b)] == ["Six", "seven", "eight", "nine", "ten."]

    run(main)


def test_aclose_mid_synthesis_closes_the_context_and_drops_late_audio() -> None:
    async def main() -> None:
        async with ElevenLabsFake() as fake, client(fake) as tts:
            stream = tts.stream()
            stream.push("A long sentence that takes a while to speak out loud. ")
            stream.flush()
            first = await anext(aiter(stream))
            assert len(first.pcm)
            await stream.aclose()
            # after aclose: nothing more, even as the server's audio keeps coming
            assert await collect(stream) == []
            (ctx,) = fake.contexts.values()
            for _ in range(200):
                if ctx.closed_at_sent is not None:
                    break
                await asyncio.sleep(0.005)
            assert ctx.closed_at_sent is not None
            assert ctx.messages[-1] == {"context_id": ctx.id, "close_context": True}
            total = -(-len("A long sentence that takes a while to speak out loud. ") // 7)
            assert ctx.closed_at_sent < total  # closed while audio was still due
            await asyncio.sleep(0.2)
            assert tts.ignored > 0  # the late audio was read and dropped
            # the connection still serves the next reply
            nxt = tts.stream()
            nxt.push("Next. ")
            nxt.end_input()
            assert [w.text for c in await collect(nxt) for w in c.words] == ["Next."]

    run(main)


def test_aclose_before_sending_sends_nothing() -> None:
    async def main() -> None:
        async with ElevenLabsFake() as fake:
            async with client(fake) as tts:
                stream = tts.stream()
                await stream.aclose()
                stream.push("never")
                stream.end_input()
                assert await collect(stream) == []
                await asyncio.sleep(0.05)
            assert fake.connections == 0

    run(main)


@pytest.mark.parametrize(
    ("mode", "reason"), [("status_401", "status_401"), ("status_500", "status_500")]
)
def test_refused_handshake(mode: str, reason: str) -> None:
    async def main() -> None:
        async with ElevenLabsFake(mode=mode) as fake:
            async with client(fake) as tts:
                stream = tts.stream()
                stream.push("Hi. ")
                stream.end_input()
                with pytest.raises(ServiceError) as info:
                    await collect(stream)
            assert info.value.reason == reason
            assert info.value.service == "tts"
            assert KEY not in str(info.value)

    run(main)


def test_wrong_key_is_401_and_not_echoed() -> None:
    async def main() -> None:
        async with ElevenLabsFake(key="other-key") as fake:
            async with client(fake) as tts:
                stream = tts.stream()
                stream.push("Hi. ")
                stream.end_input()
                with pytest.raises(ServiceError) as info:
                    await collect(stream)
            assert info.value.reason == "status_401"

    run(main)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("drop", "closed"), ("garbage", "bad_message"), ("error", "server_error")],
)
def test_faults(mode: str, reason: str) -> None:
    async def main() -> None:
        async with ElevenLabsFake(mode=mode) as fake:
            async with client(fake) as tts:
                stream = tts.stream()
                stream.push("Hello there. ")
                stream.end_input()
                got: list[SpeechAudio] = []

                async def drain() -> None:
                    async for chunk in stream:
                        got.append(chunk)  # noqa: PERF401 - kept before the error

                with pytest.raises(ServiceError) as info:
                    await drain()
                assert info.value.reason == reason
                if mode == "error":
                    assert "out of credits" in str(info.value)
                # the next reply opens a new connection
                if mode == "drop":
                    assert len(got) == 1
            assert fake.connections == 1

    run(main)


def test_stall_is_a_timeout() -> None:
    async def main() -> None:
        async with ElevenLabsFake(mode="stall") as fake, client(fake, timeout=0.2) as tts:
            stream = tts.stream()
            stream.push("Hello. ")
            stream.flush()
            with pytest.raises(ServiceTimeout):
                await collect(stream)
            (ctx,) = fake.contexts.values()
            await asyncio.sleep(0.05)
            assert ctx.messages[-1] == {"context_id": ctx.id, "close_context": True}

    run(main)


def test_no_timeout_while_no_audio_is_due() -> None:
    async def main() -> None:
        async with ElevenLabsFake() as fake:
            async with client(fake, timeout=0.1) as tts:
                stream = tts.stream()
                task = asyncio.ensure_future(collect(stream))
                await asyncio.sleep(0.3)  # the agent is waiting for the model's text
                assert not task.done()
                stream.push("Late. ")
                stream.end_input()
                chunks = await task
            assert [w.text for c in chunks for w in c.words] == ["Late."]

    run(main)


@pytest.mark.parametrize(
    ("alignment", "match"),
    [
        ("nope", "must be an object"),
        ({"chars": ["a"], "charStartTimesMs": [0]}, "needs chars"),
        ({"chars": ["a", "b"], "charStartTimesMs": [0], "charDurationsMs": [5]}, "length"),
        ({"chars": ["a"], "charStartTimesMs": ["x"], "charDurationsMs": [5]}, "numbers"),
        ({"chars": ["a"], "charStartTimesMs": [0], "charDurationsMs": [-5]}, "numbers"),
        (
            {"chars": ["a", "b"], "charStartTimesMs": [10, 0], "charDurationsMs": [5, 5]},
            "backwards",
        ),
    ],
)
def test_bad_alignment_is_bad_message(alignment: object, match: str) -> None:
    stream = ElevenLabsTts("v").stream()
    with pytest.raises(ServiceError, match=match) as info:
        stream._on_message({"audio": "AAAA", "alignment": alignment, "contextId": "x"})
    assert info.value.reason == "bad_message"


@pytest.mark.parametrize("audio", ["***", 5])
def test_bad_audio_is_bad_message(audio: object) -> None:
    stream = ElevenLabsTts("v").stream()
    with pytest.raises(ServiceError, match="audio") as info:
        stream._on_message({"audio": audio, "contextId": "x"})
    assert info.value.reason == "bad_message"


def test_a_connection_the_server_closed_is_replaced() -> None:
    async def main() -> None:
        async with ElevenLabsFake() as fake:
            async with client(fake) as tts:
                first = tts.stream()
                first.push("One. ")
                first.end_input()
                assert [w.text for c in await collect(first) for w in c.words] == ["One."]
                await fake.close_connections()  # the server's idle timeout
                second = tts.stream()
                second.push("Two. ")
                second.end_input()
                assert [w.text for c in await collect(second) for w in c.words] == ["Two."]
            assert fake.connections == 2

    run(main)
