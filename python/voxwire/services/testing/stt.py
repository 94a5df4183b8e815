"""Local fake speech-to-text servers: real sockets on 127.0.0.1, port 0.

:class:`FakeDeepgram` speaks Deepgram's live ``/v1/listen`` WebSocket protocol: it checks
the ``Authorization: Token KEY`` header (401 otherwise), records the query and every
frame, sends ``SpeechStarted`` at the first audio, an interim ``Results`` every
``interim_every`` seconds of audio, a final ``Results`` with ``from_finalize`` at each
``Finalize`` (then ``UtteranceEnd``), the last results, ``Metadata`` and a close at
``CloseStream``. Like Deepgram it closes the stream (1011, ``NET-0001``) after
``idle_timeout`` seconds without audio or a KeepAlive. The words of each utterance are
scripted (``utterances``) and spread over the utterance's audio. ``mode`` makes it
misbehave: ``"drop"`` aborts the connection after the first frame, ``"garbage"`` answers
the first frame with a line that is not JSON, ``"stall"`` never answers, ``"stall_mid"``
answers the first frame (``SpeechStarted``) and nothing after; ``status`` refuses every
upgrade with that HTTP status (429 with ``Retry-After: 0``).

:class:`FakeTranscriptions` answers ``POST /v1/audio/transcriptions`` as OpenAI does,
after parsing the multipart form (the WAV file is read back with :mod:`wave`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import wave
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import BodyPartReader, web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voxwire.services.testing import Checks, WarmUp, models_route, peer_of

KEY = "dg-secret-key-123"
SERVER_LOG = logging.getLogger("voxwire.services.testing.deepgram")


def _port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@dataclass
class DeepgramSession:
    """What one connection sent."""

    query: dict[str, str]
    headers: Headers
    frames: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed_by_server: str = ""


class FakeDeepgram:
    """A Deepgram live endpoint on 127.0.0.1:0 (see the module notes)."""

    def __init__(
        self,
        utterances: list[str] | None = None,
        *,
        idle_timeout: float = 10.0,
        interim_every: float = 0.2,
        latency: float = 0.02,
        mode: str = "normal",
        status: int | None = None,
        key: str = KEY,
    ) -> None:
        self.key = key
        self.utterances = list(utterances or ["hello world"])
        self.idle_timeout = idle_timeout
        self.interim_every = interim_every
        self.latency = latency
        self.mode = mode
        self.status = status
        self.retry_after = "0"
        """The ``Retry-After`` of a 429 refusal."""
        self.sessions: list[DeepgramSession] = []
        self.disconnected = asyncio.Event()
        self.disconnected_at: float | None = None  # loop time the connection ended
        self.attempts = 0  # connection attempts (upgrade requests) seen
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/listen"

    async def __aenter__(self) -> FakeDeepgram:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = _port(sock)
        self._server = await serve(
            self._handle, sock=sock, process_request=self._check, logger=SERVER_LOG
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        if self.status is not None:
            response = connection.respond(self.status, "refused\n")
            if self.status == 429:
                response.headers["Retry-After"] = self.retry_after
            return response
        if request.headers.get("Authorization") != f"Token {self.key}":
            return connection.respond(401, "bad credentials\n")
        if not request.path.startswith("/v1/listen"):
            return connection.respond(404, "no such path\n")
        return None

    def _encoding_bytes(self, query: dict[str, str]) -> float:
        width = 1 if query.get("encoding") == "mulaw" else 2
        return width * int(query.get("sample_rate", "16000"))

    async def _send(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        await asyncio.sleep(self.latency)
        await ws.send(json.dumps(message))

    def _results(
        self, start: float, end: float, words: list[str], *, final: bool, finalize: bool
    ) -> dict[str, Any]:
        step = (end - start) / max(1, len(words))
        timed = [
            {
                "word": w.lower().strip(".,?!"),
                "start": round(start + i * step, 3),
                "end": round(start + (i + 1) * step, 3),
                "confidence": 0.9,
                "punctuated_word": w,
            }
            for i, w in enumerate(words)
        ]
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - start, 3),
            "start": round(start, 3),
            "is_final": final,
            "speech_final": final,
            "channel": {
                "alternatives": [
                    {"transcript": " ".join(words), "confidence": 0.93, "words": timed}
                ]
            },
            "metadata": {"request_id": "r1", "model_info": {}, "model_uuid": "u1"},
        }
        if finalize:
            message["from_finalize"] = True
        return message

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        session = DeepgramSession(dict(parse_qsl(urlsplit(request.path).query)), request.headers)
        self.sessions.append(session)
        per_second = self._encoding_bytes(session.query)
        received = 0  # audio bytes
        seg_start = 0.0  # seconds: the start of the utterance being heard
        last_interim = 0.0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.idle_timeout)
                except TimeoutError:
                    session.closed_by_server = "NET-0001"
                    await ws.close(1011, "NET-0001: no audio received")
                    return
                heard = received / per_second
                if self.mode == "stall" or (self.mode == "stall_mid" and received > 0):
                    if isinstance(message, bytes):
                        session.frames.append(message)
                        received += len(message)
                    else:
                        session.texts.append(message)
                    continue  # heard, never answered
                if isinstance(message, bytes):
                    session.frames.append(message)
                    if received == 0:
                        if self.mode == "drop":
                            assert ws.transport is not None
                            ws.transport.abort()
                            return
                        if self.mode == "garbage":
                            await ws.send("<html>not json</html>")
                        await self._send(
                            ws, {"type": "SpeechStarted", "channel": [0], "timestamp": 0.0}
                        )
                    received += len(message)
                    heard = received / per_second
                    if self.interim_every and heard - last_interim >= self.interim_every:
                        last_interim = heard
                        words = self.utterances[0].split()
                        partial = words[: max(1, len(words) // 2)]
                        await self._send(
                            ws,
                            self._results(seg_start, heard, partial, final=False, finalize=False),
                        )
                    continue
                session.texts.append(message)
                kind = json.loads(message).get("type")
                if kind == "KeepAlive":
                    continue
                if kind in ("Finalize", "CloseStream") and heard > seg_start:
                    words = (self.utterances.pop(0) if self.utterances else "").split()
                    await self._send(
                        ws,
                        self._results(
                            seg_start, heard, words, final=True, finalize=kind == "Finalize"
                        ),
                    )
                    if words:
                        await self._send(
                            ws,
                            {
                                "type": "UtteranceEnd",
                                "channel": [0, 1],
                                "last_word_end": round(heard, 3),
                            },
                        )
                    seg_start = heard
                if kind == "CloseStream":
                    await self._send(
                        ws,
                        {
                            "type": "Metadata",
                            "request_id": "r1",
                            "sha256": "0" * 64,
                            "created": "2026-01-01T00:00:00.000Z",
                            "duration": round(heard, 3),
                            "channels": 1,
                        },
                    )
                    await ws.close(1000)
                    return
        except ConnectionClosed:
            pass
        finally:
            self.disconnected_at = asyncio.get_running_loop().time()
            self.disconnected.set()


# --- OpenAI transcriptions ---------------------------------------------------------------


@dataclass
class Upload:
    """One transcription request."""

    path: str
    headers: dict[str, str]
    fields: dict[str, list[str]]
    filename: str
    content_type: str
    rate: int
    samples: int
    peer: tuple[str, int] = ("", 0)  # the client's address: the same on one connection


@dataclass
class Answer:
    """How the server answers one request."""

    text: str = "hello world"
    status: int = 200
    stall: float = 0.0
    body: bytes | None = None  # the raw body instead of the JSON answer
    echo_key: bool = False
    drop: bool = False  # cut the connection halfway through the answer
    stall_mid: bool = False  # send half the answer, then nothing


class FakeTranscriptions(Checks):
    """``POST /v1/audio/transcriptions`` on 127.0.0.1:0, answering scripts in order."""

    def __init__(self, answers: list[Answer] | None = None, *, words: bool = True) -> None:
        self.violations: list[str] = []
        self.answers = list(answers or [])
        self.words = words
        self.uploads: list[Upload] = []
        self.retry_after = "0"
        """The ``Retry-After`` of a 429 answer."""
        self.warmups: list[WarmUp] = []
        """The ``GET /v1/models`` requests (warm-ups), not in :attr:`uploads`."""
        self.handling: list[float] = []  # seconds the server spent on each request
        self.left_at: float | None = None  # loop time a client left a stalled request
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeTranscriptions:
        app = web.Application()
        models_route(app, "/v1/models", self.warmups)
        app.router.add_post("/v1/audio/transcriptions", self._handle)
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
        loop = asyncio.get_running_loop()
        began = loop.time()
        fields: dict[str, list[str]] = {}
        filename = content_type = ""
        rate = samples = 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            name = part.name or ""
            data = await part.read()
            if name == "file":
                filename = part.filename or ""
                content_type = part.headers.get("Content-Type", "")
                with wave.open(io.BytesIO(bytes(data)), "rb") as w:
                    self.expect(w.getnchannels() == 1, "the WAV file must be mono")
                    self.expect(w.getsampwidth() == 2, "the WAV file must be 16-bit")
                    rate, samples = w.getframerate(), w.getnframes()
            else:
                fields.setdefault(name, []).append(bytes(data).decode())
        self.uploads.append(
            Upload(
                request.path,
                dict(request.headers),
                fields,
                filename,
                content_type,
                rate,
                samples,
                peer_of(request),
            )
        )
        answer = self.answers.pop(0) if self.answers else Answer()
        if answer.stall:
            try:
                await asyncio.sleep(answer.stall)
            except asyncio.CancelledError:
                self.left_at = loop.time()  # the client left the request
                raise
        if answer.status != 200:
            message = "rate limited" if answer.status == 429 else "server error"
            if answer.echo_key:
                message += f": {request.headers.get('Authorization')}"
            headers = {"Retry-After": self.retry_after} if answer.status == 429 else None
            return web.json_response(
                {"error": {"message": message}}, status=answer.status, headers=headers
            )
        if answer.drop or answer.stall_mid:
            half = web.StreamResponse(headers={"Content-Length": "100"})
            half.content_type = "application/json"
            await half.prepare(request)
            await half.write(b'{"text": "hel')
            if answer.drop:
                assert request.transport is not None
                request.transport.abort()
            else:
                await asyncio.sleep(3600)
            return half
        if answer.body is not None:
            return web.Response(body=answer.body, content_type="application/json")
        duration = samples / rate if rate else 0.0
        result: dict[str, Any] = {"text": " " + answer.text}
        if fields.get("response_format") == ["verbose_json"]:
            result.update(language="english", duration=duration)
            if self.words and fields.get("timestamp_granularities[]") == ["word"]:
                ws = answer.text.split()
                step = duration / max(1, len(ws))
                result["words"] = [
                    {"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
                    for i, w in enumerate(ws)
                ]
        self.handling.append(loop.time() - began)
        return web.json_response(result)
