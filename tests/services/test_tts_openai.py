"""OpenAISpeechTts: the ``/audio/speech`` client, against a local aiohttp fake server.

The fake (``voxwire.services.testing.tts.OpenAISpeechFake``) checks the key and the body,
and streams the raw PCM of a counter signal in odd-sized writes (samples split between
them), or the same audio as ``speech.audio.delta`` events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the HTTP TTS client needs aiohttp")

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import SpeechAudio, TextToSpeech, TtsStream
from voxwire.services.testing.tts import CHAR_SECONDS, OpenAISpeechFake, signal
from voxwire.services.tts_openai import OpenAISpeechTts, pcm_from_bytes

T = TypeVar("T")
KEY = "k-123"
SENTENCES = ["Hello there, friend. ", "How are you today?"]


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


async def collect(stream: TtsStream) -> list[SpeechAudio]:
    return [chunk async for chunk in stream]


def test_shape_and_validation() -> None:
    tts = OpenAISpeechTts("https://api.openai.com/v1", api_key=KEY)
    assert isinstance(tts, TextToSpeech)
    assert tts.sample_rate == 24000
    assert tts.url == "https://api.openai.com/v1/audio/speech"
    assert KEY not in repr(tts)
    assert tts.request_body("Hi") == {
        "model": "gpt-4o-mini-tts",
        "input": "Hi",
        "voice": "alloy",
        "response_format": "pcm",
    }
    with pytest.raises(ValueError, match="base_url"):
        OpenAISpeechTts("ftp://x")
    with pytest.raises(ValueError, match="speed"):
        OpenAISpeechTts("http://x", speed=9)
    with pytest.raises(ValueError, match="stream_format"):
        OpenAISpeechTts("http://x", stream_format="wav")


def test_pcm_from_bytes_keeps_the_odd_byte() -> None:
    raw = np.array([1, -2, 300], dtype="<i2").tobytes()
    a, carry = pcm_from_bytes(raw[:3])
    b, carry = pcm_from_bytes(raw[3:], carry)
    assert carry == b""
    assert np.concatenate([a, b]).tolist() == [1, -2, 300]


@pytest.mark.parametrize("sse", [False, True])
def test_one_request_per_flush_in_order(sse: bool) -> None:
    async def main() -> None:
        async with OpenAISpeechFake(sse=sse) as fake:
            tts = OpenAISpeechTts(
                fake.base, voice="nova", api_key=KEY, stream_format="sse" if sse else None
            )
            async with tts, tts.stream() as stream:
                for sentence in SENTENCES:
                    stream.push(sentence)
                    stream.flush()
                stream.flush()  # nothing pushed: no request
                stream.end_input()
                chunks = await collect(stream)
            assert [r.body["input"] for r in fake.requests] == SENTENCES
            for r in fake.requests:
                assert r.headers["Authorization"] == f"Bearer {KEY}"
                assert r.body["model"] == "gpt-4o-mini-tts"
                assert r.body["voice"] == "nova"
                assert r.body["response_format"] == "pcm"
                assert r.body.get("stream_format") == ("sse" if sse else None)
            pcm = np.concatenate([c.pcm for c in chunks])
            spc = round(24000 * CHAR_SECONDS)
            assert len(pcm) == spc * len("".join(SENTENCES))
            assert np.array_equal(pcm, signal(0, len(pcm), 1))
            assert len(chunks) > 2  # streamed, not one piece
            assert [c.text for c in chunks if c.text] == SENTENCES
            assert all(not c.words for c in chunks)
            # the text is on the last chunk of each request
            cut = 0
            for c in chunks:
                cut += len(c.pcm)
                if c.text == SENTENCES[0]:
                    assert cut == spc * len(SENTENCES[0])

    run(main)


def test_end_input_sends_the_rest() -> None:
    async def main() -> None:
        async with OpenAISpeechFake() as fake:
            async with OpenAISpeechTts(fake.base, api_key=KEY) as tts, tts.stream() as s:
                s.push("Last words.")
                s.end_input()
                s.push("ignored")
                chunks = await collect(s)
            assert [r.body["input"] for r in fake.requests] == ["Last words."]
            assert chunks[-1].text == "Last words."

    run(main)


def test_aclose_cancels_the_request_in_flight() -> None:
    async def main() -> None:
        async with (
            OpenAISpeechFake() as fake,
            OpenAISpeechTts(fake.base, api_key=KEY) as tts,
        ):
            stream = tts.stream()
            stream.push("A long sentence that takes a while to speak out loud. ")
            stream.flush()
            stream.push("And another one. ")
            stream.flush()
            first = await anext(aiter(stream))
            assert len(first.pcm)
            await stream.aclose()
            assert await collect(stream) == []
            await asyncio.wait_for(fake.left.wait(), 2)
            assert fake.finished == 0
            await asyncio.sleep(0.05)
            assert len(fake.requests) == 1  # the second text was never requested

    run(main)


@pytest.mark.parametrize(
    ("mode", "reason"), [("status_401", "status_401"), ("status_500", "status_500")]
)
def test_status_errors_keep_the_key_out(mode: str, reason: str) -> None:
    async def main() -> None:
        async with OpenAISpeechFake(mode=mode) as fake:
            async with OpenAISpeechTts(fake.base, api_key=KEY) as tts, tts.stream() as s:
                s.push("Hi.")
                s.end_input()
                with pytest.raises(ServiceError) as info:
                    await collect(s)
            assert info.value.reason == reason
            assert info.value.service == "tts"
            assert KEY not in str(info.value)
            if mode == "status_401":
                assert "***" in str(info.value)

    run(main)


@pytest.mark.parametrize(
    ("mode", "sse", "reason"),
    [
        ("drop", False, "closed"),
        ("drop", True, "closed"),
        ("garbage", True, "bad_message"),
        ("json", False, "bad_message"),
    ],
)
def test_faults(mode: str, sse: bool, reason: str) -> None:
    async def main() -> None:
        async with OpenAISpeechFake(mode=mode, sse=sse) as fake:
            async with OpenAISpeechTts(fake.base, api_key=KEY) as tts, tts.stream() as s:
                s.push("Hello there, this is long enough to split.")
                s.end_input()
                with pytest.raises(ServiceError) as info:
                    await collect(s)
            assert info.value.reason == reason

    run(main)


def test_stall_is_a_timeout() -> None:
    async def main() -> None:
        async with (
            OpenAISpeechFake(mode="stall") as fake,
            OpenAISpeechTts(fake.base, api_key=KEY, timeout=0.2) as tts,
        ):
            s = tts.stream()
            s.push("Hi.")
            s.end_input()
            with pytest.raises(ServiceTimeout):
                await collect(s)

    run(main)


def test_connect_refused() -> None:
    async def main() -> None:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        async with OpenAISpeechTts(f"http://127.0.0.1:{port}/v1") as tts, tts.stream() as s:
            s.push("Hi.")
            s.end_input()
            with pytest.raises(ServiceError) as info:
                await collect(s)
        assert info.value.reason == "connect"

    run(main)
