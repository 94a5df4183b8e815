"""The contracts every speech and language service implements.

A voice agent talks to three kinds of service: speech-to-text (:class:`SpeechToText`),
a language model (:class:`LanguageModel`) and text-to-speech (:class:`TextToSpeech`).
They are typed :class:`~typing.Protocol` classes: a vendor client, a local engine or a
test fake fits by shape, with no base class to inherit. ("Service" is the word for these
vendors throughout voxwire; "provider" means the telephony carrier.)

Every stream follows the same pattern: ``push`` input (never blocks), ``flush`` /
``finalize`` to ask for results now, ``end_input`` when there is no more, ``aclose`` to
stop at once (a barge-in: nothing more is generated or billed), and ``async for`` over
the results. Iteration ends after ``end_input`` once every result is out, or at
``aclose``; a failure is raised from the iteration as
:class:`~voxwire.errors.ServiceError`. Streams are async context managers that
``aclose`` on exit.

Rates: a speech service declares the one rate it takes or gives (``sample_rate``), and
the conversation converts audio exactly once per direction to or from it. Audio is mono
PCM16 as a 1-D numpy ``int16`` array.

Times in results (:attr:`Transcript.start`, :attr:`Word.start`, ...) are seconds of the
stream's own audio since its first sample, never wall-clock time: they can be mapped to
the call's played position exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from voxwire._types import PCM as PCM

__all__ = [
    "PCM",
    "ChatMessage",
    "LanguageModel",
    "LlmEvent",
    "LlmStream",
    "Outbox",
    "Preparable",
    "Role",
    "SpeechAudio",
    "SpeechToText",
    "StreamMixin",
    "SttStream",
    "TextDelta",
    "TextToSpeech",
    "ToolCall",
    "ToolSpec",
    "Transcript",
    "TtsStream",
    "Usage",
    "Word",
]


@dataclass(frozen=True, slots=True)
class Word:
    """One word and where its audio lies, in seconds from the stream's first sample."""

    text: str
    start: float
    end: float


# --- speech-to-text ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcription result.

    ``final`` results are never revised; interim ones (``final=False``) replace the
    previous interim result of the same segment. ``start``/``end`` bound the audio the
    text covers (seconds since the stream's first sample). ``speech_final`` says the
    service itself detected the end of speech (its endpointing); ``from_finalize`` that
    the result answers :meth:`SttStream.finalize`.
    """

    text: str
    final: bool
    start: float = 0.0
    end: float = 0.0
    words: tuple[Word, ...] = ()
    confidence: float | None = None
    speech_final: bool = False
    from_finalize: bool = False


_S = TypeVar("_S")


_T = TypeVar("_T")


class Outbox(Generic[_T]):
    """Results waiting for a stream's consumer, then the end or an error.

    For stream implementations (on the event loop): :meth:`put` results as they come,
    :meth:`finish` at the end (with the error, if it failed), :meth:`drop` at ``aclose``;
    ``__anext__`` is ``return await outbox.get()``.
    """

    def __init__(self) -> None:
        self._items: deque[_T] = deque()
        self._ready = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether :meth:`finish` or :meth:`drop` was called."""
        return self._done

    def put(self, item: _T) -> None:
        """Queue a result (ignored once finished)."""
        if not self._done:
            self._items.append(item)
            self._ready.set()

    def finish(self, error: BaseException | None = None) -> None:
        """No more results: the queued ones, then the end (or ``error``, raised once)."""
        if not self._done:
            self._done = True
            self._error = error
            self._ready.set()

    def drop(self) -> None:
        """Forget the queued results and finish (``aclose``)."""
        self._items.clear()
        self.finish()

    async def get(self) -> _T:
        """The next result; ``StopAsyncIteration`` at the end, or the error."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._done:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()


class StreamMixin:
    """``async with`` for a stream implementation: :meth:`aclose` on exit."""

    async def aclose(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class SttStream(Protocol):
    """One call's streaming recognition."""

    def push(self, pcm: PCM) -> None:
        """Queue audio at :attr:`SpeechToText.sample_rate` (any length; never blocks)."""
        ...

    def finalize(self) -> None:
        """Make the results for the audio pushed so far final now (the turn ended)."""
        ...

    def end_input(self) -> None:
        """No more audio: the remaining results follow, then the iteration ends."""
        ...

    async def aclose(self) -> None:
        """Stop now; results not yet out are dropped."""
        ...

    def __aiter__(self) -> AsyncIterator[Transcript]: ...


@runtime_checkable
class SpeechToText(Protocol):
    """A speech recognition service."""

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`SttStream.push` takes, in Hz."""
        ...

    def stream(self) -> SttStream:
        """Open a recognition stream (one per call)."""
        ...


# --- language model ----------------------------------------------------------------------

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool: ``name`` with ``arguments`` (a JSON object)."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def arguments_json(self) -> str:
        """The arguments as compact JSON (what OpenAI-style histories carry)."""
        return json.dumps(self.arguments, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation's history.

    ``role="assistant"`` messages may carry ``tool_calls``; ``role="tool"`` messages
    answer one of them (``tool_call_id``; ``name`` is the tool's).
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the model's reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the request used, where the service reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


LlmEvent = TextDelta | ToolCall | Usage
"""What a :class:`LlmStream` yields. A :class:`ToolCall` is yielded whole, once its
arguments are complete."""


@runtime_checkable
class LlmStream(Protocol):
    """One streamed completion."""

    async def aclose(self) -> None:
        """Stop generating now (a barge-in): nothing more is produced or billed."""
        ...

    def __aiter__(self) -> AsyncIterator[LlmEvent]: ...


@runtime_checkable
class LanguageModel(Protocol):
    """A chat model that streams text and tool calls."""

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> LlmStream:
        """Start a completion of ``messages`` (the first may be the system prompt)."""
        ...


# --- text-to-speech ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SpeechAudio:
    """A chunk of synthesised audio at :attr:`TextToSpeech.sample_rate`.

    ``words`` are the words whose audio starts in this chunk, timed in seconds from the
    stream's first sample (across all its chunks); empty where the engine gives no
    timings (the conversation then estimates them, see :mod:`voxwire.voice`).
    ``text`` is the text this chunk finishes, when the engine says so.
    """

    pcm: PCM
    words: tuple[Word, ...] = ()
    text: str = ""


@runtime_checkable
class TtsStream(Protocol):
    """One reply's synthesis (a "context" in the vendors' terms)."""

    def push(self, text: str) -> None:
        """Queue text (any piece; spaces are kept as given; never blocks)."""
        ...

    def flush(self) -> None:
        """Synthesise what was pushed now, without waiting for more text."""
        ...

    def end_input(self) -> None:
        """No more text: the remaining audio follows, then the iteration ends."""
        ...

    async def aclose(self) -> None:
        """Stop now (a barge-in): nothing more is synthesised or billed."""
        ...

    def __aiter__(self) -> AsyncIterator[SpeechAudio]: ...


@runtime_checkable
class TextToSpeech(Protocol):
    """A speech synthesis service."""

    @property
    def sample_rate(self) -> int:
        """The rate of the audio it yields, in Hz."""
        ...

    def stream(self) -> TtsStream:
        """Open a synthesis stream (one per reply)."""
        ...


# --- warming up ------------------------------------------------------------------------


@runtime_checkable
class Preparable(Protocol):
    """A service that can get ready before its first use (optional for every service).

    The voice agent calls :meth:`prepare` when a call starts, so the first turn does not
    pay a connection's handshake: the WebSocket synthesisers open their connection, the
    HTTP clients make their session. Engines that run in the process need nothing.
    """

    async def prepare(self) -> None:
        """Get ready now (connect); a failure raises :class:`~voxwire.errors.ServiceError`."""
        ...
