"""AnthropicModel: the Messages API streaming client, against a local fake server.

The event decoder and the message mapping are tested without sockets; the client runs
against an aiohttp.web server on 127.0.0.1 (port 0) that streams the documented events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

pytest.importorskip("aiohttp", reason="the HTTP model clients need aiohttp")

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import (
    ChatMessage,
    LanguageModel,
    LlmEvent,
    LlmStream,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from voxwire.services.llm_anthropic import (
    ANTHROPIC_VERSION,
    AnthropicEventDecoder,
    AnthropicModel,
    anthropic_messages,
    anthropic_tools,
)
from voxwire.services.llm_openai import LlmStatusError, SseParser
from voxwire.services.retry import NO_RETRY
from voxwire.services.testing.llm import (
    FakeServer,
    Script,
    anthropic_end,
    anthropic_event,
    anthropic_start,
    anthropic_text_block,
    anthropic_tool_block,
)

T = TypeVar("T")
KEY = "fake-anthropic-key-SECRET-987654321"
HELLO = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there"))
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)


async def drain(stream: LlmStream, got: list[LlmEvent]) -> None:
    async for event in stream:
        got.append(event)  # noqa: PERF401 - the events before the error are kept


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


async def against(
    scripts: Sequence[Script], tools: Sequence[ToolSpec] = (), **kwargs: Any
) -> tuple[list[LlmEvent], FakeServer]:
    async with (
        FakeServer(scripts) as server,
        AnthropicModel("claude-fake", api_key=KEY, base_url=server.base, **kwargs) as m,
    ):
        events = [e async for e in m.complete(HELLO, tools)]
    return events, server


async def failing(scripts: Sequence[Script], **kwargs: Any) -> tuple[ServiceError, list[LlmEvent]]:
    got: list[LlmEvent] = []
    async with (
        FakeServer(scripts) as server,
        AnthropicModel("claude-fake", api_key=KEY, base_url=server.base, **kwargs) as m,
    ):
        with pytest.raises(ServiceError) as info:
            await drain(m.complete(HELLO), got)
    return info.value, got


def decode(pieces: Sequence[bytes]) -> list[LlmEvent]:
    parser, decoder = SseParser(), AnthropicEventDecoder()
    out: list[LlmEvent] = []
    for event in parser.feed(b"".join(pieces)) + parser.end():
        out += decoder.feed(event)
    return out + decoder.end()


TOOL_REPLY = [
    anthropic_start(input_tokens=50),
    anthropic_event({"type": "ping"}),
    *anthropic_text_block(0, ["Let me ", "check."]),
    *anthropic_tool_block(1, "toolu_01", "get_weather", ['{"ci', 'ty": "Par', 'is"}']),
    *anthropic_tool_block(2, "toolu_02", "hang_up", []),
    *anthropic_end("tool_use", output_tokens=40),
]


# --- without sockets ----------------------------------------------------------------------


def test_decoder_streams_text_tool_calls_and_usage() -> None:
    assert decode(TOOL_REPLY) == [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCall("toolu_01", "get_weather", {"city": "Paris"}),
        ToolCall("toolu_02", "hang_up", {}),
        Usage(50, 40),
    ]


def test_decoder_yields_a_call_at_its_block_stop() -> None:
    parser, decoder = SseParser(), AnthropicEventDecoder()
    events = parser.feed(b"".join([anthropic_start(), *anthropic_tool_block(0, "t", "f", ["{}"])]))
    out = [decoder.feed(e) for e in events]
    assert out[-1] == [ToolCall("t", "f", {})]
    assert all(o == [] for o in out[:-1])


def test_decoder_takes_a_tool_input_given_whole_at_the_block_start() -> None:
    start = anthropic_event(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        }
    )
    stop = anthropic_event({"type": "content_block_stop", "index": 0})
    events = decode([anthropic_start(), start, stop, *anthropic_end("tool_use")])
    assert events == [ToolCall("t", "f", {"a": 1}), Usage(25, 15)]


def test_decoder_ignores_thinking_and_unknown_events_and_counts_cache_tokens() -> None:
    start = anthropic_event(
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 20,
                    "output_tokens": 1,
                }
            },
        }
    )
    thinking = [
        anthropic_event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            }
        ),
        anthropic_event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hm"},
            }
        ),
        anthropic_event({"type": "content_block_stop", "index": 0}),
        anthropic_event({"type": "brand_new_event", "x": 1}),
    ]
    events = decode(
        [start, *thinking, *anthropic_text_block(1, ["Hi"]), *anthropic_end(output_tokens=3)]
    )
    assert events == [TextDelta("Hi"), Usage(125, 3)]


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([anthropic_start(), b"event: content_block_delta\ndata: {oops\n\n"], "bad_message"),
        (
            [
                anthropic_start(),
                anthropic_event(
                    {
                        "type": "content_block_delta",
                        "index": 3,
                        "delta": {"type": "text_delta", "text": "x"},
                    }
                ),
            ],
            "bad_message",
        ),
        ([anthropic_start(), *anthropic_tool_block(0, "t", "f", ['{"a": '])], "bad_tool_arguments"),
        ([anthropic_start(), *anthropic_tool_block(0, "t", "f", ["[1]"])], "bad_tool_arguments"),
        (
            [
                anthropic_start(),
                anthropic_event(
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    }
                ),
            ],
            "overloaded",
        ),
        (
            [anthropic_event({"type": "error", "error": {"type": "api_error", "message": "boom"}})],
            "server_error",
        ),
        ([anthropic_start(), *anthropic_text_block(0, ["cut"])], "closed"),
    ],
)
def test_decoder_errors_are_typed(pieces: list[bytes], reason: str) -> None:
    with pytest.raises(ServiceError) as info:
        decode(pieces)
    assert (info.value.service, info.value.reason) == ("llm", reason)


def test_messages_system_tool_use_and_tool_results() -> None:
    a = ToolCall("toolu_1", "get_weather", {"city": "Paris"})
    b = ToolCall("toolu_2", "get_weather", {"city": "Rome"})
    history = [
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "Weather in Paris and Rome?"),
        ChatMessage("assistant", "Checking.", tool_calls=(a, b)),
        ChatMessage("tool", "sunny", tool_call_id="toolu_1", name="get_weather"),
        ChatMessage("tool", "rain", tool_call_id="toolu_2", name="get_weather"),
        ChatMessage("user", "And tomorrow?"),
        ChatMessage("assistant", ""),
    ]
    system, messages = anthropic_messages(history)
    assert system == "Be brief.\n\nBe kind."
    assert messages == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    assert anthropic_tools([WEATHER]) == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": dict(WEATHER.parameters),
        }
    ]


def test_bad_arguments() -> None:
    model = AnthropicModel("claude-fake", api_key=KEY, base_url="http://127.0.0.1:1")
    assert isinstance(model, LanguageModel)
    assert model.url == "http://127.0.0.1:1/v1/messages"
    assert KEY not in repr(model)
    with pytest.raises(ValueError, match="user or assistant"):
        model.complete([ChatMessage("system", "only a prompt")])
    for kwargs, match in [
        ({"api_key": ""}, "api_key"),
        ({"api_key": KEY, "max_tokens": 0}, "max_tokens"),
        ({"api_key": KEY, "temperature": 1.5}, "temperature"),
        ({"api_key": KEY, "base_url": "api.anthropic.com"}, "base_url"),
    ]:
        with pytest.raises(ValueError, match=match):
            AnthropicModel("claude-fake", **kwargs)


# --- against the fake server --------------------------------------------------------------


def test_streams_against_the_fake_server_with_the_documented_request() -> None:
    events, server = run(
        lambda: against([Script(TOOL_REPLY, gap=0.01)], tools=[WEATHER], temperature=0.5)
    )
    assert events == decode(TOOL_REPLY)
    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "Authorization" not in request.headers
    assert request.body == {
        "model": "claude-fake",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi there"}],
        "stream": True,
        "system": "Be brief.",
        "tools": anthropic_tools([WEATHER]),
        "temperature": 0.5,
    }


def test_http_errors_are_typed_without_the_key() -> None:
    body = json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ).encode()
    error, _ = run(lambda: failing([Script([body], status=529)], retry=NO_RETRY))
    assert isinstance(error, LlmStatusError)
    assert error.reason == "status_529"
    assert "overloaded_error: Overloaded" in str(error)
    error, _ = run(lambda: failing([Script(status=401, echo_headers=True)]))
    assert error.reason == "status_401"
    assert KEY not in str(error)


def test_an_error_event_mid_stream_and_a_stall() -> None:
    pieces = [
        anthropic_start(),
        *anthropic_text_block(0, ["Hel"])[:2],
        anthropic_event(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ),
    ]
    error, got = run(lambda: failing([Script(pieces)]))
    assert (error.reason, got) == ("overloaded", [TextDelta("Hel")])
    error, got = run(lambda: failing([Script(pieces[:3], end="stall")], timeout=0.2))
    assert isinstance(error, ServiceTimeout)
    assert got == [TextDelta("Hel")]


def test_aclose_mid_stream_disconnects() -> None:
    words = [f"w{i} " for i in range(300)]
    pieces = [anthropic_start(), *anthropic_text_block(0, words), *anthropic_end()]

    async def main() -> FakeServer:
        async with (
            FakeServer([Script(pieces, gap=0.02)]) as server,
            AnthropicModel("claude-fake", api_key=KEY, base_url=server.base) as m,
        ):
            stream = m.complete(HELLO)
            async for event in stream:
                assert event == TextDelta("w0 ")
                break
            await stream.aclose()
            await asyncio.wait_for(server.disconnected.wait(), 2.0)
        return server

    server = run(main)
    assert server.sent < server.total
    assert not server.finished
