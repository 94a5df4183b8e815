"""Anthropic's Messages API, streamed, as a language model.

:class:`AnthropicModel` implements :class:`~voxwire.services.base.LanguageModel` over
``POST {base_url}/v1/messages`` with ``"stream": true``. It needs aiohttp.

The wire protocol (Anthropic API documentation: "Messages",
https://docs.anthropic.com/en/api/messages, "Streaming Messages",
https://platform.claude.com/docs/build-with-claude/streaming, and "Tool use"):

- Headers ``x-api-key`` and ``anthropic-version`` (``2023-06-01``); the body has
  ``model``, ``max_tokens`` (required), ``messages``, the system prompt as the top-level
  ``system`` string, and ``tools`` as ``{"name", "description", "input_schema"}``.
- Messages alternate ``user`` and ``assistant``. An assistant's tool calls are
  ``tool_use`` content blocks (``id``, ``name``, ``input``); their results go back in the
  next ``user`` message as ``tool_result`` blocks (``tool_use_id``, ``content``). Here the
  ``tool`` messages that follow one another become one user message, and messages of the
  same role in a row are joined into one.
- The answer is server-sent events, each ``event: TYPE`` with a JSON ``data`` whose
  ``type`` is the same: ``message_start`` (``message.usage.input_tokens``), then per
  content block ``content_block_start`` (a ``text`` or ``tool_use`` block, with its
  ``index``), ``content_block_delta`` (``text_delta`` with ``text``, or
  ``input_json_delta`` with ``partial_json``, pieces of the tool input's JSON text) and
  ``content_block_stop``; then ``message_delta`` (``delta.stop_reason``, ``usage.
  output_tokens``, a running total) and ``message_stop``. ``ping`` events may come
  anywhere; an ``error`` event (``{"type": "error", "error": {"type":
  "overloaded_error", "message"}}``) may end the stream. Event and block types not
  listed (``thinking`` blocks, new events) are ignored, as the documentation asks.

A :class:`~voxwire.services.base.ToolCall` is yielded at its block's
``content_block_stop``; :class:`~voxwire.services.base.Usage` at ``message_stop``, its
``prompt_tokens`` the input tokens with the cached ones (``cache_read_input_tokens``,
``cache_creation_input_tokens``) added.

Errors are those of :mod:`voxwire.services.llm_openai` (``status_NNN``, ``connect``,
``timeout``, ``closed``, ``bad_message``, ``bad_tool_arguments``), and for an ``error``
event ``overloaded`` (``overloaded_error``) or ``server_error``. The stream is
:class:`~voxwire.services.llm_openai.SseLlmStream`: ``aclose`` closes the connection at
once. The API key is never logged nor put in an error or a ``repr``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from voxwire.errors import ServiceError
from voxwire.services.base import (
    ChatMessage,
    LlmEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from voxwire.services.http import SseEvent
from voxwire.services.llm_openai import (
    HttpLlmModel,
    SseLlmStream,
    _check,
    _check_tools,
    parse_tool_arguments,
)
from voxwire.services.retry import RetryPolicy

__all__ = [
    "ANTHROPIC_VERSION",
    "AnthropicEventDecoder",
    "AnthropicModel",
    "anthropic_messages",
    "anthropic_tools",
]

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The ``anthropic-version`` header sent by default."""


def _bad(message: str) -> ServiceError:
    return ServiceError("llm", "bad_message", f"llm: {message}")


def anthropic_messages(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[dict[str, Any]]]:
    """The history as the Messages API's ``system`` text and ``messages``.

    System messages are joined (a blank line between) into ``system``. A ``tool``
    message becomes a ``tool_result`` block of a user message; an assistant's tool calls
    ``tool_use`` blocks after its text. Messages of one role in a row are merged into one
    message of content blocks, as the API wants the roles to alternate. Empty text is
    left out (the API refuses empty text blocks).

    Raises
    ------
    TypeError
        An entry is not a :class:`~voxwire.services.base.ChatMessage`.
    ValueError
        ``messages`` is empty or a role is unknown.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in _check(messages):
        if m.role == "system":
            if m.content:
                system.append(m.content)
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            role = "user"
            blocks.append(
                {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            )
        else:
            role = m.role
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            if m.role == "assistant":
                blocks.extend(
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                    for c in m.tool_calls
                )
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for message in out:
        content = message["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            message["content"] = content[0]["text"]
    return "\n\n".join(system), out


def anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tools in the Messages API format (``name``, ``description``, ``input_schema``).

    Raises
    ------
    TypeError
        An entry is not a :class:`~voxwire.services.base.ToolSpec`.
    """
    return [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in _check_tools(tools)
    ]


@dataclass(slots=True)
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    json: list[str] = field(default_factory=list)
    input: Mapping[str, Any] | None = None


def _int(value: object, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{where} must be an int >= 0, got {value!r}")
    return value


class AnthropicEventDecoder:
    """Messages API stream events to :data:`~voxwire.services.base.LlmEvent` (sans-I/O).

    Feed each server-sent event; see the module notes for what comes out when.
    """

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._input_tokens = 0
        self._output_tokens = 0
        self._started = False
        self._ended = False
        self.done = False
        """``message_stop`` was seen."""
        self.stop_reason: str | None = None
        """``end_turn``, ``tool_use``, ``max_tokens``, ... from ``message_delta``."""
        self.ignored = 0
        """Events and blocks of types this decoder does not use (thinking, new types)."""

    def feed(self, event: SseEvent) -> list[LlmEvent]:
        """Decode one event.

        Raises
        ------
        ServiceError
            ``bad_message`` for data that is not JSON or not of the event's shape,
            ``bad_tool_arguments`` for tool input that is not a JSON object,
            ``overloaded`` / ``server_error`` for an ``error`` event.
        """
        if self.done:
            return []
        try:
            data = json.loads(event.data)
        except ValueError:
            raise _bad(f"an event's data is not JSON: {event.data[:200]!r}") from None
        if not isinstance(data, dict):
            raise _bad(f"an event's data must be a JSON object, got {type(data).__name__}")
        kind = data.get("type", event.event)
        if kind == "ping":
            return []
        if kind == "error":
            error = data.get("error")
            error = error if isinstance(error, dict) else {}
            etype = str(error.get("type", ""))
            reason = "overloaded" if etype == "overloaded_error" else "server_error"
            raise ServiceError(
                "llm", reason, f"llm: the server sent an error: {etype}: {error.get('message', '')}"
            )
        if kind == "message_start":
            return self._message_start(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
            self._usage(data.get("usage"), "message_delta.usage")
            return []
        if kind == "message_stop":
            self.done = True
            return self.end()
        self.ignored += 1
        return []

    def end(self) -> list[LlmEvent]:
        """The stream ended: the usage, or ``closed`` if ``message_stop`` never came."""
        if self._ended:
            return []
        if not self.done:
            raise ServiceError("llm", "closed", "llm: the stream ended before message_stop")
        self._ended = True
        return [Usage(self._input_tokens, self._output_tokens)]

    def _usage(self, usage: object, where: str) -> None:
        if usage is None:
            return
        if not isinstance(usage, dict):
            raise _bad(f"{where} must be an object, got {type(usage).__name__}")
        prompt = sum(
            _int(usage.get(k), f"{where}.{k}")
            for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        )
        if prompt:  # message_delta repeats input counts only on some gateways
            self._input_tokens = prompt
        if "output_tokens" in usage:
            self._output_tokens = _int(usage["output_tokens"], f"{where}.output_tokens")

    def _message_start(self, data: dict[str, Any]) -> list[LlmEvent]:
        message = data.get("message")
        if not isinstance(message, dict):
            raise _bad("message_start has no message object")
        self._started = True
        self._usage(message.get("usage"), "message.usage")
        return []

    def _index(self, data: dict[str, Any]) -> int:
        index = data.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise _bad(f"{data.get('type')}.index must be an int >= 0, got {index!r}")
        return index

    def _block_start(self, data: dict[str, Any]) -> list[LlmEvent]:
        index = self._index(data)
        block = data.get("content_block")
        if not isinstance(block, dict):
            raise _bad("content_block_start has no content_block object")
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = _Block("text")
            text = block.get("text", "")
            if not isinstance(text, str):
                raise _bad(f"a text block's text must be a string, got {type(text).__name__}")
            return [TextDelta(text)] if text else []
        if kind == "tool_use":
            call_id, name, given = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not isinstance(name, str) or not name:
                raise _bad("a tool_use block must have a string id and name")
            if given is not None and not isinstance(given, dict):
                raise _bad(f"a tool_use block's input must be an object, got {given!r}")
            self._blocks[index] = _Block("tool_use", call_id, name, input=given or None)
            return []
        self._blocks[index] = _Block(str(kind))
        self.ignored += 1
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[LlmEvent]:
        index = self._index(data)
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise _bad("content_block_delta has no delta object")
        block = self._blocks.get(index)
        if block is None:
            raise _bad(f"content_block_delta for block {index}, which never started")
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            text = delta.get("text")
            if not isinstance(text, str):
                raise _bad(f"text_delta.text must be a string, got {type(text).__name__}")
            return [TextDelta(text)] if text else []
        if kind == "input_json_delta" and block.kind == "tool_use":
            piece = delta.get("partial_json")
            if not isinstance(piece, str):
                raise _bad(f"input_json_delta.partial_json must be a string, got {piece!r}")
            block.json.append(piece)
            return []
        if kind in ("text_delta", "input_json_delta"):
            raise _bad(f"a {kind} for a {block.kind} block")
        self.ignored += 1
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[LlmEvent]:
        block = self._blocks.pop(self._index(data), None)
        if block is None or block.kind != "tool_use":
            return []
        text = "".join(block.json)
        if text.strip():
            arguments = parse_tool_arguments(block.name, text)
        else:
            arguments = dict(block.input or {})
        return [ToolCall(block.id, block.name, arguments)]


class AnthropicModel(HttpLlmModel):
    """A Claude model over Anthropic's streamed Messages API.

    Parameters
    ----------
    model
        The model name (``claude-...``).
    api_key
        Sent as the ``x-api-key`` header.
    base_url
        The API root; requests go to ``{base_url}/v1/messages``.
    max_tokens
        The most tokens one reply may have (the API requires it).
    temperature
        Sent when set (0 to 1).
    anthropic_version
        The ``anthropic-version`` header.
    timeout, connect_timeout
        As :class:`~voxwire.services.llm_openai.OpenAIChatModel`'s.
    extra_body
        More request fields, merged last (``{"tool_choice": {"type": "auto"}}``, ...).
    retry
        As :class:`~voxwire.services.llm_openai.OpenAIChatModel`'s (Anthropic's 529
        "overloaded" is retried too).

    Raises
    ------
    ServiceError
        ``unavailable``: aiohttp is not installed.
    ValueError, TypeError
        A parameter is out of range or of the wrong type.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str = "https://api.anthropic.com",
        max_tokens: int = 1024,
        temperature: float | None = None,
        anthropic_version: str = ANTHROPIC_VERSION,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty str")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0.0 <= temperature <= 1.0
        ):
            raise ValueError(f"temperature must be None or in [0, 1], got {temperature!r}")
        super().__init__(
            api_key=api_key, timeout=timeout, connect_timeout=connect_timeout, retry=retry
        )
        self._url = base_url.rstrip("/") + "/v1/messages"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.anthropic_version = anthropic_version
        self.extra_body = dict(extra_body or {})

    def request_body(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> dict[str, Any]:
        """The JSON body a completion of ``messages`` posts.

        Raises
        ------
        TypeError, ValueError
            As :func:`anthropic_messages` and :func:`anthropic_tools`; also when no
            user or assistant message is left.
        """
        system, chat = anthropic_messages(messages)
        if not chat:
            raise ValueError("messages must hold a user or assistant message, got none")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": chat,
            "stream": True,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = anthropic_tools(tools)
        if self.temperature is not None:
            body["temperature"] = self.temperature
        body.update(self.extra_body)
        return body

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> SseLlmStream:
        """Start a streamed completion of ``messages``, offering ``tools``.

        Raises
        ------
        TypeError, ValueError
            ``messages`` or ``tools`` are malformed (see :meth:`request_body`).
        """
        return SseLlmStream(self, self.request_body(messages, tools))

    def _headers(self) -> dict[str, str]:
        assert self._api_key is not None
        return {
            "x-api-key": self._api_key,
            "anthropic-version": self.anthropic_version,
            "Accept": "text/event-stream",
        }

    def _warm_url(self) -> str:
        return self._url.removesuffix("/messages") + "/models"

    def _warm_headers(self) -> dict[str, str]:
        return {**self._headers(), "Accept": "application/json"}

    def _decoder(self) -> AnthropicEventDecoder:
        return AnthropicEventDecoder()
