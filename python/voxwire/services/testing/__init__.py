"""Local fake servers of the speech and language services, for testing agents offline.

Each fake listens on 127.0.0.1 (port 0), speaks its vendor's documented wire protocol,
including its error shapes, records what the client sent, and can be told to misbehave
(HTTP 429 and 500, a dropped connection, a stall before the first byte or in the middle,
a malformed frame). Point a voxwire client, or any other client of that API, at one::

    from voxwire.services.llm_openai import OpenAIChatModel
    from voxwire.services.testing.llm import FakeServer, Script, openai_text

    async with FakeServer([Script(openai_text(["Hello", " there."]))]) as server:
        model = OpenAIChatModel(f"{server.base}/v1", "any-model")
        ...

The modules need what the clients need (aiohttp, and websockets for the WebSocket
fakes); importing this package imports neither:

:mod:`voxwire.services.testing.llm`
    :class:`~voxwire.services.testing.llm.FakeServer` answers each POST with the next
    :class:`~voxwire.services.testing.llm.Script` (status, headers, body pieces with
    pauses, then the end, a drop or a stall); builders for Chat Completions chunks
    (OpenAI, Ollama, vLLM, llama.cpp server) and Anthropic Messages events.
:mod:`voxwire.services.testing.stt`
    :class:`~voxwire.services.testing.stt.FakeDeepgram` (the live ``/v1/listen``
    WebSocket: KeepAlive rule, Finalize, CloseStream, interim and final results) and
    :class:`~voxwire.services.testing.stt.FakeTranscriptions` (OpenAI's
    ``/audio/transcriptions``).
:mod:`voxwire.services.testing.tts`
    :class:`~voxwire.services.testing.tts.ElevenLabsFake` (multi-context WebSocket with
    alignment), :class:`~voxwire.services.testing.tts.CartesiaFake` (contexts, word
    timestamps, cancel) and :class:`~voxwire.services.testing.tts.OpenAISpeechFake`
    (``/audio/speech``, raw PCM or SSE).

A fake that sees the client break the protocol records it in ``violations`` (a test
asserts it stays empty) and answers as the vendor would to a bad request: the HTTP fakes
with a 500, the WebSocket fakes by closing the connection.

The HTTP fakes also answer ``GET .../models`` (the request an HTTP client makes in
``prepare()`` to open its connection before the first turn) and record it in
``warmups``; each request records the client's address (``peer``), the same for the
requests of one connection.

The fakes are for tests: they keep every request and message they see in memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

__all__ = ["Checks", "ProtocolViolation", "WarmUp", "models_route", "peer_of"]


@dataclass(frozen=True)
class WarmUp:
    """One ``GET .../models`` an HTTP fake took (a client opening its connection early)."""

    path: str
    headers: dict[str, str]
    peer: tuple[str, int]  # the client's address: the same for requests on one connection
    at: float  # the loop time it arrived


def peer_of(request: Any) -> tuple[str, int]:
    """The client's address of an aiohttp request (the same for one connection)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return (str(peer[0]), int(peer[1])) if peer else ("", 0)


def models_route(app: Any, path: str, seen: list[WarmUp]) -> None:
    """Answer ``GET path`` on the aiohttp ``app`` with an empty OpenAI-style model list,
    recording each request in ``seen`` (the clients' warm-up request)."""
    from aiohttp import web

    async def models(request: web.Request) -> web.Response:
        seen.append(
            WarmUp(
                request.path,
                dict(request.headers),
                peer_of(request),
                asyncio.get_running_loop().time(),
            )
        )
        return web.json_response({"object": "list", "data": []})

    app.router.add_get(path, models)


class ProtocolViolation(AssertionError):
    """A fake server saw the client break the vendor's protocol."""


class Checks:
    """``expect()`` for the fakes: a failed check is recorded in ``violations`` and raised."""

    violations: list[str]

    def expect(self, ok: bool, what: object) -> None:
        """Raise :class:`ProtocolViolation` (and record it) unless ``ok``."""
        if not ok:
            text = f"the client broke the protocol: {what!r}"[:500]
            self.violations.append(text)
            raise ProtocolViolation(text)
