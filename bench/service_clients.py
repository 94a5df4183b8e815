"""What a service client costs: voxwire's thin clients against the vendors' official SDKs.

python bench/service_clients.py [--quick] [--rounds 5] [--tokens 2000] [--json]

One local fake server, in a process of its own, answers every client at once and with no
latency: an aiohttp app for the HTTP protocols (OpenAI Chat Completions, Anthropic
Messages, OpenAI ``/audio/speech`` raw PCM) and a websockets server for the WebSocket
ones (Deepgram ``/v1/listen``, Cartesia ``/tts/websocket``, ElevenLabs
``multi-stream-input``). It writes every token, audio chunk or result as a message or
write of its own, as the services do. The clients run here, in one event loop, side by
side in the same run, each with one kept-alive connection, alternating round by round.

Two figures per client:

* **CPU per unit** (us): this process's CPU time (``time.process_time``: the server's
  is in the other process) over one long stream, divided by the units it delivered: a
  text token (one delta) for the LLMs, 20 ms of audio for the OpenAI speech endpoint,
  one audio message for the WebSocket TTS, one 50 ms audio frame sent and its interim
  result received for Deepgram. Median over the rounds.
* **First unit** (ms): wall time from the call (request built and sent) to the first
  unit in the caller's hands, on a warm connection; median over many short requests.
  The server answers at once, so this is the clients' own overhead plus one loopback
  round trip, the same for both columns.

Each client's output is checked before it is timed (every token, every sample, in
order). The SDKs are those installed (``pip install openai anthropic deepgram-sdk
cartesia elevenlabs``); a missing one leaves its column empty, with a note.

ElevenLabs runs over TLS in both columns: the SDK's streaming-input client
(``text_to_speech.convert_realtime``) connects to its base URL with the scheme made
``wss://``. The fake server serves the same app on a second port over TLS, with a
self-signed certificate for 127.0.0.1 made here at run time
(:func:`voxwire.aio.tls.self_signed`), and this process trusts it through
``SSL_CERT_FILE`` (websockets builds the default ``ssl`` context at each connection,
under both clients). The SDK is synchronous: it runs in a worker thread of its own,
each chunk handed to the event loop with ``call_soon_threadsafe``, and opens a new
connection for every call (its first unit includes that handshake). An SDK request that
times out is counted in the row's note, not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxwire.aio import tls as selfsigned

KEY = "bench-key-not-real"
VOICE = "bench-voice"
AUDIO_RATE = 16000  # the WebSocket TTS and the STT audio
FRAME = 800  # Deepgram: 50 ms at 16 kHz, voxwire's frame
PCM_20MS = 480 * 2  # OpenAI speech: 20 ms at 24 kHz, bytes


# --- the fake server (its own process) ------------------------------------------------------


def _sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def openai_events(n: int) -> list[bytes]:
    """A Chat Completions stream of ``n`` text tokens, as OpenAI sends it."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": None,
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": f" w{i}"}) for i in range(n)]
    out.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}
    out.append(
        _sse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "bench",
                "choices": [],
                "usage": usage,
            }
        )
    )
    out.append(b"data: [DONE]\n\n")
    return out


def anthropic_events(n: int) -> list[bytes]:
    """A Messages API stream of ``n`` text deltas."""

    def event(data: dict[str, Any]) -> bytes:
        return _sse(data, str(data["type"]))

    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "bench",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    out = [event({"type": "message_start", "message": message})]
    out.append(
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
    )
    out += [
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f" w{i}"},
            }
        )
        for i in range(n)
    ]
    out.append(event({"type": "content_block_stop", "index": 0}))
    out.append(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            }
        )
    )
    out.append(event({"type": "message_stop"}))
    return out


def pcm_chunk(index: int, samples: int) -> bytes:
    """Audio chunk ``index``: a counter signal, so order and loss show in the samples."""
    return (np.arange(index * samples, (index + 1) * samples) % 30000).astype("<i2").tobytes()


async def _serve(cert: str | None, key: str | None) -> None:
    from aiohttp import web
    from websockets.asyncio.server import serve

    cache: dict[tuple[str, int], list[bytes]] = {}

    async def stream(request: web.Request, pieces: list[bytes], kind: str) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = kind
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response

    async def chat(request: web.Request) -> web.StreamResponse:
        n = int((await request.json())["max_tokens"])
        pieces = cache.setdefault(("openai", n), openai_events(n))
        return await stream(request, pieces, "text/event-stream")

    async def messages(request: web.Request) -> web.StreamResponse:
        n = int((await request.json())["max_tokens"])
        pieces = cache.setdefault(("anthropic", n), anthropic_events(n))
        return await stream(request, pieces, "text/event-stream")

    async def speech(request: web.Request) -> web.StreamResponse:
        n = len((await request.json())["input"])
        pieces = cache.setdefault(("speech", n), [pcm_chunk(i, PCM_20MS // 2) for i in range(n)])
        return await stream(request, pieces, "audio/pcm")

    def b64_chunk(i: int) -> str:
        return base64.b64encode(pcm_chunk(i, AUDIO_RATE // 50)).decode()  # 20 ms

    async def websocket(ws: Any) -> None:
        path = ws.request.path
        if path.startswith("/v1/listen"):
            await deepgram(ws)
        elif path.startswith("/tts/websocket"):
            await cartesia(ws)
        elif "/multi-stream-input" in path:
            await elevenlabs(ws)
        else:
            await elevenlabs_single(ws)

    async def deepgram(ws: Any) -> None:
        heard = 0
        async for message in ws:
            if isinstance(message, bytes):
                start = heard / (2 * AUDIO_RATE)
                heard += len(message)
                end = heard / (2 * AUDIO_RATE)
                words = [
                    {"word": w, "start": start, "end": end, "confidence": 0.9, "punctuated_word": w}
                    for w in ("one", "two", "three")
                ]
                await ws.send(
                    json.dumps(
                        {
                            "type": "Results",
                            "channel_index": [0, 1],
                            "duration": end - start,
                            "start": start,
                            "is_final": False,
                            "speech_final": False,
                            "channel": {
                                "alternatives": [
                                    {
                                        "transcript": "one two three",
                                        "confidence": 0.9,
                                        "words": words,
                                    }
                                ]
                            },
                            "metadata": {"request_id": "r", "model_info": {}, "model_uuid": "u"},
                        }
                    )
                )
            elif json.loads(message).get("type") == "CloseStream":
                await ws.send(
                    json.dumps(
                        {
                            "type": "Metadata",
                            "request_id": "r",
                            "sha256": "0" * 64,
                            "created": "2026-01-01T00:00:00.000Z",
                            "duration": heard / (2 * AUDIO_RATE),
                            "channels": 1,
                        }
                    )
                )
                await ws.close()
                return

    async def cartesia(ws: Any) -> None:
        sent: dict[str, int] = {}
        async for raw in ws:
            message = json.loads(raw)
            context = message["context_id"]
            if message.get("cancel"):
                continue
            text = message.get("transcript", "")
            for _ in text:
                i = sent[context] = sent.get(context, -1) + 1
                await ws.send(
                    json.dumps(
                        {
                            "type": "chunk",
                            "data": b64_chunk(i),
                            "done": False,
                            "status_code": 206,
                            "step_time": 1.0,
                            "context_id": context,
                        }
                    )
                )
            if text:
                at = sent[context] * 0.02
                await ws.send(
                    json.dumps(
                        {
                            "type": "timestamps",
                            "done": False,
                            "status_code": 206,
                            "context_id": context,
                            "word_timestamps": {"words": ["w"], "start": [at], "end": [at + 0.02]},
                        }
                    )
                )
            if not message.get("continue", True):
                await ws.send(
                    json.dumps(
                        {"type": "done", "done": True, "status_code": 206, "context_id": context}
                    )
                )

    async def elevenlabs(ws: Any) -> None:
        sent: dict[str, int] = {}
        async for raw in ws:
            message = json.loads(raw)
            context = message["context_id"]
            if message.get("close_context"):
                await ws.send(json.dumps({"isFinal": True, "contextId": context}))
                continue
            text = message.get("text", "").strip()
            for char in text:
                i = sent[context] = sent.get(context, -1) + 1
                await ws.send(json.dumps({**elevenlabs_audio(i, char), "contextId": context}))

    def elevenlabs_audio(i: int, char: str) -> dict[str, Any]:
        alignment = {"chars": [char], "charStartTimesMs": [0], "charDurationsMs": [20]}
        return {
            "audio": b64_chunk(i),
            "isFinal": None,
            "alignment": alignment,
            "normalizedAlignment": alignment,
        }

    async def elevenlabs_single(ws: Any) -> None:
        # /stream-input: one context a connection; {"text": ""} ends it, then the server
        # sends isFinal and closes the connection
        sent = -1
        async for raw in ws:
            text = json.loads(raw).get("text", "")
            if text == "":
                await ws.send(json.dumps({"isFinal": True}))
                await ws.close()
                return
            for char in text.strip():
                sent += 1
                await ws.send(json.dumps(elevenlabs_audio(sent, char)))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/audio/speech", speech)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with contextlib.AsyncExitStack() as servers:
        ports = {"http": http_port}
        ws_server = await servers.enter_async_context(
            serve(websocket, "127.0.0.1", 0, compression=None, max_size=None)
        )
        ports["ws"] = next(iter(ws_server.sockets)).getsockname()[1]
        if cert and key:  # the same app over TLS, with the certificate the parent made
            tls = selfsigned.server_context(cert, key)
            wss_server = await servers.enter_async_context(
                serve(websocket, "127.0.0.1", 0, ssl=tls, compression=None, max_size=None)
            )
            ports["wss"] = next(iter(wss_server.sockets)).getsockname()[1]
        print(json.dumps(ports), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await runner.cleanup()


# --- the clients ----------------------------------------------------------------------------


class Case:
    """One client: ``stream(n, first)`` runs one request of ``n`` units and returns what it
    delivered (checked against :meth:`expected`); ``first()`` is called at the first unit."""

    service = ""
    unit = ""
    client = ""
    tls = False  # run over the wss:// server

    def __init__(self, http: str, ws: str, wss: str = "") -> None:
        self.http = http
        self.ws = ws
        self.wss = wss  # the WebSocket server over TLS, when a certificate could be made

    async def setup(self) -> None:
        pass

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        raise NotImplementedError

    def expected(self, n: int) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def _words(n: int) -> str:
    return "".join(f" w{i}" for i in range(n))


def _counter(n: int, samples: int) -> np.ndarray:
    return np.concatenate([np.frombuffer(pcm_chunk(i, samples), "<i2") for i in range(n)])


class OpenAIChat(Case):
    service, unit, client = "LLM: OpenAI Chat Completions", "token", "voxwire"

    async def setup(self) -> None:
        from voxwire.services.llm_openai import OpenAIChatModel

        self.model = OpenAIChatModel(f"{self.http}/v1", "bench", api_key=KEY)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        from voxwire.services.base import ChatMessage, TextDelta

        self.model.max_tokens = n
        text = []
        async with self.model.complete([ChatMessage("user", "Hello")]) as reply:
            async for event in reply:
                if isinstance(event, TextDelta) and event.text:
                    if not text:
                        first()
                    text.append(event.text)
        return "".join(text)

    def expected(self, n: int) -> Any:
        return _words(n)

    async def close(self) -> None:
        await self.model.aclose()


class OpenAIChatSdk(OpenAIChat):
    client = "openai"

    async def setup(self) -> None:
        import openai

        self.sdk = openai.AsyncOpenAI(base_url=f"{self.http}/v1", api_key=KEY, max_retries=0)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        text = []
        reply = await self.sdk.chat.completions.create(
            model="bench",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=n,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in reply:
            if chunk.choices and chunk.choices[0].delta.content:
                if not text:
                    first()
                text.append(chunk.choices[0].delta.content)
        return "".join(text)

    async def close(self) -> None:
        await self.sdk.close()


class AnthropicMessages(Case):
    service, unit, client = "LLM: Anthropic Messages", "token", "voxwire"

    async def setup(self) -> None:
        from voxwire.services.llm_anthropic import AnthropicModel

        self.model = AnthropicModel("bench", api_key=KEY, base_url=self.http)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        from voxwire.services.base import ChatMessage, TextDelta

        self.model.max_tokens = n
        text = []
        async with self.model.complete([ChatMessage("user", "Hello")]) as reply:
            async for event in reply:
                if isinstance(event, TextDelta) and event.text:
                    if not text:
                        first()
                    text.append(event.text)
        return "".join(text)

    def expected(self, n: int) -> Any:
        return _words(n)

    async def close(self) -> None:
        await self.model.aclose()


class AnthropicMessagesSdk(AnthropicMessages):
    client = "anthropic"

    async def setup(self) -> None:
        import anthropic

        self.sdk = anthropic.AsyncAnthropic(base_url=self.http, api_key=KEY, max_retries=0)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        text = []
        reply = await self.sdk.messages.create(
            model="bench",
            max_tokens=n,
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
        )
        async for event in reply:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                if not text:
                    first()
                text.append(event.delta.text)
        return "".join(text)

    async def close(self) -> None:
        await self.sdk.close()


class OpenAISpeech(Case):
    service, unit, client = "TTS: OpenAI /audio/speech (raw PCM)", "20 ms of audio", "voxwire"

    async def setup(self) -> None:
        from voxwire.services.tts_openai import OpenAISpeechTts

        self.tts = OpenAISpeechTts(f"{self.http}/v1", "tts-1", "alloy", api_key=KEY)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        chunks = []
        async with self.tts.stream() as reply:
            reply.push("x" * n)
            reply.end_input()
            async for audio in reply:
                if len(audio.pcm):
                    if not chunks:
                        first()
                    chunks.append(audio.pcm)
        return np.concatenate(chunks)

    def expected(self, n: int) -> Any:
        return _counter(n, PCM_20MS // 2)

    async def close(self) -> None:
        await self.tts.aclose()


class OpenAISpeechSdk(OpenAISpeech):
    client = "openai"

    async def setup(self) -> None:
        import openai

        self.sdk = openai.AsyncOpenAI(base_url=f"{self.http}/v1", api_key=KEY, max_retries=0)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        chunks = []
        odd = b""
        async with self.sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="x" * n, response_format="pcm"
        ) as response:
            async for data in response.iter_bytes():
                data = odd + data  # a sample may be split between reads
                whole = len(data) // 2 * 2
                odd = data[whole:]
                if whole:
                    if not chunks:
                        first()
                    chunks.append(np.frombuffer(data[:whole], "<i2"))
        return np.concatenate(chunks)

    async def close(self) -> None:
        await self.sdk.close()


class DeepgramLive(Case):
    service, unit, client = "STT: Deepgram live", "50 ms frame + result", "voxwire"

    def frames(self, n: int) -> list[np.ndarray]:
        return [np.full(FRAME, i % 1000, np.int16) for i in range(n)]

    async def setup(self) -> None:
        from voxwire.services.stt_deepgram import DeepgramStt

        self.stt = DeepgramStt(api_key=KEY, url=f"{self.ws}/v1/listen", utterance_end_ms=None)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        got = 0
        async with self.stt.stream() as s:
            for frame in self.frames(n):
                s.push(frame)
            s.end_input()
            async for t in s:
                if t.text == "one two three":
                    if not got:
                        first()
                    got += 1
        return got

    def expected(self, n: int) -> Any:
        return n


class DeepgramLiveSdk(DeepgramLive):
    client = "deepgram-sdk"

    async def setup(self) -> None:
        from deepgram import AsyncDeepgramClient
        from deepgram.environment import DeepgramClientEnvironment

        env = DeepgramClientEnvironment(
            base=self.http, production=self.ws, agent=self.ws, agent_rest=self.http
        )
        self.sdk = AsyncDeepgramClient(api_key=KEY, environment=env)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        got = 0
        async with self.sdk.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate="16000",
            channels="1",
            interim_results="true",
            punctuate="true",
        ) as socket:
            for frame in self.frames(n):
                await socket.send_media(frame.tobytes())
            await socket.send_close_stream()
            async for message in socket:
                if (
                    getattr(message, "type", None) == "Results"
                    and message.channel.alternatives[0].transcript == "one two three"
                ):
                    if not got:
                        first()
                    got += 1
        return got


class CartesiaWs(Case):
    service, unit, client = "TTS: Cartesia WebSocket", "audio message", "voxwire"

    async def setup(self) -> None:
        from voxwire.services.tts_cartesia import CartesiaTts

        self.tts = CartesiaTts(VOICE, api_key=KEY, base_url=self.ws, sample_rate=AUDIO_RATE)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        chunks = []
        async with self.tts.stream() as reply:
            reply.push("x" * n)
            reply.end_input()
            async for audio in reply:
                if len(audio.pcm):
                    if not chunks:
                        first()
                    chunks.append(audio.pcm)
        return np.concatenate(chunks)

    def expected(self, n: int) -> Any:
        return _counter(n, AUDIO_RATE // 50)

    async def close(self) -> None:
        await self.tts.aclose()


class CartesiaWsSdk(CartesiaWs):
    client = "cartesia"

    async def setup(self) -> None:
        import cartesia

        self.sdk = cartesia.AsyncCartesia(
            api_key=KEY, base_url=self.http, websocket_base_url=self.ws, max_retries=0
        )
        self.manager = self.sdk.tts.websocket_connect()
        self.connection = await self.manager.__aenter__()

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        chunks = []
        context = self.connection.context(
            model_id="sonic-3",
            voice={"mode": "id", "id": VOICE},
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": AUDIO_RATE},
            language="en",
            add_timestamps=True,
        )
        await context.push("x" * n)
        await context.no_more_inputs()
        async for event in context.receive():
            if event.type == "chunk" and event.audio:
                if not chunks:
                    first()
                chunks.append(np.frombuffer(event.audio, "<i2"))
        return np.concatenate(chunks)

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)
        await self.sdk.close()


class ElevenLabsWs(Case):
    service, unit, client = "TTS: ElevenLabs WebSocket, over TLS", "audio message", "voxwire"
    tls = True

    async def setup(self) -> None:
        from voxwire.services.tts_elevenlabs import ElevenLabsTts

        url = self.wss or self.ws  # ws:// only when no certificate could be made
        self.tts = ElevenLabsTts(VOICE, api_key=KEY, base_url=url, sample_rate=AUDIO_RATE)

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        chunks = []
        async with self.tts.stream() as reply:
            reply.push("x" * n)
            reply.end_input()
            async for audio in reply:
                if len(audio.pcm):
                    if not chunks:
                        first()
                    chunks.append(audio.pcm)
        return np.concatenate(chunks)

    def expected(self, n: int) -> Any:
        return _counter(n, AUDIO_RATE // 50)

    async def close(self) -> None:
        await self.tts.aclose()


class ElevenLabsWsSdk(ElevenLabsWs):
    """The SDK's streaming-input TTS, ``text_to_speech.convert_realtime``: a synchronous
    generator on a ``websockets.sync`` connection to ``/stream-input`` (one context, one
    connection a call), its URL the base URL with the scheme made ``wss://``. It runs as an
    asyncio application would run it: in a worker thread of its own, each chunk handed to
    the event loop with ``call_soon_threadsafe``; the caller reads them from a queue."""

    client = "elevenlabs"

    async def setup(self) -> None:
        from elevenlabs.client import ElevenLabs

        if not self.wss:
            raise RuntimeError("no TLS server: no certificate could be made")
        # it trusts the server through SSL_CERT_FILE (see fake_server)
        base = "https://" + self.wss.removeprefix("wss://")
        self.sdk = ElevenLabs(api_key=KEY, base_url=base)
        self.worker = concurrent.futures.ThreadPoolExecutor(1, "elevenlabs-sdk")

    async def stream(self, n: int, first: Callable[[], None]) -> Any:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def synthesise() -> None:
            try:
                for audio in self.sdk.text_to_speech.convert_realtime(
                    VOICE,
                    text=iter(["x" * n]),
                    model_id="eleven_flash_v2_5",
                    output_format=f"pcm_{AUDIO_RATE}",
                ):
                    loop.call_soon_threadsafe(queue.put_nowait, audio)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        done = loop.run_in_executor(self.worker, synthesise)
        chunks = []
        while (audio := await queue.get()) is not None:
            if not chunks:
                first()
            chunks.append(np.frombuffer(audio, "<i2"))
        await done  # raises what the SDK raised
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def close(self) -> None:
        self.worker.shutdown()


PAIRS: list[tuple[type[Case], type[Case], str]] = [
    (OpenAIChat, OpenAIChatSdk, "openai"),
    (AnthropicMessages, AnthropicMessagesSdk, "anthropic"),
    (OpenAISpeech, OpenAISpeechSdk, "openai"),
    (DeepgramLive, DeepgramLiveSdk, "deepgram-sdk"),
    (CartesiaWs, CartesiaWsSdk, "cartesia"),
    (ElevenLabsWs, ElevenLabsWsSdk, "elevenlabs"),
]


# --- measuring ------------------------------------------------------------------------------


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and np.array_equal(got, want)
    return bool(got == want)


async def _checked(case: Case, n: int) -> None:
    got = await case.stream(n, lambda: None)
    if not _same(got, case.expected(n)):
        raise AssertionError(f"{case.service} ({case.client}): wrong output for {n} units")


async def cpu_per_unit(case: Case, n: int) -> float:
    """This process's CPU microseconds per unit over one stream of ``n`` units."""
    start = time.process_time()
    await case.stream(n, lambda: None)
    return (time.process_time() - start) / n * 1e6


async def first_unit(case: Case, n: int = 3) -> float:
    """Milliseconds from the call to the first unit, on a warm connection."""
    seen: list[float] = []
    start = time.perf_counter()
    await case.stream(n, lambda: seen.append(time.perf_counter()))
    return (seen[0] - start) * 1000


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


async def measure(
    http: str,
    ws: str,
    *,
    rounds: int,
    units: int,
    firsts: int,
    sdks: bool = True,
    wss: str = "",
) -> list[dict[str, Any]]:
    rows = []
    for ours_cls, sdk_cls, dist in PAIRS:
        ours = ours_cls(http, ws, wss)
        await ours.setup()
        cases: list[Case] = [ours]
        note = ""
        if ours.tls and not wss:
            note = "no certificate (needs cryptography or openssl): voxwire over ws://, no SDK"
        elif not sdks:
            note = "SDKs not run"
        elif _version(dist):
            sdk = sdk_cls(http, ws, wss)
            try:
                await sdk.setup()
                await _checked(sdk, 5)
                cases.append(sdk)
            except Exception as exc:  # an SDK that cannot run here: said in the table
                note = f"{dist} failed: {type(exc).__name__}: {exc}"[:120]
        else:
            note = f"{dist} not installed"
        for case in cases:
            await _checked(case, units)
        cpu: dict[str, list[float]] = {c.client: [] for c in cases}
        first: dict[str, list[float]] = {c.client: [] for c in cases}
        timeouts = 0  # an SDK's requests that timed out: counted, not timed

        async def timed(case: Case, how: Any, *args: Any) -> list[float]:
            nonlocal timeouts
            try:
                return [await how(case, *args)]
            except TimeoutError:
                if case.client == "voxwire":
                    raise
                timeouts += 1
                return []

        for _ in range(rounds):  # alternate, so drift in the machine's load hits both
            for case in cases:
                cpu[case.client] += await timed(case, cpu_per_unit, units)
            for _ in range(firsts):
                for case in cases:
                    first[case.client] += await timed(case, first_unit)
        if timeouts:
            note = f"{timeouts} of {rounds * (firsts + 1)} SDK requests timed out (not timed)"
        for case in cases:
            await case.close()
        row: dict[str, Any] = {
            "service": ours.service,
            "unit": ours.unit,
            "sdk": f"{cases[1].client} {_version(dist)}" if len(cases) > 1 else "",
            "voxwire_us": statistics.median(cpu["voxwire"]),
            "voxwire_first_ms": statistics.median(first["voxwire"]),
            "note": note,
        }
        if len(cases) > 1:
            name = cases[1].client
            row["sdk_us"] = statistics.median(cpu[name])
            row["sdk_first_ms"] = statistics.median(first[name])
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], units: int, rounds: int) -> str:
    lines = [
        f"client overhead against a zero-latency local server ({units} units a stream, "
        f"median of {rounds} rounds; CPU of the client process only)",
        "",
        "| service | unit | SDK | CPU us / unit: voxwire | SDK | SDK / voxwire "
        "| first unit ms: voxwire | SDK | SDK / voxwire |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sdk_us = r.get("sdk_us")
        sdk_ms = r.get("sdk_first_ms")
        cells = [
            r["service"],
            r["unit"],
            r["sdk"] or "-",
            f"{r['voxwire_us']:.1f}",
            f"{sdk_us:.1f}" if sdk_us is not None else "-",
            f"{sdk_us / r['voxwire_us']:.1f}x" if sdk_us is not None else "-",
            f"{r['voxwire_first_ms']:.2f}",
            f"{sdk_ms:.2f}" if sdk_ms is not None else "-",
            f"{sdk_ms / r['voxwire_first_ms']:.1f}x" if sdk_ms is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['service']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines + (["", *notes] if notes else []))


@contextlib.contextmanager
def _certificate() -> Any:
    """A self-signed certificate for 127.0.0.1, trusted by this process while in use:
    ``SSL_CERT_FILE`` names it, so the default ``ssl`` context (made at each connection by
    websockets, under both voxwire's client and the ElevenLabs SDK) takes it as its only CA.
    None when neither cryptography nor openssl can make one."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            cert, key = selfsigned.self_signed(Path(directory))
        except selfsigned.NoCertificate:
            yield None
            return
        before = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(cert)
        try:
            yield cert, key
        finally:
            if before is None:
                del os.environ["SSL_CERT_FILE"]
            else:
                os.environ["SSL_CERT_FILE"] = before


@contextlib.asynccontextmanager
async def fake_server() -> AsyncIterator[tuple[str, str, str]]:
    """Run the fake server; yield its ``http://``, ``ws://`` and ``wss://`` base URLs (the
    last empty when no certificate could be made)."""
    with _certificate() as pair:
        tls = ["--cert", str(pair[0]), "--key", str(pair[1])] if pair else []
        async with _serving(tls) as urls:
            yield urls


@contextlib.asynccontextmanager
async def _serving(tls: list[str]) -> AsyncIterator[tuple[str, str, str]]:
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", *tls],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        ports = json.loads(line)
        wss = f"wss://127.0.0.1:{ports['wss']}" if "wss" in ports else ""
        yield f"http://127.0.0.1:{ports['http']}", f"ws://127.0.0.1:{ports['ws']}", wss
    finally:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        try:  # waiting with the loop running: the clients' closing handshakes finish
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


async def run(
    *, quick: bool, rounds: int = 5, units: int = 2000, sdks: bool = True
) -> list[dict[str, Any]]:
    """Start the fake server, measure every client, return the rows of the table."""
    async with fake_server() as (http, ws, wss):
        if quick:
            return await measure(http, ws, rounds=1, units=50, firsts=3, sdks=sdks, wss=wss)
        return await measure(http, ws, rounds=rounds, units=units, firsts=40, sdks=sdks, wss=wss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 units, 1 round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=2000, help="units per stream")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.cert, args.key))
        return 0
    warnings.simplefilter("ignore", DeprecationWarning)  # websockets.legacy, in an SDK
    runner = run(quick=args.quick, rounds=args.rounds, units=args.tokens)
    rows: list[dict[str, Any]] = asyncio.run(runner)
    units = 50 if args.quick else args.tokens
    rounds = 1 if args.quick else args.rounds
    print(json.dumps(rows, indent=2) if args.json else render(rows, units, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
