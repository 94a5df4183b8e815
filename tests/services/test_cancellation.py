"""Cancellation, as each client's fake server sees it: after ``aclose()`` (a barge-in) the
server observes the stream closed, and no further request bytes arrive.

"Closed" is what the protocol allows the server to see: the HTTP connection dropped
(LLMs, OpenAI speech and transcription), the WebSocket closed (Deepgram), or the
context's ``close_context`` / ``cancel`` message (ElevenLabs, Cartesia, whose connection
is shared by the replies and stays open). Times are the server's own loop times; the
bound here is generous for a loaded machine (a second): the 50 ms goal is measured by
``bench/cancellation.py``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket clients need websockets")

from voxwire.services.base import ChatMessage, LanguageModel
from voxwire.services.llm_anthropic import AnthropicModel
from voxwire.services.llm_openai import OpenAIChatModel
from voxwire.services.stt_deepgram import DeepgramStt
from voxwire.services.stt_openai import OpenAITranscriptionStt
from voxwire.services.testing.llm import (
    FakeServer,
    Script,
    anthropic_start,
    anthropic_text_block,
    chunk,
    sse,
)
from voxwire.services.testing.stt import KEY as DEEPGRAM_KEY
from voxwire.services.testing.stt import Answer, FakeDeepgram, FakeTranscriptions
from voxwire.services.testing.tts import CartesiaFake, ElevenLabsFake, OpenAISpeechFake
from voxwire.services.tts_cartesia import CartesiaTts
from voxwire.services.tts_elevenlabs import ElevenLabsTts
from voxwire.services.tts_openai import OpenAISpeechTts

LIMIT = 1.0  # seconds: generous for a loaded machine; bench/cancellation.py measures the 50 ms goal
KEY = "k-cancel-0042"
HELLO = (ChatMessage("user", "Hi"),)
LONG = "This is a long reply that goes on for a while so that it can be cut off. " * 4


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def _llm_cancel(server: FakeServer, model: LanguageModel) -> float:
    loop = asyncio.get_running_loop()
    stream = model.complete(HELLO)
    await stream.__aiter__().__anext__()  # the reply has begun
    began = loop.time()
    await stream.aclose()
    await asyncio.wait_for(server.disconnected.wait(), 2.0)
    assert server.disconnected_at is not None
    await asyncio.sleep(0.1)
    assert len(server.requests) == 1  # nothing more was asked
    assert server.sent < server.total  # the server stopped before the end of its reply
    return server.disconnected_at - began


def test_openai_llm_aclose_drops_the_connection_at_once() -> None:
    pieces = [sse(chunk({"content": f"w{i} "})) for i in range(200)]

    async def main() -> float:
        async with FakeServer([Script(pieces, gap=0.01)]) as server:
            model = OpenAIChatModel(f"{server.base}/v1", "m", api_key=KEY)
            try:
                return await _llm_cancel(server, model)
            finally:
                await model.aclose()

    assert asyncio.run(main()) < LIMIT


def test_anthropic_llm_aclose_drops_the_connection_at_once() -> None:
    pieces = [anthropic_start(), *anthropic_text_block(0, [f"w{i} " for i in range(200)])]

    async def main() -> float:
        async with FakeServer([Script(pieces, gap=0.01)]) as server:
            model = AnthropicModel("c", api_key=KEY, base_url=server.base)
            try:
                return await _llm_cancel(server, model)
            finally:
                await model.aclose()

    assert asyncio.run(main()) < LIMIT


def test_openai_tts_aclose_drops_the_request_and_sends_no_more() -> None:
    async def main() -> float:
        async with OpenAISpeechFake(key=KEY) as server:
            tts = OpenAISpeechTts(server.base, api_key=KEY)
            loop = asyncio.get_running_loop()
            stream = tts.stream()
            stream.push(LONG)
            stream.flush()
            await stream.__aiter__().__anext__()
            began = loop.time()
            await stream.aclose()
            await asyncio.wait_for(server.left.wait(), 2.0)
            stream.push("More text after the barge-in.")
            stream.flush()
            stream.end_input()
            await asyncio.sleep(0.1)
            assert len(server.requests) == 1
            assert server.finished == 0
            await tts.aclose()
            assert server.left_at is not None
            return server.left_at - began

    assert asyncio.run(main()) < LIMIT


def test_openai_stt_aclose_abandons_the_request_under_way() -> None:
    async def main() -> float:
        async with FakeTranscriptions([Answer(stall=30.0)]) as server:
            stt = OpenAITranscriptionStt(server.base, api_key=KEY)
            loop = asyncio.get_running_loop()
            stream = stt.stream()
            stream.push(tone(0.5))
            stream.finalize()
            for _ in range(200):
                if server.uploads:
                    break
                await asyncio.sleep(0.01)
            began = loop.time()
            await stream.aclose()
            for _ in range(200):
                if server.left_at is not None:
                    break
                await asyncio.sleep(0.005)
            stream.push(tone(0.5))
            stream.finalize()
            await asyncio.sleep(0.1)
            assert len(server.uploads) == 1
            assert server.left_at is not None
            return server.left_at - began

    assert asyncio.run(main()) < LIMIT


def test_deepgram_aclose_closes_the_socket_and_sends_no_more_audio() -> None:
    async def main() -> float:
        async with FakeDeepgram(["hello world"], interim_every=0.1, latency=0.0) as server:
            stt = DeepgramStt(api_key=DEEPGRAM_KEY, url=server.url)
            loop = asyncio.get_running_loop()
            stream = stt.stream()
            for i in range(0, 16000, 320):
                stream.push(tone(0.02))
                await asyncio.sleep(0.002)
                if i == 3200:
                    break
            await stream.__aiter__().__anext__()  # the stream is live
            began = loop.time()
            await stream.aclose()
            await asyncio.wait_for(server.disconnected.wait(), 2.0)
            (session,) = server.sessions
            frames = len(session.frames)
            stream.push(tone(0.5))
            stream.finalize()
            await asyncio.sleep(0.1)
            assert len(session.frames) == frames
            assert len(server.sessions) == 1
            assert server.disconnected_at is not None
            return server.disconnected_at - began

    assert asyncio.run(main()) < LIMIT


@pytest.mark.parametrize("vendor", ["elevenlabs", "cartesia"])
def test_ws_tts_aclose_stops_the_context_and_sends_nothing_more_for_it(vendor: str) -> None:
    async def main() -> float:
        fake = ElevenLabsFake(key=KEY) if vendor == "elevenlabs" else CartesiaFake(key=KEY)
        async with fake:
            if vendor == "elevenlabs":
                tts: ElevenLabsTts | CartesiaTts = ElevenLabsTts(
                    "v", api_key=KEY, base_url=fake.base
                )
            else:
                tts = CartesiaTts("v", api_key=KEY, base_url=fake.base)
            loop = asyncio.get_running_loop()
            stream = tts.stream()
            stream.push(LONG)
            stream.flush()
            await stream.__aiter__().__anext__()
            began = loop.time()
            await stream.aclose()
            (ctx,) = fake.contexts.values()
            for _ in range(200):
                if ctx.stopped_at is not None:
                    break
                await asyncio.sleep(0.002)
            seen = len(ctx.messages)
            stream.push("More text after the barge-in.")
            stream.flush()
            stream.end_input()
            await asyncio.sleep(0.1)
            assert len(ctx.messages) == seen
            await tts.aclose()
            assert ctx.stopped_at is not None
            return ctx.stopped_at - began

    assert asyncio.run(main()) < LIMIT
