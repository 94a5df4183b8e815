"""The recorded OpenAI-compatible streams (fixtures/*.sse), decoded and replayed.

Each file is decoded without a socket (whole, and byte by byte) and replayed by the fake
server byte for byte, in uneven pieces, through :class:`OpenAIChatModel`: the events
must be the same every way, and the ones each server's shape stands for.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the HTTP model clients need aiohttp")

from voxwire.services.base import ChatMessage, LlmEvent, TextDelta, ToolCall, Usage
from voxwire.services.llm_openai import ChatChunkDecoder, OpenAIChatModel, SseParser
from voxwire.services.testing.llm import FakeServer, Script

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = (ChatMessage("user", "What is the weather in Paris?"),)
WEATHER = {"city": "Paris"}
EXPECTED: dict[str, list[LlmEvent]] = {
    "openai": [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCall("call_vx0001", "get_weather", WEATHER),
        ToolCall("call_vx0002", "get_time", {"zone": "CET"}),
        Usage(31, 18),
    ],
    "ollama": [
        TextDelta("Sure."),
        ToolCall("call_ol4a1x", "get_weather", WEATHER),
        ToolCall("call_ol9b2y", "get_time", {"zone": "CET"}),
        Usage(140, 36),
    ],
    "vllm": [
        TextDelta("Checking "),
        TextDelta("now."),
        ToolCall("chatcmpl-tool-77aa", "get_weather", WEATHER),
        Usage(210, 31),
    ],
    "llamacpp": [
        TextDelta("One"),
        TextDelta(" moment."),
        ToolCall("Xq7L2mP9aR4tY1uW", "get_weather", WEATHER),
        Usage(95, 14),
    ],
}


def decode(pieces: list[bytes]) -> list[LlmEvent]:
    parser, decoder = SseParser(), ChatChunkDecoder()
    out: list[LlmEvent] = []
    for piece in pieces:
        for event in parser.feed(piece):
            out += decoder.feed(event)
    for event in parser.end():
        out += decoder.feed(event)
    out += decoder.end()
    assert decoder.done  # every fixture ends with [DONE]
    return out


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_fixture_decodes_to_its_events_in_any_pieces(name: str) -> None:
    raw = (FIXTURES / f"{name}.sse").read_bytes()
    assert decode([raw]) == EXPECTED[name]
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED[name]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_fake_server_replays_the_fixture_byte_for_byte(name: str) -> None:
    raw = (FIXTURES / f"{name}.sse").read_bytes()
    cuts = [0, 7, 300, 301, 1000, len(raw)]
    pieces = [raw[a:b] for a, b in itertools.pairwise(cuts) if raw[a:b]]
    assert b"".join(pieces) == raw

    async def main() -> tuple[list[LlmEvent], int, FakeServer]:
        async with (
            FakeServer([Script(pieces, gap=0.001)]) as server,
            OpenAIChatModel(f"{server.base}/v1", "m") as model,
        ):
            stream = model.complete(EXAMPLE)
            events = [e async for e in stream]
            return events, stream.bytes_received, server

    events, received, server = asyncio.run(main())
    assert events == EXPECTED[name]
    assert received == len(raw)
    assert server.sent == len(pieces)
