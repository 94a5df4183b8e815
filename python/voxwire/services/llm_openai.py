"""A hosted or served chat model over the OpenAI Chat Completions streaming protocol.

:class:`OpenAIChatModel` implements :class:`~voxwire.services.base.LanguageModel` for
OpenAI and for the servers that speak its protocol: Ollama (``http://localhost:11434/v1``),
vLLM (``http://HOST:8000/v1``) and llama.cpp's ``llama-server`` (``http://HOST:8080/v1``,
tools need ``--jinja``). It needs aiohttp (``pip install aiohttp``).

The wire protocol (OpenAI API reference, "Create chat completion" and "The chat
completion chunk object", https://platform.openai.com/docs/api-reference/chat; of
``stream_options.include_usage`` it says "an additional chunk will be streamed before the
``data: [DONE]`` message ... the ``choices`` field will always be an empty array"; the
event-stream format is the WHATWG HTML standard's, section 9.2 "Server-sent events"):

- ``POST {base_url}/chat/completions`` with ``Authorization: Bearer KEY`` (left out where
  no key is given) and a JSON body ``{"model", "messages", "stream": true,
  "stream_options": {"include_usage": true}, "tools": [{"type": "function", "function":
  {"name", "description", "parameters"}}]}``.
- The answer is ``text/event-stream``: ``data: {chunk}`` events and a last
  ``data: [DONE]``. A chunk's ``choices[0].delta`` carries ``content`` (text) and
  ``tool_calls`` fragments; a call's first fragment has its ``index``, ``id`` and
  ``function.name``, the later ones pieces of ``function.arguments`` to concatenate.
  The usage chunk comes last, with ``"choices": []``.

What is tolerated, because servers that claim the protocol do it:

- a tool-call fragment with no ``index`` (older Ollama): a fragment with a new ``id`` or
  a ``name`` starts the next call, one with neither continues the last;
- a whole tool call in one chunk, ``arguments`` complete (Ollama), even as a JSON object
  rather than a string;
- the usage chunk with ``"choices": null`` (vLLM), or usage on the last chunk that has a
  choice (llama.cpp); usage in several chunks (the last one counts);
- SSE comments (``: keep-alive``), ``event:``/``id:``/``retry:`` fields, lines with no
  colon, CRLF or CR line ends, ``data`` split over several lines;
- a stream that ends with a ``finish_reason`` but no ``[DONE]``.

A :class:`~voxwire.services.base.ToolCall` is yielded once its call is complete: when the
choice's ``finish_reason`` arrives, or at the end of the stream. A
:class:`~voxwire.services.base.Usage` is yielded last, when the server reported one.

Errors are raised from the iteration as :class:`~voxwire.errors.ServiceError`
(``service="llm"``), ``reason`` one of:

``status_NNN``
    the server answered HTTP NNN (:class:`LlmStatusError`, with ``status`` and
    ``retry_after``); the message has the server's own error text.
``connect``
    the connection could not be made (refused, unknown host, TLS failure).
``timeout``
    :class:`~voxwire.errors.ServiceTimeout`: no connection within ``connect_timeout``,
    or no byte within ``timeout`` (before the headers or between two chunks).
``closed``
    the connection broke, or the stream ended before it was complete.
``bad_message``
    a chunk that is not JSON or not of the protocol's shape, or an SSE line over 1 MiB.
``bad_tool_arguments``
    a tool call whose arguments are not a JSON object.
``server_error``
    the server sent an error object inside the stream.

The API key is sent only in the ``Authorization`` header: it is never logged, never in a
``repr`` and never in an error message (a server that echoes it has it replaced by
``***``).

:meth:`SseLlmStream.aclose` (a barge-in) closes the HTTP connection at once, so the server
sees the client leave and stops generating (and billing); that connection is not reused.

The sans-I/O parts, :class:`SseParser` (bytes to events) and :class:`ChatChunkDecoder`
(events to :data:`~voxwire.services.base.LlmEvent`), need no socket and no aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import (
    ChatMessage,
    LlmEvent,
    StreamMixin,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from voxwire.services.http import (
    MAX_LINE,
    HttpSession,
    HttpStatusError,
    SseEvent,
    SseParser,
    aiohttp_module,
    error_text,
    positive,
)
from voxwire.services.retry import RetryPolicy, parse_retry_after, with_retries

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_LINE",
    "ChatChunkDecoder",
    "EventDecoder",
    "HttpLlmModel",
    "HttpSession",
    "LlmStatusError",
    "OpenAIChatModel",
    "SseEvent",
    "SseLlmStream",
    "SseParser",
    "openai_messages",
    "openai_tools",
    "parse_tool_arguments",
]


_ROLES: Final = ("system", "user", "assistant", "tool")
_ERROR_BODY: Final = 64 * 1024  # bytes of an error answer read for its message
_ERROR_TEXT: Final = 300  # characters of the server's error text kept in a message
_READ: Final = 64 * 1024
_DRAIN: Final = 0.5  # seconds to wait for the body's end after the protocol's end
_M = TypeVar("_M", bound="HttpLlmModel")


# --- sans-I/O: Chat Completions chunks ---------------------------------------------------


def _bad(message: str) -> ServiceError:
    return ServiceError("llm", "bad_message", f"llm: {message}")


def parse_tool_arguments(name: str, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as a dict: a JSON object text, or an object already parsed.

    Empty text (or only spaces) is ``{}``.

    Raises
    ------
    ServiceError
        ``bad_tool_arguments``: the text is not JSON, or not a JSON object.
    """
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError as e:
        raise ServiceError(
            "llm",
            "bad_tool_arguments",
            f"llm: the arguments of tool call {name!r} are not JSON ({e}): {arguments[:200]!r}",
        ) from None
    if not isinstance(value, dict):
        raise ServiceError(
            "llm",
            "bad_tool_arguments",
            f"llm: the arguments of tool call {name!r} must be a JSON object, "
            f"got {type(value).__name__}",
        )
    return value


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    text: str = ""
    parsed: Mapping[str, Any] | None = None


class EventDecoder(Protocol):
    """What :class:`SseLlmStream` drives: SSE events in, language-model events out."""

    @property
    def done(self) -> bool:
        """The protocol's end of stream was seen: nothing more is read."""
        ...

    def feed(self, event: SseEvent) -> list[LlmEvent]:
        """Decode one event; raise :class:`~voxwire.errors.ServiceError` for a bad one."""
        ...

    def end(self) -> list[LlmEvent]:
        """The body ended: the events still held, or raise if the stream is incomplete."""
        ...


class ChatChunkDecoder:
    """Chat Completions stream chunks to :data:`~voxwire.services.base.LlmEvent` (sans-I/O).

    Feed each SSE event's data (:meth:`feed_data`) or event (:meth:`feed`); text comes out
    as it arrives, tool calls once complete (at the choice's ``finish_reason``, or at the
    end), the usage last. See the module notes for what is tolerated. Only choice 0 is
    read.
    """

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._by_id: dict[str, int] = {}
        self._alias: dict[int, int] = {}  # the server's call index -> the key in _calls
        self._last: int | None = None
        self._usage: Usage | None = None
        self._ended = False
        self.done = False
        """``data: [DONE]`` was seen."""
        self.finish_reason: str | None = None
        """The last ``finish_reason`` of choice 0 (``"stop"``, ``"tool_calls"``, ...)."""
        self.chunks = 0
        """Chunks decoded."""

    def feed(self, event: SseEvent) -> list[LlmEvent]:
        """Decode one SSE event (an ``error`` event raises ``server_error``)."""
        if event.event == "error":
            raise _server_error(event.data)
        return self.feed_data(event.data)

    def feed_data(self, data: str) -> list[LlmEvent]:
        """Decode one chunk's JSON text, or ``[DONE]``.

        Raises
        ------
        ServiceError
            ``bad_message`` for a chunk that is not JSON or not of the chunk's shape,
            ``bad_tool_arguments`` for a finished tool call whose arguments are not a
            JSON object, ``server_error`` for an ``error`` object.
        """
        if self.done:
            return []
        if data.strip() == "[DONE]":
            self.done = True
            return self.end()
        try:
            chunk = json.loads(data)
        except ValueError:
            raise _bad(f"a stream chunk is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise _bad(f"a stream chunk must be a JSON object, got {type(chunk).__name__}")
        if chunk.get("error") is not None:
            raise _server_error(data)
        self.chunks += 1
        out: list[LlmEvent] = []
        choices = chunk.get("choices")
        if choices is not None:
            if not isinstance(choices, list):
                raise _bad(f"choices must be a list or null, got {type(choices).__name__}")
            for choice in choices:
                if not isinstance(choice, dict):
                    raise _bad(f"a choice must be an object, got {type(choice).__name__}")
                if choice.get("index", 0) == 0:
                    out.extend(self._choice(choice))
        usage = chunk.get("usage")
        if usage is not None:
            if not isinstance(usage, dict):
                raise _bad(f"usage must be an object or null, got {type(usage).__name__}")
            self._usage = Usage(
                prompt_tokens=_count(usage, "prompt_tokens"),
                completion_tokens=_count(usage, "completion_tokens"),
            )
        return out

    def end(self) -> list[LlmEvent]:
        """The stream ended: the tool calls not yet out, then the usage.

        Raises
        ------
        ServiceError
            ``closed`` when neither ``[DONE]`` nor a ``finish_reason`` came (the stream
            was cut); ``bad_tool_arguments`` as in :meth:`feed_data`.
        """
        if self._ended:
            return []
        if not self.done and self.finish_reason is None:
            raise ServiceError("llm", "closed", "llm: the stream ended before its end")
        self._ended = True
        out = self._flush_calls()
        if self._usage is not None:
            out.append(self._usage)
        return out

    def _choice(self, choice: dict[str, Any]) -> list[LlmEvent]:
        out: list[LlmEvent] = []
        delta = choice.get("delta")
        if delta is not None:
            if not isinstance(delta, dict):
                raise _bad(f"delta must be an object, got {type(delta).__name__}")
            content = delta.get("content")
            if content is not None:
                if not isinstance(content, str):
                    raise _bad(f"delta.content must be a string, got {type(content).__name__}")
                if content:
                    out.append(TextDelta(content))
            calls = delta.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise _bad(f"delta.tool_calls must be a list, got {type(calls).__name__}")
                for fragment in calls:
                    self._fragment(fragment)
        finish = choice.get("finish_reason")
        if finish is not None:
            if not isinstance(finish, str):
                raise _bad(f"finish_reason must be a string, got {type(finish).__name__}")
            self.finish_reason = finish
            out.extend(self._flush_calls())
        return out

    def _fragment(self, fragment: object) -> None:
        if not isinstance(fragment, dict):
            raise _bad(f"a tool call fragment must be an object, got {type(fragment).__name__}")
        call_id = fragment.get("id")
        function = fragment.get("function") or {}
        if not isinstance(function, dict):
            raise _bad(f"tool_calls[].function must be an object, got {type(function).__name__}")
        name = function.get("name")
        arguments = function.get("arguments")
        if call_id is not None and not isinstance(call_id, str):
            raise _bad(f"tool_calls[].id must be a string, got {type(call_id).__name__}")
        if name is not None and not isinstance(name, str):
            raise _bad(f"tool_calls[].function.name must be a string, got {type(name).__name__}")
        if arguments is not None and not isinstance(arguments, str | dict):
            raise _bad(
                "tool_calls[].function.arguments must be a string or an object, "
                f"got {type(arguments).__name__}"
            )
        index = fragment.get("index")
        if index is None:
            # By position: a new id or a name starts the next call, else the last goes on.
            if call_id and call_id in self._by_id:
                index = self._by_id[call_id]
            elif call_id or name or self._last is None:
                index = max(self._calls, default=-1) + 1
            else:
                index = self._last
        else:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise _bad(f"tool_calls[].index must be an int >= 0, got {index!r}")
            # The server's index names a call until a fragment with another id reuses it
            # (some servers number every call 0): that one is the next call.
            ours = self._alias.get(index)
            if ours is None or (call_id and self._calls[ours].id not in ("", call_id)):
                ours = self._by_id.get(call_id or "", max(self._calls, default=-1) + 1)
                self._alias[index] = ours
            index = ours
        call = self._calls.setdefault(index, _PartialCall())
        self._last = index
        if call_id and not call.id:
            call.id = call_id
            self._by_id[call_id] = index
        if name and not call.name:
            call.name = name
        if isinstance(arguments, dict):
            call.parsed = arguments
        elif arguments:
            call.text += arguments

    def _flush_calls(self) -> list[LlmEvent]:
        out: list[LlmEvent] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.name:
                raise _bad(f"tool call {index} has no function name")
            args = parse_tool_arguments(
                call.name, call.parsed if call.parsed is not None else call.text
            )
            out.append(ToolCall(call.id or f"call_{uuid.uuid4().hex[:24]}", call.name, args))
        self._calls.clear()
        self._by_id.clear()
        self._alias.clear()
        self._last = None
        return out


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"usage.{key} must be an int >= 0, got {value!r}")
    return value


def _server_error(data: str) -> ServiceError:
    kind, message = error_text(data)
    label = f"{kind}: " if kind else ""
    return ServiceError("llm", "server_error", f"llm: the server sent an error: {label}{message}")


# --- request bodies ----------------------------------------------------------------------


def _check(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    messages = tuple(messages)
    if not messages:
        raise ValueError("messages must hold at least one ChatMessage, got none")
    for i, m in enumerate(messages):
        if not isinstance(m, ChatMessage):
            raise TypeError(f"messages[{i}] must be a ChatMessage, got {type(m).__name__}")
        if m.role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {_ROLES}, got {m.role!r}")
    return messages


def _check_tools(tools: Sequence[ToolSpec]) -> tuple[ToolSpec, ...]:
    tools = tuple(tools)
    for i, t in enumerate(tools):
        if not isinstance(t, ToolSpec):
            raise TypeError(f"tools[{i}] must be a ToolSpec, got {type(t).__name__}")
    return tools


def openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The history as Chat Completions ``messages``.

    An assistant message's tool calls become ``tool_calls`` (``arguments`` as JSON text,
    ``content`` null when there is no text); a ``tool`` message carries its
    ``tool_call_id`` (and ``name`` when set).

    Raises
    ------
    TypeError
        An entry is not a :class:`~voxwire.services.base.ChatMessage`.
    ValueError
        ``messages`` is empty or a role is unknown.
    """
    out: list[dict[str, Any]] = []
    for m in _check(messages):
        if m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments_json()},
                        }
                        for c in m.tool_calls
                    ],
                }
            )
        elif m.role == "tool":
            message = {"role": "tool", "content": m.content, "tool_call_id": m.tool_call_id}
            if m.name:
                message["name"] = m.name
            out.append(message)
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tools in the Chat Completions function format.

    Raises
    ------
    TypeError
        An entry is not a :class:`~voxwire.services.base.ToolSpec`.
    """
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in _check_tools(tools)
    ]


# --- the HTTP layer ----------------------------------------------------------------------


class LlmStatusError(HttpStatusError):
    """The server answered an HTTP error status (``reason`` is ``"status_NNN"``).

    ``status`` is the code; ``retry_after`` the seconds of a ``Retry-After`` header (a
    number of seconds or an HTTP date), else ``None``.
    """

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__("llm", status, message, retry_after)

    def __reduce__(self) -> tuple[object, ...]:
        return (LlmStatusError, (self.status, str(self), self.retry_after))


def _aiohttp() -> Any:
    return aiohttp_module("llm", "the HTTP model clients")


class HttpLlmModel(HttpSession):
    """What the HTTP model clients share: one aiohttp session, timeouts, the key.

    The session is made on the first completion, in the running event loop, and reused
    (its connections are kept alive between requests); close it with :meth:`aclose` or
    ``async with model:``. A model is used from one event loop.
    """

    _url: str

    def __init__(
        self,
        *,
        api_key: str | None,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None = None,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        self._aiohttp = _aiohttp()
        self._api_key = api_key or None
        self.timeout = positive("timeout", timeout)
        """Seconds to wait for each byte of the answer (the headers, then each chunk)."""
        self.connect_timeout = positive("connect_timeout", connect_timeout)
        """Seconds to wait for the connection."""
        self.retry = retry if retry is not None else RetryPolicy()
        """Retries of a request that failed before its first byte (429, 5xx, refused)."""
        self.retries = 0
        """Requests tried again so far."""
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """The URL requests are posted to."""
        return self._url

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}(url={self._url!r}, api_key={key})"

    def _headers(self) -> dict[str, str]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _decoder(self) -> EventDecoder:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def __aenter__(self: _M) -> _M:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _End:
    """The stream is over; nothing follows."""


_END: Final = _End()


class SseLlmStream(StreamMixin):
    """One streamed completion over HTTP and server-sent events.

    Made by :meth:`OpenAIChatModel.complete` (and the Anthropic client's): the request
    goes out at once when made inside a running event loop, else at the first iteration.
    Iterate for the events; a failure is raised from the iteration as
    :class:`~voxwire.errors.ServiceError` (see the module notes for the reasons).
    """

    def __init__(self, model: HttpLlmModel, body: dict[str, Any]) -> None:
        self._model = model
        self._body = body
        self._decoder = model._decoder()
        self._parser = SseParser()
        self._queue: asyncio.Queue[LlmEvent | BaseException | _End] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False
        self.bytes_received = 0
        """Bytes of the answer's body read so far."""
        self.retries = 0
        """Attempts of this completion tried again (before any byte of its answer)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: start on the first iteration
        self._start()

    @property
    def ignored_lines(self) -> int:
        """SSE lines of the answer that were not of the protocol (ignored)."""
        return self._parser.ignored_lines

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        model = self._model
        try:
            await with_retries(
                model.retry, self._attempt, fresh=self._fresh, on_retry=self._retried
            )
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._queue.put_nowait(self._error(e))
        finally:
            self._drop_response()
            self._queue.put_nowait(_END)

    def _drop_response(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()  # a connection not read to its end is not reused

    def _fresh(self) -> bool:
        # Nothing of the answer's body came: a retry cannot repeat anything.
        return self.bytes_received == 0 and not self._closed

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1
        self._model.retries += 1

    async def _attempt(self) -> None:
        try:
            await self._request()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._drop_response()
            raise self._error(e) from None

    async def _request(self) -> None:
        model = self._model
        put = self._queue.put_nowait
        session = model._session_now()
        response = await session.post(model._url, json=self._body, headers=model._headers())
        self._response = response
        if self._closed:
            return
        if response.status >= 400:
            raise await self._status_error(response)
        if response.content_type == "application/json":
            raise await self._json_answer(response)
        decoder, parser = self._decoder, self._parser
        while not decoder.done:
            data = await response.content.read(_READ)
            if not data:
                break
            self.bytes_received += len(data)
            for event in parser.feed(data):
                for item in decoder.feed(event):
                    put(item)
                if decoder.done:
                    break
        if not decoder.done:
            for event in parser.end():
                for item in decoder.feed(event):
                    put(item)
        for item in decoder.end():
            put(item)
        if decoder.done:
            # The reply is complete: end the iteration now, then read the body's end
            # (normally only the last chunk's terminator) so the connection goes back to
            # the pool for the next reply. An aclose meanwhile closes it instead.
            put(_END)
            with contextlib.suppress(asyncio.TimeoutError, OSError, model._aiohttp.ClientError):
                await asyncio.wait_for(self._drain(response), _DRAIN)
            if response.content.at_eof():
                self._response = None
                response.release()

    @staticmethod
    async def _drain(response: aiohttp.ClientResponse) -> None:
        total = 0
        while total < _ERROR_BODY:
            data = await response.content.readany()
            if not data:
                return
            total += len(data)

    async def _status_error(self, response: aiohttp.ClientResponse) -> ServiceError:
        try:
            raw = await response.content.read(_ERROR_BODY)
        except Exception:  # the body is only for the message
            raw = b""
        kind, text = error_text(raw.decode("utf-8", "replace"))
        text = self._model._scrub(text)[:_ERROR_TEXT]
        label = f"{kind}: " if kind else ""
        retry = parse_retry_after(response.headers.get("Retry-After"))
        reason = response.reason or ""
        message = f"llm: HTTP {response.status} {reason}".rstrip()
        return LlmStatusError(
            response.status, f"{message}: {label}{text}" if text else message, retry
        )

    async def _json_answer(self, response: aiohttp.ClientResponse) -> ServiceError:
        # A JSON answer to a streamed request: an error object, or a server that does
        # not stream.
        raw = await response.content.read(_ERROR_BODY)
        body = raw.decode("utf-8", "replace")
        kind, text = error_text(body)
        text = self._model._scrub(text)[:_ERROR_TEXT]
        if '"error"' in body:
            label = f"{kind}: " if kind else ""
            return ServiceError(
                "llm", "server_error", f"llm: the server sent an error: {label}{text}"
            )
        return ServiceError(
            "llm",
            "bad_message",
            f"llm: the answer is application/json, not a text/event-stream: {text}",
        )

    def _error(self, e: BaseException) -> BaseException:
        if isinstance(e, ServiceError):
            key = self._model._api_key
            if key and key in str(e):
                return ServiceError(e.service, e.reason, self._model._scrub(str(e)))
            return e
        aiohttp = self._model._aiohttp
        model = self._model
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", ())
        if connect_timeout and isinstance(e, connect_timeout):
            return ServiceTimeout("llm", model.connect_timeout)
        if isinstance(e, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return ServiceTimeout("llm", model.timeout)
        if isinstance(e, aiohttp.ClientConnectorError):
            return ServiceError("llm", "connect", model._scrub(f"llm: cannot connect: {e}"))
        if isinstance(e, aiohttp.ClientError | OSError):
            return ServiceError(
                "llm", "closed", model._scrub(f"llm: the connection broke: {type(e).__name__}: {e}")
            )
        return e

    async def aclose(self) -> None:
        """Stop now (a barge-in): the connection is closed at once, the server sees it."""
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            response.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def __aiter__(self) -> AsyncIterator[LlmEvent]:
        return self

    async def __anext__(self) -> LlmEvent:
        if self._closed:
            raise StopAsyncIteration
        self._start()
        item = await self._queue.get()
        if self._closed or isinstance(item, _End):
            self._closed = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        return item


# --- the client ----------------------------------------------------------------------------


class OpenAIChatModel(HttpLlmModel):
    """A chat model served over the OpenAI Chat Completions streaming protocol.

    Parameters
    ----------
    base_url
        The API root, requests go to ``{base_url}/chat/completions``:
        ``https://api.openai.com/v1``, ``http://localhost:11434/v1`` (Ollama),
        ``http://HOST:8000/v1`` (vLLM), ``http://HOST:8080/v1`` (llama.cpp server).
    model
        The model name the server knows.
    api_key
        Sent as ``Authorization: Bearer KEY``; ``None`` sends no such header (local
        servers).
    timeout
        Seconds to wait for each byte of the answer: the headers, then each chunk (a
        stalled stream is a :class:`~voxwire.errors.ServiceTimeout`).
    connect_timeout
        Seconds to wait for the connection.
    max_tokens, temperature
        Sent as ``max_tokens`` and ``temperature`` when set.
    extra_body
        More request fields, merged last (they win): ``{"max_completion_tokens": 200}``,
        ``{"parallel_tool_calls": False}``, a server's own options.
    retry
        When a request that failed before its first byte is tried again
        (:class:`~voxwire.services.retry.RetryPolicy`; default: up to 3 attempts on 429,
        5xx and a refused connection, within 3 s). ``NO_RETRY`` for a primary with a
        fallback behind it.

    Raises
    ------
    ServiceError
        ``unavailable``: aiohttp is not installed.
    ValueError, TypeError
        A parameter is out of range or of the wrong type.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be None or a positive int, got {max_tokens!r}")
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0.0 <= temperature <= 2.0
        ):
            raise ValueError(f"temperature must be None or in [0, 2], got {temperature!r}")
        super().__init__(
            api_key=api_key, timeout=timeout, connect_timeout=connect_timeout, retry=retry
        )
        self._url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})

    def request_body(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> dict[str, Any]:
        """The JSON body a completion of ``messages`` posts.

        Raises
        ------
        TypeError, ValueError
            As :func:`openai_messages` and :func:`openai_tools`.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = openai_tools(tools)
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
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
            ``messages`` or ``tools`` are malformed (see :func:`openai_messages`).
        """
        return SseLlmStream(self, self.request_body(messages, tools))

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _warm_url(self) -> str:
        return self._url.removesuffix("/chat/completions") + "/models"

    def _warm_headers(self) -> dict[str, str]:
        return {**self._headers(), "Accept": "application/json"}

    def _decoder(self) -> ChatChunkDecoder:
        return ChatChunkDecoder()
