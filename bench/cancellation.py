"""How long a barge-in takes to reach the service: ``aclose()`` to the server seeing it.

python bench/cancellation.py [--rounds 30] [--json]

Each client streams a long answer from its local fake server
(:mod:`voxwire.services.testing`, on 127.0.0.1, in this process's event loop), and its
stream is closed with ``aclose()`` once the answer has begun, as the voice agent does on
a barge-in. The figure is the time from the ``aclose()`` call to the moment the fake
server observes the stream closed, by its own loop clock: the HTTP connection dropped
(the LLMs, OpenAI speech and transcriptions), the Deepgram WebSocket closed, the
ElevenLabs ``close_context`` or Cartesia ``cancel`` message received (their connection
stays open for the next reply). Every round also checks that nothing more was asked
after the close (no new request, frame or message for the stream). The goal is 50 ms.

Server and client share one process and one event loop, so the figure includes the
loop's scheduling of both sides (as a loaded agent's would) and no network latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections.abc import Awaitable, Callable

import numpy as np

from voxwire.services.base import ChatMessage
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

GOAL = 0.050
KEY = "bench-key-not-real"
HELLO = (ChatMessage("user", "Hi"),)
LONG = "This is a long reply that goes on for a while so that it can be cut off. " * 4


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def until(check: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.001)):
        if check():
            return
        await asyncio.sleep(0.001)
    raise RuntimeError("the server never saw the stream closed")


async def openai_llm() -> float:
    pieces = [sse(chunk({"content": f"w{i} "})) for i in range(200)]
    async with FakeServer([Script(pieces, gap=0.01)]) as server:
        model = OpenAIChatModel(f"{server.base}/v1", "m", api_key=KEY)
        try:
            return await _llm(server, model.complete(HELLO))
        finally:
            await model.aclose()


async def anthropic_llm() -> float:
    pieces = [anthropic_start(), *anthropic_text_block(0, [f"w{i} " for i in range(200)])]
    async with FakeServer([Script(pieces, gap=0.01)]) as server:
        model = AnthropicModel("c", api_key=KEY, base_url=server.base)
        try:
            return await _llm(server, model.complete(HELLO))
        finally:
            await model.aclose()


async def _llm(server: FakeServer, stream: object) -> float:
    loop = asyncio.get_running_loop()
    await stream.__aiter__().__anext__()  # type: ignore[attr-defined]
    began = loop.time()
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(server.disconnected.wait(), 2.0)
    assert server.disconnected_at is not None
    await asyncio.sleep(0.02)
    if len(server.requests) != 1 or server.sent >= server.total:
        raise RuntimeError("the server was asked again or sent its whole reply")
    return server.disconnected_at - began


async def openai_tts() -> float:
    async with OpenAISpeechFake(key=KEY) as server:
        tts = OpenAISpeechTts(server.base, api_key=KEY)
        try:
            return await _openai_tts(server, tts)
        finally:
            await tts.aclose()


async def _openai_tts(server: OpenAISpeechFake, tts: OpenAISpeechTts) -> float:
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
    await asyncio.sleep(0.02)
    if len(server.requests) != 1 or server.finished:
        raise RuntimeError("the server was asked again or finished the audio")
    assert server.left_at is not None
    return server.left_at - began


async def openai_stt() -> float:
    async with FakeTranscriptions([Answer(stall=30.0)]) as server:
        stt = OpenAITranscriptionStt(server.base, api_key=KEY)
        loop = asyncio.get_running_loop()
        stream = stt.stream()
        stream.push(tone(0.5))
        stream.finalize()
        await until(lambda: bool(server.uploads))
        began = loop.time()
        await stream.aclose()
        await until(lambda: server.left_at is not None)
        stream.push(tone(0.5))
        stream.finalize()
        await asyncio.sleep(0.02)
        if len(server.uploads) != 1:
            raise RuntimeError("the server was asked again")
        assert server.left_at is not None
        return server.left_at - began


async def deepgram_stt() -> float:
    async with FakeDeepgram(["hello world"], interim_every=0.1, latency=0.0) as server:
        stt = DeepgramStt(api_key=DEEPGRAM_KEY, url=server.url)
        loop = asyncio.get_running_loop()
        stream = stt.stream()
        for _ in range(10):
            stream.push(tone(0.02))
            await asyncio.sleep(0.002)
        await stream.__aiter__().__anext__()
        began = loop.time()
        await stream.aclose()
        await asyncio.wait_for(server.disconnected.wait(), 2.0)
        (session,) = server.sessions
        frames = len(session.frames)
        stream.push(tone(0.5))
        await asyncio.sleep(0.02)
        if len(session.frames) != frames or len(server.sessions) != 1:
            raise RuntimeError("audio was sent after the close")
        assert server.disconnected_at is not None
        return server.disconnected_at - began


def ws_tts(vendor: str) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        fake = ElevenLabsFake(key=KEY) if vendor == "elevenlabs" else CartesiaFake(key=KEY)
        async with fake:
            tts: ElevenLabsTts | CartesiaTts
            if vendor == "elevenlabs":
                tts = ElevenLabsTts("v", api_key=KEY, base_url=fake.base)
            else:
                tts = CartesiaTts("v", api_key=KEY, base_url=fake.base)
            try:
                loop = asyncio.get_running_loop()
                stream = tts.stream()
                stream.push(LONG)
                stream.flush()
                await stream.__aiter__().__anext__()
                began = loop.time()
                await stream.aclose()
                (ctx,) = fake.contexts.values()
                await until(lambda: ctx.stopped_at is not None)
                seen = len(ctx.messages)
                stream.push("More text after the barge-in.")
                stream.flush()
                await asyncio.sleep(0.02)
                if len(ctx.messages) != seen:
                    raise RuntimeError("the context got messages after the close")
                assert ctx.stopped_at is not None
                return ctx.stopped_at - began
            finally:
                await tts.aclose()

    return run


CLIENTS: dict[str, Callable[[], Awaitable[float]]] = {
    "LLM: OpenAIChatModel": openai_llm,
    "LLM: AnthropicModel": anthropic_llm,
    "STT: DeepgramStt": deepgram_stt,
    "STT: OpenAITranscriptionStt": openai_stt,
    "TTS: OpenAISpeechTts": openai_tts,
    "TTS: ElevenLabsTts": ws_tts("elevenlabs"),
    "TTS: CartesiaTts": ws_tts("cartesia"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    async def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in CLIENTS}
        for _ in range(args.rounds):
            for name, run in CLIENTS.items():
                out[name].append(await run())
        return out

    times = asyncio.run(measure())
    rows = []
    for name, values in times.items():
        values.sort()
        rows.append(
            {
                "client": name,
                "median_ms": statistics.median(values) * 1e3,
                "p95_ms": values[min(len(values) - 1, int(0.95 * len(values)))] * 1e3,
                "max_ms": values[-1] * 1e3,
                "over_goal": sum(v > GOAL for v in values),
                "rounds": len(values),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"aclose() to the server seeing the stream closed, {args.rounds} rounds each")
        print("| client | median ms | p95 ms | max ms | rounds over 50 ms |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(
                f"| {r['client']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | "
                f"{r['max_ms']:.2f} | {r['over_goal']} of {r['rounds']} |"
            )
    return 1 if any(r["over_goal"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
