"""Local fake text-to-speech servers: real sockets on 127.0.0.1, port 0.

Each fake speaks one vendor's documented protocol (see the client modules' notes), checks
what the client sends and records it, and "synthesises" a text as a counter signal: the
audio of a context is ``sign * (n % 10000)`` for its n-th sample, so order and mixing are
visible sample by sample. Every character lasts :data:`CHAR_SECONDS`, so the timing of each
word of a script is known exactly (:func:`expected_words`).

Modes make the faults: ``"ok"``, ``"drop"`` (the connection is cut after the first audio),
``"stall"`` (no audio at all), ``"stall_mid"`` (the first audio, then nothing),
``"garbage"`` (a message that is not JSON), ``"error"`` (the vendor's error message),
``"status_401"`` / ``"status_429"`` (with ``Retry-After: 0``) / ``"status_500"`` (refused
handshake or HTTP answer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voxwire.services.testing import Checks, ProtocolViolation, WarmUp, models_route, peer_of

CHAR_SECONDS = 0.02
"""The audio length of each character, in seconds."""
GAP = 0.005
"""Seconds between two audio messages (a server that generates as it goes)."""
CHUNK_CHARS = 7
"""Characters of audio per message (so words are split over messages)."""


def signal(start: int, count: int, sign: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Samples ``start .. start+count`` of a context's counter signal."""
    return (sign * (np.arange(start, start + count) % 10000)).astype(np.int16)


def expected_words(text: str) -> list[tuple[str, float, float]]:
    """The words of ``text`` with the times the fakes give them."""
    out = []
    i = 0
    for word in text.split():
        i = text.index(word, i)
        out.append((word, i * CHAR_SECONDS, (i + len(word)) * CHAR_SECONDS))
        i += len(word)
    return out


def _port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@dataclass
class Context:
    """What a WebSocket fake saw of one context."""

    id: str
    sign: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0  # audio samples sent
    sent: int = 0  # audio messages sent
    chars: int = 0  # characters synthesised (for the times)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at_sent: int | None = None  # audio messages sent when close_context came
    finished: bool = False
    stopped_at: float | None = None  # loop time the close_context or cancel arrived


class WsFake(Checks):
    """What the ElevenLabs and Cartesia fakes share: a websockets server and records."""

    def __init__(self, rate: int, mode: str = "ok", key: str = "k-123") -> None:
        self.violations: list[str] = []
        self.rate = rate
        self.mode = mode
        self.key = key
        self.retry_after = "0"
        """The ``Retry-After`` of a 429 refusal."""
        self.paths: list[str] = []
        self.headers: list[Headers] = []
        self.contexts: dict[str, Context] = {}
        self.connections = 0
        self.connected_at: list[float] = []  # loop times of the connections
        self.open: set[ServerConnection] = set()
        self._work: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> WsFake:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = _port(sock)
        self._server = await serve(
            self._handle, sock=sock, process_request=self._check, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _key_header(self, request: Request) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        self.headers.append(request.headers)
        if self.mode == "status_401" or self._key_header(request) != self.key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"invalid key {self.key}\n")
        if self.mode == "status_500":
            return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "oops\n")
        if self.mode == "status_429":
            response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "slow down\n")
            response.headers["Retry-After"] = self.retry_after
            return response
        return None

    def context(self, context_id: str) -> Context:
        if context_id not in self.contexts:
            sign = 1 if len(self.contexts) % 2 == 0 else -1
            self.contexts[context_id] = Context(context_id, sign)
        return self.contexts[context_id]

    async def close_connections(self) -> None:
        """Close every open connection, as a server's idle timeout does."""
        for ws in list(self.open):
            await ws.close()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.connected_at.append(asyncio.get_running_loop().time())
        self.open.add(ws)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.expect(isinstance(message, dict), message)
                self._tasks = tasks
                self._on(ws, message)
        except ConnectionClosed:
            pass  # the client went away
        except ProtocolViolation:
            pass  # recorded; the connection ends as a vendor's would
        except ValueError as e:  # not JSON
            self.violations.append(f"the client sent a message that is not JSON: {e}")
        finally:
            self.open.discard(ws)
            for t in tasks:
                t.cancel()

    def _on(self, ws: ServerConnection, message: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def spawn(self, ctx: Context, work: Any) -> None:
        """Run ``work(previous)`` after the context's previous work, as a task."""
        previous = self._work.get(ctx.id)
        task = asyncio.get_running_loop().create_task(work(previous))
        self._work[ctx.id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def speak(
        self, ws: ServerConnection, ctx: Context, text: str, make: Any, after: Any = None
    ) -> None:
        """Send the audio of ``text`` for ``ctx`` in messages built by ``make``."""
        if self.mode == "stall" or (self.mode == "stall_mid" and ctx.sent):
            return  # (stalled: nothing more for this context, not even its end)
        if self.mode == "garbage":
            await ws.send("{not json")
            return
        if self.mode == "error":
            await ws.send(json.dumps(self.error_message(ctx)))
            return
        spc = round(self.rate * CHAR_SECONDS)
        for i in range(0, len(text), CHUNK_CHARS):
            await asyncio.sleep(GAP)
            if ctx.cancelled.is_set():
                return
            piece = text[i : i + CHUNK_CHARS]
            pcm = signal(ctx.samples, spc * len(piece), ctx.sign)
            audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
            for m in make(ctx, piece, audio):
                await ws.send(json.dumps(m))
            ctx.samples += len(pcm)
            ctx.chars += len(piece)
            ctx.sent += 1
            if self.mode == "drop":
                ws.transport.abort()
                return
            if self.mode == "stall_mid":
                return  # the first audio, then nothing
        if after is not None and not ctx.cancelled.is_set():
            await after()

    def error_message(self, ctx: Context) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


class ElevenLabsFake(WsFake):
    """The multi-context WebSocket of ElevenLabs."""

    def _key_header(self, request: Request) -> str | None:
        return request.headers.get("xi-api-key")

    def __init__(self, rate: int = 16000, mode: str = "ok", key: str = "k-123") -> None:
        super().__init__(rate, mode, key)
        self._text: dict[str, str] = {}

    def _on(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        context_id = message["context_id"]
        ctx = self.context(context_id)
        first = not ctx.messages
        ctx.messages.append(message)
        if first:
            self.expect(message == {"text": " ", "context_id": context_id}, message)
            self._text[context_id] = ""
            return None
        if "text" in message:
            self.expect(set(message) == {"text", "context_id"}, message)
            self._text[context_id] += message["text"]
            return None
        if message.get("flush") is True:
            self._generate(ws, ctx, final=False)
            return None
        if message.get("close_context") is True:
            self.expect(set(message) == {"context_id", "close_context"}, message)
            ctx.closed_at_sent = ctx.sent
            ctx.stopped_at = asyncio.get_running_loop().time()
            self._generate(ws, ctx, final=True)
            return None
        raise AssertionError(f"unexpected message {message}")

    def _generate(self, ws: ServerConnection, ctx: Context, *, final: bool) -> None:
        text, self._text[ctx.id] = self._text[ctx.id], ""
        self.spawn(ctx, lambda previous: self._speak_after(ws, ctx, text, final, previous))

    async def _speak_after(
        self, ws: ServerConnection, ctx: Context, text: str, final: bool, previous: Any
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])

        def make(c: Context, piece: str, audio: str) -> list[dict[str, Any]]:
            alignment = {
                "chars": list(piece),
                "charStartTimesMs": [round(i * CHAR_SECONDS * 1000) for i in range(len(piece))],
                "charDurationsMs": [round(CHAR_SECONDS * 1000)] * len(piece),
            }
            return [
                {
                    "audio": audio,
                    "isFinal": None,
                    "normalizedAlignment": alignment,
                    "alignment": alignment,
                    "contextId": c.id,
                }
            ]

        async def end() -> None:
            if final:
                ctx.finished = True
                await ws.send(json.dumps({"isFinal": True, "contextId": ctx.id}))

        await self.speak(ws, ctx, text, make, end)

    def error_message(self, ctx: Context) -> dict[str, Any]:
        return {"error": "quota_exceeded", "message": "out of credits", "contextId": ctx.id}


class CartesiaFake(WsFake):
    """Cartesia's TTS WebSocket."""

    VERSION = "2026-03-01"

    def _key_header(self, request: Request) -> str | None:
        return request.headers.get("X-API-Key")

    def __init__(self, rate: int = 16000, mode: str = "ok", key: str = "k-123") -> None:
        super().__init__(rate, mode, key)

    def _on(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        context_id = message["context_id"]
        ctx = self.context(context_id)
        ctx.messages.append(message)
        if message.get("cancel") is True:
            self.expect(set(message) == {"context_id", "cancel"}, message)
            ctx.stopped_at = asyncio.get_running_loop().time()
            ctx.cancelled.set()
            return None
        self.expect(
            message["output_format"]
            == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.rate},
            message,
        )
        self.expect(message["voice"]["mode"] == "id", message)
        self.expect(message["add_timestamps"] is True, message)
        self.expect(isinstance(message["continue"], bool), message)
        self.expect(isinstance(message["transcript"], str), message)
        text, done = message["transcript"], not message["continue"]
        self.spawn(ctx, lambda previous: self._speak_after(ws, ctx, text, done, previous))
        return None

    async def _speak_after(
        self, ws: ServerConnection, ctx: Context, text: str, done: bool, previous: Any
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])

        def make(c: Context, piece: str, audio: str) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = [
                {
                    "type": "chunk",
                    "data": audio,
                    "done": False,
                    "step_time": 3.0,
                    "status_code": 206,
                    "context_id": c.id,
                }
            ]
            return out

        base = ctx.chars

        async def end() -> None:
            words = expected_words(text)
            if words:
                await ws.send(
                    json.dumps(
                        {
                            "type": "timestamps",
                            "done": False,
                            "status_code": 206,
                            "context_id": ctx.id,
                            "word_timestamps": {
                                "words": [w for w, _, _ in words],
                                "start": [round(base * CHAR_SECONDS + s, 6) for _, s, _ in words],
                                "end": [round(base * CHAR_SECONDS + e, 6) for _, _, e in words],
                            },
                        }
                    )
                )
            await ws.send(json.dumps({"type": "flush_done", "done": False, "context_id": ctx.id}))
            if done:
                ctx.finished = True
                await ws.send(json.dumps({"type": "done", "done": True, "context_id": ctx.id}))

        await self.speak(ws, ctx, text, make, end)

    def error_message(self, ctx: Context) -> dict[str, Any]:
        return {
            "type": "error",
            "done": True,
            "title": "Invalid model",
            "error_code": "model_not_found",
            "status_code": 400,
            "context_id": ctx.id,
        }


# --- OpenAI /audio/speech --------------------------------------------------------------------


@dataclass
class SpeechRequest:
    """One POST the OpenAI fake took."""

    headers: dict[str, str]
    body: dict[str, Any]
    peer: tuple[str, int] = ("", 0)  # the client's address: the same on one connection


class OpenAISpeechFake(Checks):
    """``POST /v1/audio/speech`` answering raw PCM (or SSE) of the counter signal."""

    RATE = 24000

    def __init__(self, mode: str = "ok", sse: bool = False, key: str = "k-123") -> None:
        self.violations: list[str] = []
        self.mode = mode
        self.sse = sse
        self.key = key
        self.requests: list[SpeechRequest] = []
        self.retry_after = "0"
        """The ``Retry-After`` of a 429 answer."""
        self.warmups: list[WarmUp] = []
        """The ``GET /v1/models`` requests (warm-ups), not in :attr:`requests`."""
        self.samples = 0
        self.left = asyncio.Event()
        self.left_at: float | None = None  # loop time the client left a request
        self.finished = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> OpenAISpeechFake:
        app = web.Application()
        models_route(app, "/v1/models", self.warmups)
        app.router.add_post("/v1/audio/speech", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = _port(sock)
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(SpeechRequest(dict(request.headers), body, peer_of(request)))
        if (
            request.headers.get("Authorization") != f"Bearer {self.key}"
            or self.mode == "status_401"
        ):
            return web.json_response(
                {"error": {"message": f"Incorrect API key provided: {self.key}"}}, status=401
            )
        if self.mode == "status_500":
            return web.json_response({"error": {"message": "server broke"}}, status=500)
        if self.mode == "status_429":
            return web.json_response(
                {"error": {"message": "rate limited"}},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if self.mode == "json":
            return web.json_response({"audio": "nope"})
        self.expect(body.get("response_format") == "pcm", body)
        self.expect(isinstance(body.get("input"), str), body)
        spc = round(self.RATE * CHAR_SECONDS)
        raw = signal(self.samples, spc * len(body["input"]), 1).astype("<i2").tobytes()
        self.samples += len(raw) // 2
        response = web.StreamResponse()
        response.content_type = "text/event-stream" if self.sse else "audio/pcm"
        try:
            await response.prepare(request)
            if self.mode == "stall":
                await asyncio.sleep(3600)
            step = 1001  # odd: samples are split between writes
            for i in range(0, len(raw), step):
                await asyncio.sleep(GAP)
                piece = raw[i : i + step]
                if self.sse:
                    event = {
                        "type": "speech.audio.delta",
                        "audio": base64.b64encode(piece).decode(),
                    }
                    await response.write(f"data: {json.dumps(event)}\n\n".encode())
                else:
                    await response.write(piece)
                if self.mode == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if self.mode == "stall_mid":
                    await asyncio.sleep(3600)
                if self.mode == "garbage" and self.sse:
                    await response.write(b"data: {not json\n\n")
            if self.sse:
                done = {
                    "type": "speech.audio.done",
                    "usage": {"input_tokens": 3, "output_tokens": 9},
                }
                await response.write(f"data: {json.dumps(done)}\n\n".encode())
            await response.write_eof()
            self.finished += 1
        except (asyncio.CancelledError, ConnectionResetError):
            self.left_at = asyncio.get_running_loop().time()
            self.left.set()
            raise
        return response
