"""CartesiaTts: the TTS WebSocket client, against a local fake server.

The fake (``voxwire.services.testing.tts.CartesiaFake``) checks that every message repeats the
request, sends the audio of a counter signal in ``chunk`` messages, then the
``word_timestamps`` of the transcript in the context's seconds, and ``done`` after
``continue: false``; ``cancel`` stops its sending for the context.
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
from voxwire.services.testing.tts import CHUNK_CHARS, CartesiaFake, expected_words, signal
from voxwire.services.tts_cartesia import CartesiaTts

T = TypeVar("T")
KEY = "k-123"
SENTENCES = ["Hello there, friend. ", "How are you today?"]


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def client(fake: CartesiaFake, timeout: float = 10.0) -> CartesiaTts:
    return CartesiaTts(
        "voice-1", api_key=KEY, sample_rate=fake.rate, base_url=fake.base, timeout=timeout
    )


async def collect(stream: TtsStream) -> list[SpeechAudio]:
    return [chunk async for chunk in stream]


def words_of(chunks: list[SpeechAudio]) -> list[tuple[str, float, float]]:
    return [(w.text, round(w.start, 6), round(w.end, 6)) for c in chunks for w in c.words]


def test_protocol_shape() -> None:
    tts = CartesiaTts("v", api_key=KEY, sample_rate=8000)
    assert isinstance(tts, TextToSpeech)
    assert tts.sample_rate == 8000
    assert KEY not in repr(tts)
    with pytest.raises(ValueError, match="sample_rate"):
        CartesiaTts("v", sample_rate=1000)
    with pytest.raises(ValueError, match="voice_id"):
        CartesiaTts("")


@pytest.mark.parametrize("rate", [8000, 24000])
def test_reply_audio_words_and_requests(rate: int) -> None:
    async def main() -> None:
        async with CartesiaFake(rate) as fake:
            async with client(fake) as tts, tts.stream() as stream:
                for sentence in SENTENCES:
                    stream.push(sentence)
                    stream.flush()
                stream.end_input()
                chunks = await collect(stream)
            text = "".join(SENTENCES)
            pcm = np.concatenate([c.pcm for c in chunks])
            assert np.array_equal(pcm, signal(0, len(pcm), 1))
            assert len(pcm) == round(rate * 0.02) * len(text)
            want = [(w, round(s, 6), round(e, 6)) for w, s, e in expected_words(text)]
            assert words_of(chunks) == want
            assert fake.paths == ["/tts/websocket"]
            assert fake.headers[0]["X-API-Key"] == KEY
            assert fake.headers[0]["Cartesia-Version"] == "2026-03-01"
            (ctx,) = fake.contexts.values()
            assert [(m["transcript"], m["continue"]) for m in ctx.messages] == [
                (SENTENCES[0], True),
                (SENTENCES[1], True),
                ("", False),
            ]
            for m in ctx.messages:
                assert m["model_id"] == "sonic-3"
                assert m["voice"] == {"mode": "id", "id": "voice-1"}
                assert m["language"] == "en"
                assert m["context_id"] == ctx.id
            assert ctx.finished

    run(main)


def test_end_input_carries_the_last_text() -> None:
    async def main() -> None:
        async with CartesiaFake() as fake:
            async with client(fake) as tts, tts.stream() as stream:
                stream.push("Only ")
                stream.push("this.")
                stream.end_input()
                chunks = await collect(stream)
            assert [w[0] for w in words_of(chunks)] == ["Only", "this."]
            (ctx,) = fake.contexts.values()
            assert [(m["transcript"], m["continue"]) for m in ctx.messages] == [
                ("Only this.", False)
            ]

    run(main)


def test_two_contexts_do_not_mix() -> None:
    async def main() -> None:
        async with CartesiaFake() as fake:
            async with client(fake) as tts:
                a, b = tts.stream(), tts.stream()
                a.push("One two three four five.")
                b.push("Six seven eight nine ten.")
                a.end_input()
                b.end_input()
                got_a, got_b = await asyncio.gather(collect(a), collect(b))
            assert fake.connections == 1
            sign = {c.id: c.sign for c in fake.contexts.values()}
            assert set(sign.values()) == {1, -1}
            for stream, got in ((a, got_a), (b, got_b)):
                pcm = np.concatenate([c.pcm for c in got])
                assert np.array_equal(pcm, signal(0, len(pcm), sign[stream.context_id]))
            assert [w[0] for w in words_of(got_b)] == ["Six", "seven", "eight", "nine", "ten."]

    run(main)


def test_aclose_cancels_and_the_server_stops() -> None:
    async def main() -> None:
        async with CartesiaFake() as fake, client(fake) as tts:
            stream = tts.stream()
            text = "A long sentence that takes a while to speak out loud. "
            stream.push(text)
            stream.flush()
            stream.push("Never sent. ")
            first = await anext(aiter(stream))
            assert len(first.pcm)
            await stream.aclose()
            assert await collect(stream) == []
            (ctx,) = fake.contexts.values()
            await asyncio.wait_for(ctx.cancelled.wait(), 2)
            assert ctx.messages[-1] == {"context_id": ctx.id, "cancel": True}
            sent = ctx.sent
            await asyncio.sleep(0.1)
            assert ctx.sent == sent  # the server stopped sending for the context
            assert sent < -(-len(text) // CHUNK_CHARS)
            assert not ctx.finished
            assert all(m.get("transcript") != "Never sent. " for m in ctx.messages)

    run(main)


@pytest.mark.parametrize("mode", ["status_401", "status_500"])
def test_refused_handshake(mode: str) -> None:
    async def main() -> None:
        async with CartesiaFake(mode=mode) as fake:
            async with client(fake) as tts:
                stream = tts.stream()
                stream.push("Hi.")
                stream.end_input()
                with pytest.raises(ServiceError) as info:
                    await collect(stream)
            assert info.value.reason == mode
            assert KEY not in str(info.value)

    run(main)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("drop", "closed"), ("garbage", "bad_message"), ("error", "server_error")],
)
def test_faults(mode: str, reason: str) -> None:
    async def main() -> None:
        async with CartesiaFake(mode=mode) as fake, client(fake) as tts:
            stream = tts.stream()
            stream.push("Hello there.")
            stream.end_input()
            with pytest.raises(ServiceError) as info:
                await collect(stream)
            assert info.value.reason == reason
            if mode == "error":
                assert "model_not_found" in str(info.value)
            if mode == "drop":
                # the next reply reconnects
                fake.mode = "ok"
                again = tts.stream()
                again.push("Again.")
                again.end_input()
                assert [w.text for c in await collect(again) for w in c.words] == ["Again."]
                assert fake.connections == 2

    run(main)


def test_stall_is_a_timeout_and_cancels() -> None:
    async def main() -> None:
        async with CartesiaFake(mode="stall") as fake, client(fake, timeout=0.2) as tts:
            stream = tts.stream()
            stream.push("Hello.")
            stream.flush()
            with pytest.raises(ServiceTimeout):
                await collect(stream)
            (ctx,) = fake.contexts.values()
            await asyncio.wait_for(ctx.cancelled.wait(), 2)

    run(main)


@pytest.mark.parametrize(
    ("timestamps", "match"),
    [
        ({"words": ["a"], "start": [1.0]}, "needs words, start and end"),
        ({"words": ["a", "b"], "start": [1.0], "end": [1.2]}, "differ in length"),
        ({"words": ["a", "b"], "start": [1.0, 0.5], "end": [1.2, 0.7]}, "backwards"),
        ({"words": ["a"], "start": [1.0], "end": [0.5]}, "backwards"),
        ({"words": ["a"], "start": ["x"], "end": [0.5]}, "numbers"),
        ("nope", "must be an object"),
    ],
)
def test_bad_timestamps_are_bad_message(timestamps: object, match: str) -> None:
    stream = CartesiaTts("v").stream()
    with pytest.raises(ServiceError, match=match) as info:
        stream._on_message({"type": "timestamps", "word_timestamps": timestamps})
    assert info.value.reason == "bad_message"


def test_unknown_message_type_is_bad_message() -> None:
    stream = CartesiaTts("v").stream()
    stream._on_message({"type": "phoneme_timestamps"})
    stream._on_message({"type": "flush_done"})
    with pytest.raises(ServiceError, match="unknown message type"):
        stream._on_message({"type": "surprise"})
