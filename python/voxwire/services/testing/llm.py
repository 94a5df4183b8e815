"""Local fake LLM servers (Chat Completions, Anthropic Messages): real sockets on 127.0.0.1.

A :class:`FakeServer` answers each POST with the next :class:`Script`: a status, headers,
and the body as pieces written one by one with pauses between them (as a server that
generates tokens does), then the end of the body, or a dropped connection, or a stall.
It records each request (path, headers, JSON body) and sees a client that leaves:
``disconnected`` is set, and ``sent`` says how many pieces went out before.

The builders make the bodies of the documented protocols: :func:`openai_sse` for Chat
Completions chunks (as OpenAI, Ollama, vLLM and llama.cpp send them) and
:func:`anthropic_sse` for the Messages API's events.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voxwire.services.testing import WarmUp, models_route

Piece = bytes | float
"""Bytes to write, or seconds to wait before the next piece."""


@dataclass
class Script:
    """How the server answers one request."""

    pieces: Sequence[Piece] = ()
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    end: str = "eof"  # "eof" ends the body, "drop" aborts the connection, "stall" waits
    gap: float = 0.0  # seconds between pieces, on top of explicit waits
    echo_headers: bool = False  # answer the request's headers in the error body
    head_delay: float = 0.0  # seconds before the status line and headers
    json: bool = False  # answer the pieces as one application/json body
    eof_delay: float = 0.0  # seconds between the last piece and the body's end


@dataclass
class Recorded:
    """One request the server took."""

    path: str
    headers: dict[str, str]
    body: Any
    peer: tuple[str, int]  # the client's address: the same for requests on one connection
    at: float = 0.0  # the loop time it arrived


class FakeServer:
    """An aiohttp.web server on 127.0.0.1:0 answering POSTs with scripts, in order."""

    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = list(scripts)
        self.requests: list[Recorded] = []
        self.warmups: list[WarmUp] = []
        """The ``GET .../models`` requests (warm-ups), not in :attr:`requests`."""
        self.sent = 0
        self.total = 0
        self.disconnected = asyncio.Event()
        self.disconnected_at: float | None = None
        self.finished = False
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeServer:
        app = web.Application()
        models_route(app, "/{tail:.*}/models", self.warmups)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _seen_leaving(self) -> None:
        if not self.disconnected.is_set():
            self.disconnected_at = asyncio.get_running_loop().time()
            self.disconnected.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        self.requests.append(
            Recorded(
                request.path,
                dict(request.headers),
                body,
                tuple(peer),
                asyncio.get_running_loop().time(),
            )
        )
        if not self.scripts:
            return web.json_response(
                {"error": {"message": "the fake server has no script left for this request"}},
                status=500,
            )
        script = self.scripts.pop(0)
        if script.head_delay:
            try:
                await asyncio.sleep(script.head_delay)
            except asyncio.CancelledError:
                self._seen_leaving()
                raise
        if script.status != 200 or script.json:
            text = b"".join(p for p in script.pieces if isinstance(p, bytes))
            if script.echo_headers:
                echoed = {"error": {"message": f"bad key: {dict(request.headers)}"}}
                text = json.dumps(echoed).encode()
            return web.Response(
                status=script.status,
                body=text,
                headers=script.headers,
                content_type="application/json",
            )
        response = web.StreamResponse(headers=script.headers)
        response.content_type = "text/event-stream"
        self.total = sum(isinstance(p, bytes) for p in script.pieces)
        try:
            await response.prepare(request)
            for piece in script.pieces:
                if isinstance(piece, float):
                    await asyncio.sleep(piece)
                    continue
                if script.gap:
                    await asyncio.sleep(script.gap)
                await response.write(piece)
                self.sent += 1
            if script.end == "drop":
                assert request.transport is not None
                request.transport.abort()
                return response
            if script.end == "stall":
                await asyncio.sleep(3600)
            if script.eof_delay:
                await asyncio.sleep(script.eof_delay)
            await response.write_eof()
            self.finished = True
        except (asyncio.CancelledError, ConnectionResetError):
            self._seen_leaving()
            raise
        return response


# --- Chat Completions bodies ---------------------------------------------------------------


def sse(data: object, event: str | None = None) -> bytes:
    """One server-sent event of JSON (or of a string as it is)."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    *,
    choices: Any = "one",
) -> dict[str, Any]:
    """A chat.completion.chunk object."""
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "usage": usage,
    }
    if choices == "one":
        out["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    else:
        out["choices"] = choices
    return out


def openai_text(words: Sequence[str], usage: tuple[int, int] = (12, 5)) -> list[bytes]:
    """OpenAI's stream of a text reply: role, one chunk per piece, stop, usage, [DONE]."""
    out = [sse(chunk({"role": "assistant", "content": ""}))]
    out += [sse(chunk({"content": w})) for w in words]
    out.append(sse(chunk({}, "stop")))
    out.append(
        sse(
            chunk(
                usage={
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
                choices=[],
            )
        )
    )
    out.append(sse("[DONE]"))
    return out


# --- Messages API bodies -------------------------------------------------------------------


def anthropic_event(data: dict[str, Any]) -> bytes:
    """One Messages API event: ``event: TYPE`` and its JSON data."""
    return sse(data, event=str(data["type"]))


def anthropic_start(input_tokens: int = 25) -> bytes:
    return anthropic_event(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-fake",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
    )


def anthropic_end(stop_reason: str = "end_turn", output_tokens: int = 15) -> list[bytes]:
    return [
        anthropic_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        ),
        anthropic_event({"type": "message_stop"}),
    ]


def anthropic_text_block(index: int, pieces: Sequence[str]) -> list[bytes]:
    out = [
        anthropic_event(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        )
    ]
    out += [
        anthropic_event(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": p},
            }
        )
        for p in pieces
    ]
    out.append(anthropic_event({"type": "content_block_stop", "index": index}))
    return out


def anthropic_tool_block(
    index: int, call_id: str, name: str, json_pieces: Sequence[str]
) -> list[bytes]:
    out = [
        anthropic_event(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            }
        )
    ]
    out += [
        anthropic_event(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
        )
        for p in json_pieces
    ]
    out.append(anthropic_event({"type": "content_block_stop", "index": index}))
    return out
