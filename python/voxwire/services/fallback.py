"""Fallback chains: a second (third ...) service of a kind that takes over when one fails.

:class:`FallbackLLM`, :class:`FallbackSTT` and :class:`FallbackTTS` implement the same
contracts as the services they hold (:mod:`voxwire.services.base`), so the voice agent
uses a chain as it would one service::

    llm = FallbackLLM([OpenAIChatModel(..., retry=NO_RETRY), OpenAIChatModel(ollama...)])

What happens when a service fails (a :class:`~voxwire.errors.ServiceError` raised from
its stream, after its own retries):

- **LLM.** A completion whose service fails before its first event is started again on
  the next service, with the same messages and tools; the caller hears nothing of the
  switch but its delay. A failure after the first event is raised as it is: the reply's
  first words may already be playing, and a second model would start its answer over
  (repeating or contradicting them), so the conversation ends that reply with its
  apology and the next turn goes to the next service (the failed one is cooling down).
- **TTS.** A reply whose service fails before its first audio is synthesised again on
  the next service: the text pushed so far, the flushes and the end of input are
  replayed in order, and later pushes follow. Audio of a service whose rate differs
  from the chain's :attr:`FallbackTTS.sample_rate` (the first service's) is resampled
  to it. A failure after the first audio is raised as it is (the reply ends there; the
  audio cannot be joined seamlessly).
- **STT.** A recognition stream lives for a whole call, so a failure at any time moves
  it to the next service: the audio of the utterance not yet finished (everything since
  the last final result, at most ``replay_seconds``) and a pending ``finalize`` are
  replayed to it, and result times are shifted so they stay seconds of the chain
  stream's own audio. Interim results already given are revised by the replayed
  utterance's results, as interim results always are. When the last service fails, the
  error is raised (the voice agent opens a new stream).

Every switch is reported: a :class:`Switch` goes to the stream's and the chain's
``on_switch`` callbacks and into ``switches``; the chain counts failures by
``"kind:reason"`` in :attr:`FallbackChain.failures`. The voice agent logs each switch with
the call's id and records it in the turn's metrics
(:attr:`voxwire.voice.metrics.TurnMetrics.fallbacks`).

Cool-down: a service that failed is skipped for ``cooldown`` seconds by new streams
(they start on the next one), then tried first again. When every service is cooling
down, they are tried in their order all the same.

:meth:`FallbackChain.prepare` prepares every service of the chain that can be prepared
(pre-connects the WebSocket ones), so a switch does not pay a handshake either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from voxwire.errors import ServiceError
from voxwire.resample import Resampler
from voxwire.services.base import (
    PCM,
    ChatMessage,
    LanguageModel,
    LlmEvent,
    LlmStream,
    SpeechAudio,
    SpeechToText,
    StreamMixin,
    SttStream,
    TextToSpeech,
    ToolSpec,
    Transcript,
    TtsStream,
    Word,
)

__all__ = [
    "FallbackChain",
    "FallbackLLM",
    "FallbackLlmStream",
    "FallbackSTT",
    "FallbackSttStream",
    "FallbackTTS",
    "FallbackTtsStream",
    "Kind",
    "Switch",
]

log = logging.getLogger("voxwire.services")

Kind = Literal["stt", "llm", "tts"]
_S = TypeVar("_S")


@dataclass(frozen=True, slots=True)
class Switch:
    """A chain left service ``failed`` for service ``to`` (indexes in the chain) after
    ``error``; ``failed_name`` and ``to_name`` name them (their class names)."""

    kind: Kind
    failed: int
    to: int
    failed_name: str
    to_name: str
    error: ServiceError

    def describe(self) -> str:
        """One line: ``"llm: OpenAIChatModel -> FakeLlm after status_500"``."""
        return f"{self.kind}: {self.failed_name} -> {self.to_name} after {self.error.reason}"


def _as_service_error(kind: Kind, exc: Exception) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    error = ServiceError(kind, "error", f"{kind}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class FallbackChain(Generic[_S]):
    """The services of one kind, in order, with their cool-downs and counters.

    Parameters
    ----------
    kind
        ``"stt"``, ``"llm"`` or ``"tts"``.
    services
        At least one service, the preferred first.
    cooldown
        Seconds a service that failed is skipped by new streams.
    clock
        Seconds of a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        kind: Kind,
        services: Sequence[_S],
        *,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        services = tuple(services)
        if not services:
            raise ValueError("a fallback chain needs at least one service")
        if not (isinstance(cooldown, int | float) and cooldown >= 0):
            raise ValueError(f"cooldown must be a number >= 0, got {cooldown!r}")
        self.kind: Kind = kind
        self.services = services
        self.cooldown = float(cooldown)
        self._clock = clock
        self._down_until = [0.0] * len(services)
        self.failures: Counter[str] = Counter()
        """Failures seen, by ``"kind:reason"``."""
        self.switches = 0
        """Switches made, in all streams."""
        self.last_switch: Switch | None = None
        """The latest switch."""
        self.on_switch: Callable[[Switch], None] | None = None
        """Called with every switch of every stream of the chain."""

    def name(self, index: int) -> str:
        """The class name of service ``index`` (never its parameters or key)."""
        return type(self.services[index]).__name__

    def order(self) -> list[int]:
        """Service indexes in the order a new stream tries them: those not cooling down
        first (in chain order), then the others (soonest back first)."""
        now = self._clock()
        ready = [i for i, until in enumerate(self._down_until) if until <= now]
        cooling = sorted(
            (i for i, until in enumerate(self._down_until) if until > now),
            key=lambda i: self._down_until[i],
        )
        return ready + cooling

    def failed(self, index: int, error: ServiceError) -> None:
        """Service ``index`` failed: counted, and skipped for the cool-down."""
        self.failures[f"{self.kind}:{error.reason}"] += 1
        self._down_until[index] = self._clock() + self.cooldown

    def switched(self, switch: Switch, stream_hook: Callable[[Switch], None] | None) -> None:
        """Record and report a switch (logged at WARNING, without any secret)."""
        self.switches += 1
        self.last_switch = switch
        log.warning("fallback %s", switch.describe())
        for hook in (stream_hook, self.on_switch):
            if hook is not None:
                hook(switch)

    async def prepare(self) -> None:
        """Prepare every service that has a ``prepare()``. A service that fails to is
        counted and cools down (new streams start on the next one); the error is logged,
        not raised."""

        async def one(index: int) -> None:
            prepare = getattr(self.services[index], "prepare", None)
            if prepare is None:
                return
            try:
                await prepare()
            except ServiceError as e:
                self.failed(index, e)
                log.warning(
                    "fallback %s: %s could not be prepared: %s", self.kind, self.name(index), e
                )

        await asyncio.gather(*(one(i) for i in range(len(self.services))))

    async def aclose(self) -> None:
        """Close every service that has an ``aclose()`` (its sessions and connections)."""
        for service in self.services:
            close = getattr(service, "aclose", None)
            if close is not None:
                await close()


class _Failover:
    """What the three chain streams share: the order of services, the position in it."""

    def __init__(self, chain: FallbackChain[Any]) -> None:
        self._chain = chain
        self._order = chain.order()
        self._at = 0
        self.switches: list[Switch] = []
        """The switches this stream made."""
        self.on_switch: Callable[[Switch], None] | None = None
        """Called with each switch of this stream (the voice agent sets it)."""

    @property
    def service_index(self) -> int:
        """The chain index of the service this stream is on."""
        return self._order[self._at]

    def _next(self, error: ServiceError, *, move: bool = True) -> bool:
        """Service failed with ``error`` (counted, cooling down from now): move to the
        next one, unless ``move`` is false (False: not moved, or none is left)."""
        chain = self._chain
        failed = self._order[self._at]
        chain.failed(failed, error)
        if not move or self._at + 1 >= len(self._order):
            return False
        self._at += 1
        to = self._order[self._at]
        switch = Switch(chain.kind, failed, to, chain.name(failed), chain.name(to), error)
        self.switches.append(switch)
        chain.switched(switch, self.on_switch)
        return True


# --- language model ------------------------------------------------------------------------


class FallbackLLM(FallbackChain[LanguageModel]):
    """Language models in order; see the module notes.

    Parameters
    ----------
    models
        The models, the preferred first.
    cooldown
        Seconds a model that failed is skipped by new completions.
    """

    def __init__(
        self,
        models: Sequence[LanguageModel],
        *,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("llm", models, cooldown=cooldown, clock=clock)

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> FallbackLlmStream:
        """Start a completion on the first model not cooling down."""
        return FallbackLlmStream(self, tuple(messages), tuple(tools))


class FallbackLlmStream(StreamMixin, _Failover):
    """One completion of a :class:`FallbackLLM`."""

    def __init__(
        self, chain: FallbackLLM, messages: tuple[ChatMessage, ...], tools: tuple[ToolSpec, ...]
    ) -> None:
        _Failover.__init__(self, chain)
        self._models = chain.services
        self._messages = messages
        self._tools = tools
        self._yielded = False
        self._closed = False
        self._stream: LlmStream | None = self._open()

    def _open(self) -> LlmStream:
        while True:
            try:
                return self._models[self.service_index].complete(self._messages, self._tools)
            except Exception as exc:  # noqa: PERF203 - once per failed service
                if isinstance(exc, TypeError | ValueError):
                    raise  # the messages are malformed: no other model takes them either
                error = _as_service_error("llm", exc)
                if not self._next(error):
                    raise error from None

    async def aclose(self) -> None:
        """Stop now: the completion under way is closed."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    def __aiter__(self) -> AsyncIterator[LlmEvent]:
        return self

    async def __anext__(self) -> LlmEvent:
        while True:
            stream = self._stream
            if self._closed or stream is None:
                raise StopAsyncIteration
            try:
                event = await stream.__aiter__().__anext__()
            except StopAsyncIteration:
                self._closed = True
                raise
            except Exception as exc:
                error = _as_service_error("llm", exc)
                if not self._next(error, move=not self._yielded):
                    await self.aclose()
                    raise error from None
                await _quiet_close(stream)
                self._stream = self._open()
                continue
            self._yielded = True
            return event


# --- text-to-speech --------------------------------------------------------------------------


class FallbackTTS(FallbackChain[TextToSpeech]):
    """Synthesisers in order; see the module notes.

    Parameters
    ----------
    services
        The synthesisers, the preferred first; its rate is the chain's.
    cooldown
        Seconds a synthesiser that failed is skipped by new streams.
    """

    def __init__(
        self,
        services: Sequence[TextToSpeech],
        *,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("tts", services, cooldown=cooldown, clock=clock)

    @property
    def sample_rate(self) -> int:
        """The rate of the audio yielded: the first synthesiser's."""
        return self.services[0].sample_rate

    def stream(self) -> FallbackTtsStream:
        """Open a synthesis stream on the first synthesiser not cooling down."""
        return FallbackTtsStream(self)


_Op = tuple[Literal["push"], str] | tuple[Literal["flush", "end"], None]


class FallbackTtsStream(StreamMixin, _Failover):
    """One reply of a :class:`FallbackTTS`."""

    def __init__(self, chain: FallbackTTS) -> None:
        _Failover.__init__(self, chain)
        self._services = chain.services
        self._rate = chain.sample_rate
        self._ops: list[_Op] = []  # what was asked of the stream, to replay on a switch
        self._yielded = False
        self._closed = False
        self._resampler: Resampler[np.int16] | None = None
        self._tail = False  # the resampler's tail is still to come
        self._stream: TtsStream | None = self._open()

    def _open(self) -> TtsStream:
        while True:
            service = self._services[self.service_index]
            try:
                stream = service.stream()
            except Exception as exc:
                error = _as_service_error("tts", exc)
                if not self._next(error):
                    raise error from None
                continue
            rate = service.sample_rate
            self._resampler = None if rate == self._rate else Resampler(rate, self._rate)
            for op, text in self._ops:
                if op == "push":
                    assert text is not None
                    stream.push(text)
                elif op == "flush":
                    stream.flush()
                else:
                    stream.end_input()
            return stream

    def push(self, text: str) -> None:
        """Queue text (kept for a replay until the first audio)."""
        if self._closed:
            return
        if not self._yielded:
            self._ops.append(("push", text))
        if self._stream is not None:
            self._stream.push(text)

    def flush(self) -> None:
        """Synthesise what was pushed now."""
        if self._closed:
            return
        if not self._yielded:
            self._ops.append(("flush", None))
        if self._stream is not None:
            self._stream.flush()

    def end_input(self) -> None:
        """No more text."""
        if self._closed:
            return
        if not self._yielded:
            self._ops.append(("end", None))
        if self._stream is not None:
            self._stream.end_input()

    async def aclose(self) -> None:
        """Stop now (a barge-in): the synthesis under way is closed."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    def __aiter__(self) -> AsyncIterator[SpeechAudio]:
        return self

    async def __anext__(self) -> SpeechAudio:
        while True:
            stream = self._stream
            if self._closed or stream is None:
                raise StopAsyncIteration
            try:
                chunk = await stream.__aiter__().__anext__()
            except StopAsyncIteration:
                if self._resampler is not None and not self._tail:
                    self._tail = True
                    tail = self._resampler.flush()
                    if len(tail):
                        return SpeechAudio(tail)
                self._closed = True
                raise
            except Exception as exc:
                error = _as_service_error("tts", exc)
                if not self._next(error, move=not self._yielded):
                    await self.aclose()
                    raise error from None
                await _quiet_close(stream)
                self._stream = self._open()
                continue
            if not self._yielded:
                self._yielded = True
                self._ops.clear()  # no replay past the first audio
            if self._resampler is not None:
                chunk = SpeechAudio(self._resampler.process(chunk.pcm), chunk.words, chunk.text)
            return chunk


# --- speech-to-text --------------------------------------------------------------------------


class FallbackSTT(FallbackChain[SpeechToText]):
    """Recognisers in order; see the module notes.

    Parameters
    ----------
    services
        The recognisers, the preferred first; its rate is the chain's.
    cooldown
        Seconds a recogniser that failed is skipped by new streams.
    replay_seconds
        The longest unfinished utterance replayed to the next recogniser (older audio
        of it is dropped and counted in :attr:`FallbackSttStream.dropped_samples`).
    """

    def __init__(
        self,
        services: Sequence[SpeechToText],
        *,
        cooldown: float = 30.0,
        replay_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("stt", services, cooldown=cooldown, clock=clock)
        if not (isinstance(replay_seconds, int | float) and replay_seconds > 0):
            raise ValueError(f"replay_seconds must be a number > 0, got {replay_seconds!r}")
        self.replay_seconds = float(replay_seconds)

    @property
    def sample_rate(self) -> int:
        """The rate pushes take: the first recogniser's."""
        return self.services[0].sample_rate

    def stream(self) -> FallbackSttStream:
        """Open a recognition stream on the first recogniser not cooling down."""
        return FallbackSttStream(self)


class FallbackSttStream(StreamMixin, _Failover):
    """One call's recognition on a :class:`FallbackSTT`."""

    def __init__(self, chain: FallbackSTT) -> None:
        _Failover.__init__(self, chain)
        self._services = chain.services
        self._rate = chain.sample_rate
        self._max = int(chain.replay_seconds * self._rate)
        self._held: deque[PCM] = deque()  # the unfinished utterance's audio
        self._held_samples = 0
        self._finalize_pending = False
        self._pushed = 0  # samples pushed to the chain stream
        self._offset = 0.0  # chain-stream seconds where the current service's audio began
        self._ended = False
        self._closed = False
        self.dropped_samples = 0
        """Samples of an utterance too long to replay in full, not replayed."""
        self._resampler: Resampler[np.int16] | None = None
        self._stream: SttStream | None = self._open()

    def _open(self) -> SttStream:
        while True:
            service = self._services[self.service_index]
            try:
                stream = service.stream()
            except Exception as exc:
                error = _as_service_error("stt", exc)
                if not self._next(error):
                    raise error from None
                continue
            rate = service.sample_rate
            self._resampler = None if rate == self._rate else Resampler(self._rate, rate)
            self._offset = (self._pushed - self._held_samples) / self._rate
            for pcm in self._held:
                stream.push(self._convert(pcm))
            if self._finalize_pending:
                stream.finalize()
            if self._ended:
                stream.end_input()
            return stream

    def _convert(self, pcm: PCM) -> PCM:
        return pcm if self._resampler is None else self._resampler.process(pcm)

    def push(self, pcm: PCM) -> None:
        """Queue audio at :attr:`FallbackSTT.sample_rate` (kept until the next final)."""
        if self._closed or self._ended:
            return
        self._pushed += len(pcm)
        self._held.append(pcm.copy())
        self._held_samples += len(pcm)
        while self._held_samples > self._max and self._held:
            old = self._held.popleft()
            self._held_samples -= len(old)
            self.dropped_samples += len(old)
        if self._stream is not None:
            self._stream.push(self._convert(pcm))

    def finalize(self) -> None:
        """Make the results so far final now."""
        if self._closed or self._ended:
            return
        self._finalize_pending = True
        if self._stream is not None:
            self._stream.finalize()

    def end_input(self) -> None:
        """No more audio."""
        if self._closed or self._ended:
            return
        self._ended = True
        if self._stream is not None:
            self._stream.end_input()

    async def aclose(self) -> None:
        """Stop now."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    def __aiter__(self) -> AsyncIterator[Transcript]:
        return self

    def _shift(self, t: Transcript) -> Transcript:
        o = self._offset
        if not o:
            return t
        words = tuple(Word(w.text, w.start + o, w.end + o) for w in t.words)
        return Transcript(
            t.text,
            t.final,
            t.start + o,
            t.end + o,
            words,
            t.confidence,
            t.speech_final,
            t.from_finalize,
        )

    async def __anext__(self) -> Transcript:
        while True:
            stream = self._stream
            if self._closed or stream is None:
                raise StopAsyncIteration
            try:
                result = await stream.__aiter__().__anext__()
            except StopAsyncIteration:
                self._closed = True
                raise
            except Exception as exc:
                error = _as_service_error("stt", exc)
                if not self._next(error):
                    await self.aclose()
                    raise error from None
                await _quiet_close(stream)
                self._stream = self._open()
                continue
            result = self._shift(result)
            if result.final:
                # The utterance is done: nothing before this result is replayed.
                end = round(result.end * self._rate)
                start_of_held = self._pushed - self._held_samples
                while self._held and start_of_held + len(self._held[0]) <= end:
                    start_of_held += len(self._held[0])
                    self._held_samples -= len(self._held.popleft())
                if result.from_finalize:
                    self._finalize_pending = False
            return result


async def _quiet_close(stream: LlmStream | TtsStream | SttStream) -> None:
    try:
        await stream.aclose()
    except Exception as e:  # the failed stream's close is only tidying up
        log.debug("closing a failed stream: %r", e)
