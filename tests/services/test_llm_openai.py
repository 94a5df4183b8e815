"""OpenAIChatModel: the Chat Completions streaming client, against local fake servers.

The SSE parser and the chunk decoder are tested without sockets; the client runs against
aiohttp.web servers on 127.0.0.1 (port 0) that stream what OpenAI, Ollama, vLLM and
llama.cpp's server send, including their deviations, errors, stalls and drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

pytest.importorskip("aiohttp", reason="the HTTP model clients need aiohttp")

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services import http
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
from voxwire.services.llm_openai import (
    MAX_LINE,
    ChatChunkDecoder,
    LlmStatusError,
    OpenAIChatModel,
    SseEvent,
    SseParser,
    openai_messages,
    openai_tools,
)
from voxwire.services.retry import NO_RETRY, RetryPolicy
from voxwire.services.testing.llm import FakeServer, Script, chunk, openai_text, sse

T = TypeVar("T")
KEY = "fake-openai-key-SECRET-0123456789"
HELLO = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there"))
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def drain(stream: LlmStream, got: list[LlmEvent]) -> None:
    async for event in stream:
        got.append(event)  # noqa: PERF401 - the events before the error are kept


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


async def collect(stream: LlmStream) -> list[LlmEvent]:
    return [e async for e in stream]


async def against(
    scripts: Sequence[Script],
    messages: Sequence[ChatMessage] = HELLO,
    tools: Sequence[ToolSpec] = (),
    **kwargs: Any,
) -> tuple[list[LlmEvent], FakeServer]:
    async with (
        FakeServer(scripts) as server,
        OpenAIChatModel(f"{server.base}/v1", "fake", **kwargs) as model,
    ):
        events = await collect(model.complete(messages, tools))
    return events, server


async def failing(scripts: Sequence[Script], **kwargs: Any) -> tuple[ServiceError, list[LlmEvent]]:
    got: list[LlmEvent] = []
    async with (
        FakeServer(scripts) as server,
        OpenAIChatModel(f"{server.base}/v1", "fake", **kwargs) as model,
    ):
        with pytest.raises(ServiceError) as info:
            await drain(model.complete(HELLO), got)
    return info.value, got


def text(events: Sequence[LlmEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- the SSE parser ---------------------------------------------------------------------

STREAM = (
    b"\xef\xbb\xbf: a comment\r\n"
    b"data: one\r\n\r\n"
    b"event: delta\n"
    b"data:two\n"
    b"data:  three\n"
    b"id: 7\n"
    b"retry: 100\n"
    b"\n"
    b"junk line\n"
    b"\n"
    b"data: caf\xc3\xa9 \xe2\x80\xa8 ok\r"
    b"\r"
    b"data: [DONE]\n\n"
)
EVENTS = [
    SseEvent("one"),
    SseEvent("two\n three", "delta"),
    SseEvent("caf\u00e9 \u2028 ok"),
    SseEvent("[DONE]"),
]


def test_sse_parser_reads_fields_comments_and_line_ends() -> None:
    parser = SseParser()
    assert parser.feed(STREAM) + parser.end() == EVENTS
    assert parser.comments == 1
    assert parser.ignored_lines == 1


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_sse_parser_gives_the_same_events_for_every_split(cut: int) -> None:
    parser = SseParser()
    assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) + parser.end() == EVENTS


def test_sse_parser_byte_by_byte() -> None:
    parser = SseParser()
    events = [e for i in range(len(STREAM)) for e in parser.feed(STREAM[i : i + 1])]
    assert events + parser.end() == EVENTS


def test_sse_parser_ends_an_unterminated_event_at_the_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\ndata: b") == []
    assert parser.end() == [SseEvent("a\nb")]


def test_sse_parser_bounds_a_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: " + b"x" * (MAX_LINE - 6)) == []
    with pytest.raises(ServiceError) as info:
        parser.feed(b"x")
    assert info.value.reason == "bad_message"


# --- the chunk decoder --------------------------------------------------------------------


def decode(*chunks: object) -> list[LlmEvent]:
    decoder = ChatChunkDecoder()
    out: list[LlmEvent] = []
    for c in chunks:
        out += decoder.feed_data(c if isinstance(c, str) else json.dumps(c))
    return out + decoder.end()


def test_decoder_streams_text_then_usage() -> None:
    events = decode(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        chunk(usage={"prompt_tokens": 9, "completion_tokens": 2}, choices=[]),
        "[DONE]",
    )
    assert events == [TextDelta("Hel"), TextDelta("lo"), Usage(9, 2)]


def test_decoder_assembles_tool_call_fragments_by_index() -> None:
    events = decode(
        chunk({"role": "assistant", "content": None}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": "hang_up", "arguments": ""}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert events == [
        ToolCall("call_a", "get_weather", {"city": "Paris"}),
        ToolCall("call_b", "hang_up", {}),
    ]


def test_decoder_yields_tool_calls_at_finish_before_the_usage_chunk() -> None:
    decoder = ChatChunkDecoder()
    first = chunk(
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}
    )
    assert decoder.feed_data(json.dumps(first)) == []
    assert decoder.feed_data(json.dumps(chunk({}, "tool_calls"))) == [ToolCall("c1", "f", {})]
    assert decoder.finish_reason == "tool_calls"


def test_decoder_takes_ollama_calls_without_index_whole_in_one_chunk() -> None:
    calls = [
        {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
    ]
    events = decode(
        chunk({"role": "assistant", "content": "", "tool_calls": calls}), chunk({}, "stop")
    )
    assert events == [
        ToolCall("call_1", "get_weather", {"city": "Oslo"}),
        ToolCall("call_2", "get_weather", {"city": "Rome"}),
    ]


def test_decoder_splits_calls_that_reuse_an_index_with_a_new_id() -> None:
    events = decode(
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"x": 1}'}}]}),
        chunk(
            {"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": ""}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"y": 2}'}}]}),
        chunk({}, "tool_calls"),
    )
    assert events == [ToolCall("a", "f", {"x": 1}), ToolCall("b", "g", {"y": 2})]


def test_decoder_continues_an_unindexed_call_without_id_or_name() -> None:
    events = decode(
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ": 1}"}}]}),
        "[DONE]",
    )
    assert len(events) == 1
    call = events[0]
    assert isinstance(call, ToolCall)
    assert (call.name, dict(call.arguments)) == ("f", {"a": 1})
    assert call.id.startswith("call_")  # made up where the server gives none


def test_decoder_takes_vllm_usage_with_null_choices() -> None:
    events = decode(
        chunk({"content": "Hi"}, "stop"),
        chunk(usage={"prompt_tokens": 4, "completion_tokens": 1}, choices=None),
        "[DONE]",
    )
    assert events == [TextDelta("Hi"), Usage(4, 1)]


def test_decoder_keeps_the_last_usage_and_accepts_an_end_without_done() -> None:
    events = decode(
        chunk({"content": "a"}, usage={"prompt_tokens": 4, "completion_tokens": 1}),
        chunk({}, "length", usage={"prompt_tokens": 4, "completion_tokens": 2}),
    )
    assert events == [TextDelta("a"), Usage(4, 2)]


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", "nope"])
def test_decoder_rejects_tool_arguments_that_are_not_an_object(arguments: str) -> None:
    decoder = ChatChunkDecoder()
    decoder.feed_data(
        json.dumps(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": {"name": "f", "arguments": arguments}}
                    ]
                }
            )
        )
    )
    with pytest.raises(ServiceError) as info:
        decoder.feed_data(json.dumps(chunk({}, "tool_calls")))
    assert (info.value.service, info.value.reason) == ("llm", "bad_tool_arguments")


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"choices": {"index": 0}}),
        json.dumps({"choices": [{"delta": {"content": 5}}]}),
        json.dumps({"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]}),
        json.dumps({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": 3}]}}]}),
        json.dumps({"choices": [], "usage": {"prompt_tokens": "many"}}),
        json.dumps({"choices": [], "usage": [1]}),
    ],
)
def test_decoder_rejects_malformed_chunks(data: str) -> None:
    with pytest.raises(ServiceError) as info:
        ChatChunkDecoder().feed_data(data)
    assert info.value.reason == "bad_message"


def test_decoder_raises_an_error_object_and_a_cut_stream() -> None:
    with pytest.raises(ServiceError, match="overloaded") as info:
        ChatChunkDecoder().feed_data(json.dumps({"error": {"message": "overloaded"}}))
    assert info.value.reason == "server_error"
    decoder = ChatChunkDecoder()
    decoder.feed_data(json.dumps(chunk({"content": "half"})))
    with pytest.raises(ServiceError) as info:
        decoder.end()
    assert info.value.reason == "closed"


def test_decoder_rejects_a_finished_call_with_no_name() -> None:
    decoder = ChatChunkDecoder()
    decoder.feed_data(json.dumps(chunk({"tool_calls": [{"index": 0, "id": "c"}]})))
    with pytest.raises(ServiceError) as info:
        decoder.feed_data("[DONE]")
    assert info.value.reason == "bad_message"


# --- request bodies -----------------------------------------------------------------------


def test_messages_and_tools_in_the_openai_format() -> None:
    call = ToolCall("call_9", "get_weather", {"city": "Paris"})
    history = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny", tool_call_id="call_9", name="get_weather"),
        ChatMessage("assistant", "Sunny."),
    ]
    assert openai_messages(history) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_9", "name": "get_weather"},
        {"role": "assistant", "content": "Sunny."},
    ]
    assert openai_tools([WEATHER]) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]


def test_request_body_and_bad_arguments() -> None:
    model = OpenAIChatModel(
        "http://127.0.0.1:1/v1/", "m", max_tokens=50, temperature=0.2, extra_body={"seed": 3}
    )
    body = model.request_body(HELLO, [WEATHER])
    assert model.url == "http://127.0.0.1:1/v1/chat/completions"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == (
        "m",
        50,
        0.2,
        3,
    )
    assert "tools" not in model.request_body(HELLO)
    with pytest.raises(ValueError, match="at least one"):
        model.complete([])
    with pytest.raises(TypeError, match=r"messages\[0\] must be a ChatMessage"):
        model.complete([{"role": "user"}])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"tools\[0\] must be a ToolSpec"):
        model.complete(HELLO, [{"name": "f"}])  # type: ignore[list-item]
    for kwargs, match in [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
    ]:
        with pytest.raises(ValueError, match=match):
            OpenAIChatModel("http://x/v1", "m", **kwargs)
    with pytest.raises(ValueError, match="base_url"):
        OpenAIChatModel("localhost:11434", "m")


# --- against the fake servers -------------------------------------------------------------


def test_text_streams_in_order_with_usage_and_the_documented_request() -> None:
    words = ["We ", "open ", "at ", "nine", "."]
    events, server = run(
        lambda: against([Script(openai_text(words), gap=0.01)], tools=[WEATHER], api_key=KEY)
    )
    assert events == [*map(TextDelta, words), Usage(12, 5)]
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == openai_messages(HELLO)
    assert request.body["tools"] == openai_tools([WEATHER])
    assert server.finished


def test_no_key_sends_no_authorization() -> None:
    _, server = run(lambda: against([Script(openai_text(["ok"]))]))
    assert "Authorization" not in server.requests[0].headers


def test_one_model_serves_several_completions() -> None:
    async def main() -> tuple[list[str], FakeServer]:
        # the body's end comes a little after [DONE]
        scripts = [Script(openai_text([f"reply {i}"]), eof_delay=0.05) for i in range(3)]
        async with (
            FakeServer(scripts) as server,
            OpenAIChatModel(f"{server.base}/v1", "fake") as model,
        ):
            replies = []
            for _ in range(3):
                replies.append(text(await collect(model.complete(HELLO))))
                await asyncio.sleep(0.1)  # the caller speaks before the next reply
            return replies, server

    replies, server = run(main)
    assert replies == ["reply 0", "reply 1", "reply 2"]
    # a reply read to its end leaves the connection open for the next one
    assert len({r.peer for r in server.requests}) == 1


def test_ollama_tool_call_without_index_in_one_chunk() -> None:
    whole = {"id": "call_x", "function": {"name": "get_weather", "arguments": '{"city":"Lima"}'}}
    pieces = [
        sse(chunk({"role": "assistant", "content": "", "tool_calls": [whole]})),
        sse(chunk({"role": "assistant", "content": ""}, "stop")),
        sse(chunk(usage={"prompt_tokens": 30, "completion_tokens": 8}, choices=[])),
        sse("[DONE]"),
    ]
    events, _ = run(lambda: against([Script(pieces, gap=0.01)], tools=[WEATHER]))
    assert events == [ToolCall("call_x", "get_weather", {"city": "Lima"}), Usage(30, 8)]


def test_vllm_usage_chunk_with_null_choices_and_fragments() -> None:
    pieces = [
        sse(chunk({"role": "assistant", "content": "Let me check. "})),
        sse(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "chatcmpl-tool-1",
                            "type": "function",
                            "function": {"name": "get_weather"},
                        }
                    ]
                }
            )
        ),
        *(
            sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}))
            for p in ['{"city": ', '"Ber', 'lin"}']
        ),
        sse(chunk({}, "tool_calls")),
        sse(chunk(usage={"prompt_tokens": 40, "completion_tokens": 12}, choices=None)),
        sse("[DONE]"),
    ]
    events, _ = run(lambda: against([Script(pieces, gap=0.005)], tools=[WEATHER]))
    assert events == [
        TextDelta("Let me check. "),
        ToolCall("chatcmpl-tool-1", "get_weather", {"city": "Berlin"}),
        Usage(40, 12),
    ]


def test_llama_cpp_server_usage_on_the_finish_chunk_and_its_tools_error() -> None:
    last = chunk({}, "stop", usage={"prompt_tokens": 7, "completion_tokens": 2})
    last["timings"] = {"predicted_ms": 12.5}
    pieces = [sse(chunk({"content": "Hi"})), sse(chunk({"content": "!"})), sse(last), sse("[DONE]")]
    events, _ = run(lambda: against([Script(pieces)]))
    assert events == [TextDelta("Hi"), TextDelta("!"), Usage(7, 2)]
    body = json.dumps(
        {"error": {"code": 500, "message": "Cannot use tools with stream", "type": "server_error"}}
    )
    error, _ = run(lambda: failing([Script([body.encode()], status=500)], retry=NO_RETRY))
    assert isinstance(error, LlmStatusError)
    assert (error.reason, error.status) == ("status_500", 500)
    assert "Cannot use tools with stream" in str(error)


def test_429_is_typed_with_retry_after() -> None:
    body = b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
    scripts = [Script([body], status=429, headers={"Retry-After": "2"})]
    error, _ = run(lambda: failing(scripts, retry=NO_RETRY))
    assert isinstance(error, LlmStatusError)
    assert (error.service, error.reason, error.retry_after) == ("llm", "status_429", 2.0)
    assert "Rate limit reached" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.reason, copy.retry_after, str(copy)) == (
        LlmStatusError,
        "status_429",
        2.0,
        str(error),
    )


def test_a_429_is_retried_after_its_retry_after_and_a_500_with_backoff() -> None:
    busy = b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
    scripts = [
        Script([busy], status=429, headers={"Retry-After": "0.3"}),
        Script([b"{}"], status=503),
        Script(openai_text(["Hi"])),
    ]
    policy = RetryPolicy(attempts=3, base_delay=0.1, jitter=0.0, budget=2.0)
    events, server = run(lambda: against(scripts, retry=policy))
    assert text(events) == "Hi"
    first, second, third = (r.at for r in server.requests)
    assert second - first >= 0.3  # the server's Retry-After, not the backoff's 0.1 s
    assert third - second >= 0.2  # the second retry's backoff: 0.1 * 2
    assert all(r.body == server.requests[0].body for r in server.requests)


def test_nothing_is_retried_once_the_answer_has_begun() -> None:
    pieces = [sse(chunk({"content": "Hel"}))]
    error, got = run(lambda: failing([Script(pieces, end="drop"), Script(openai_text(["x"]))]))
    assert error.reason == "closed"
    assert got == [TextDelta("Hel")]


def test_the_api_key_is_in_no_error_repr_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    error, _ = run(lambda: failing([Script(status=401, echo_headers=True)], api_key=KEY))
    assert error.reason == "status_401"
    assert "bad key" in str(error)
    assert KEY not in str(error)
    assert KEY not in repr(OpenAIChatModel("http://x/v1", "m", api_key=KEY))
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_a_stall_is_a_timeout() -> None:
    pieces = [sse(chunk({"content": "Hel"}))]
    error, got = run(lambda: failing([Script(pieces, end="stall")], timeout=0.2))
    assert isinstance(error, ServiceTimeout)
    assert (error.reason, error.seconds) == ("timeout", 0.2)
    assert got == [TextDelta("Hel")]


def test_a_stall_before_the_headers_is_a_timeout() -> None:
    error, _ = run(lambda: failing([Script(head_delay=3600.0)], timeout=0.2))
    assert isinstance(error, ServiceTimeout)
    assert error.seconds == 0.2


def test_no_connection_within_connect_timeout_is_a_timeout() -> None:
    # A listener that never accepts, its queue full: the kernel drops the next SYN.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)

        async def main() -> ServiceError:
            async with OpenAIChatModel(
                f"http://127.0.0.1:{port}/v1", "m", connect_timeout=0.2, timeout=5
            ) as model:
                with pytest.raises(ServiceError) as info:
                    await collect(model.complete(HELLO))
            return info.value

        try:
            error = run(main)
        finally:
            for s in fillers:
                s.close()
    assert isinstance(error, ServiceTimeout)
    assert error.seconds == 0.2


def test_a_dropped_connection_is_closed_after_the_text_so_far() -> None:
    pieces = [sse(chunk({"content": "We "})), sse(chunk({"content": "open"}))]
    error, got = run(lambda: failing([Script(pieces, end="drop", gap=0.01)]))
    assert error.reason == "closed"
    assert got == [TextDelta("We "), TextDelta("open")]


def test_a_stream_that_ends_early_is_closed() -> None:
    error, got = run(lambda: failing([Script([sse(chunk({"content": "We "}))])]))
    assert error.reason == "closed"
    assert got == [TextDelta("We ")]


def test_garbage_lines_are_ignored_and_bad_json_is_bad_message() -> None:
    pieces = [
        b": keep-alive\n\n",
        b"garbage without a colon\n",
        b"foo: bar\n\n",
        sse(chunk({"content": "ok"})),
        b"\r\n\r\n",
        *openai_text([])[1:],
    ]

    async def main() -> tuple[list[LlmEvent], int]:
        async with (
            FakeServer([Script(pieces)]) as server,
            OpenAIChatModel(f"{server.base}/v1", "fake") as model,
        ):
            stream = model.complete(HELLO)
            events = await collect(stream)
            return events, stream.ignored_lines

    events, ignored = run(main)
    assert events == [TextDelta("ok"), Usage(12, 5)]
    assert ignored == 2
    error, got = run(lambda: failing([Script([sse(chunk({"content": "a"})), b"data: {nope\n\n"])]))
    assert error.reason == "bad_message"
    assert got == [TextDelta("a")]


def test_a_json_answer_is_typed() -> None:
    whole = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Hi"}}]})
    error, _ = run(lambda: failing([Script([whole.encode()], json=True)]))
    assert error.reason == "bad_message"
    assert "not a text/event-stream" in str(error)
    error, _ = run(lambda: failing([Script([b'{"error": "model not found"}'], json=True)]))
    assert error.reason == "server_error"
    assert "model not found" in str(error)


def test_without_aiohttp_the_constructor_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_aiohttp(name: str) -> object:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(http.importlib, "import_module", no_aiohttp)
    with pytest.raises(ServiceError, match="pip install aiohttp") as info:
        OpenAIChatModel("http://x/v1", "m")
    assert info.value.reason == "unavailable"


def test_an_error_inside_the_stream_is_a_server_error() -> None:
    pieces = [sse(chunk({"content": "a"})), sse({"error": {"message": "model crashed"}})]
    error, _ = run(lambda: failing([Script(pieces)]))
    assert error.reason == "server_error"
    assert "model crashed" in str(error)


def test_a_refused_connection_is_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at once: nothing listens there

    async def main() -> ServiceError:
        async with OpenAIChatModel(f"http://127.0.0.1:{port}/v1", "m", api_key=KEY) as model:
            with pytest.raises(ServiceError) as info:
                await collect(model.complete(HELLO))
        return info.value

    error = run(main)
    assert error.reason == "connect"
    assert KEY not in str(error)


def test_aclose_mid_stream_disconnects_and_the_server_stops() -> None:
    pieces = openai_text([f"w{i} " for i in range(400)])

    async def main() -> tuple[list[LlmEvent], FakeServer, float]:
        async with (
            FakeServer([Script(pieces, gap=0.02)]) as server,
            OpenAIChatModel(f"{server.base}/v1", "fake") as model,
        ):
            stream = model.complete(HELLO)
            got = []
            async for event in stream:
                got.append(event)
                if len(got) == 3:
                    break
            closed_at = asyncio.get_running_loop().time()
            await stream.aclose()
            await asyncio.wait_for(server.disconnected.wait(), 2.0)
            after = [e async for e in stream]
            assert after == []
        return got, server, closed_at

    got, server, closed_at = run(main)
    assert got == [TextDelta("w0 "), TextDelta("w1 "), TextDelta("w2 ")]
    assert server.disconnected_at is not None
    # The script would take 8 s to the end; the server saw the client leave long before.
    assert server.disconnected_at - closed_at < 2.0
    assert server.sent < server.total
    assert not server.finished


def test_aclose_before_the_answer_and_outside_a_loop() -> None:
    async def main() -> FakeServer:
        async with (
            FakeServer([Script([3600.0])]) as server,
            OpenAIChatModel(f"{server.base}/v1", "fake") as model,
        ):
            stream = model.complete(HELLO)
            while not server.requests:
                await asyncio.sleep(0.005)
            await stream.aclose()
            assert [e async for e in stream] == []
            await asyncio.wait_for(server.disconnected.wait(), 2.0)
        return server

    assert run(main).disconnected.is_set()
    model = OpenAIChatModel("http://127.0.0.1:1/v1", "m")
    stream = model.complete(HELLO)  # no loop: the request waits for the first iteration
    assert isinstance(stream, LlmStream)
    assert isinstance(model, LanguageModel)


# --- as the model of a voice agent ----------------------------------------------------------


def test_the_client_as_a_voice_agents_model_with_a_tool_round_trip() -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    pytest.importorskip("websockets", reason="the WebSocket server needs websockets")
    from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
    from voxwire.agents.server import serve_agent
    from voxwire.aio import Call
    from voxwire.services.fake import FakeStt, FakeTts
    from voxwire.sim import PROVIDERS, CallPlan, place_call, synthesize
    from voxwire.voice.tools import tool

    booked: list[str] = []

    @tool
    def book(day: str) -> str:
        """Book an appointment.

        Parameters
        ----------
        day : str
            The day.
        """
        booked.append(day)
        return f"booked for {day}"

    call_piece = {
        "index": 0,
        "id": "call_7",
        "type": "function",
        "function": {"name": "book", "arguments": '{"day": "monday"}'},
    }
    scripts = [
        Script(
            [
                sse(chunk({"role": "assistant", "content": "One moment. "})),
                sse(chunk({"tool_calls": [call_piece]})),
                sse(chunk({}, "tool_calls")),
                sse("[DONE]"),
            ],
            gap=0.01,
        ),
        Script(openai_text(["Done, ", "booked for monday."]), gap=0.01),
    ]
    speech = synthesize("Book me for Monday please.", PROVIDERS["twilio"].default_rate, seed=1)

    async def main() -> tuple[list[AgentCallResult], FakeServer]:
        results: list[AgentCallResult] = []
        async with (
            FakeServer(scripts) as server,
            OpenAIChatModel(f"{server.base}/v1", "fake", api_key=KEY) as model,
        ):

            def on_end(call: Call, result: AgentCallResult) -> None:
                results.append(result)

            agent = VoiceAgent(
                FakeStt(["book me for monday"]), model, FakeTts(), tools=[book], on_end=on_end
            )
            stop = asyncio.Event()
            urls: list[str] = []
            serving = asyncio.create_task(
                serve_agent(
                    agent,
                    "twilio",
                    "127.0.0.1",
                    0,
                    pipeline_rate=agent.pipeline_rate,
                    stop=stop,
                    ready=urls.append,
                )
            )
            try:
                while not urls and not serving.done():
                    await asyncio.sleep(0.01)
                assert urls, "the agent server did not start"
                await place_call(urls[0], "twilio", CallPlan(speech, quiet=1.0))
                while not results:
                    await asyncio.sleep(0.02)
            finally:
                stop.set()
                await asyncio.wait_for(serving, 10)
        return results, server

    (result,), server = run(main, timeout=40)
    assert booked == ["monday"]
    messages = result.history.messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls == (ToolCall("call_7", "book", {"day": "monday"}),)
    assert messages[-1].content == "Done, booked for monday."
    # the second request carried the call and its result in the OpenAI format
    sent = server.requests[1].body["messages"]
    assert sent[-2]["tool_calls"][0]["function"] == {
        "name": "book",
        "arguments": '{"day":"monday"}',
    }
    assert sent[-1] == {
        "role": "tool",
        "content": "booked for monday",
        "tool_call_id": "call_7",
        "name": "book",
    }
    assert server.requests[0].body["tools"][0]["function"]["name"] == "book"
