"""Deterministic fake speech and language services, for tests and benchmarks.

:class:`FakeStt`, :class:`FakeLlm` and :class:`FakeTts` implement the contracts of
:mod:`voxwire.services.base` exactly, with set latencies, on the running asyncio loop.
They read no clock but the loop's (``loop.time()``, ``asyncio`` sleeps), no file and no
network, and their output depends only on their input: a test that drives them twice gets
the same transcripts, tokens and audio twice.

* :class:`FakeStt` hears the audio itself: 10 ms blocks louder than ``threshold_dbfs``
  are speech, an utterance ends after ``latency`` seconds of non-speech, and each
  utterance gets the next scripted transcript. Its timing is in stream audio, so pushed in
  real time it answers in real time, and pushed faster it answers faster.
* :class:`FakeLlm` streams a scripted reply token by token (``first_token``, then one token
  every ``per_token`` seconds), then the reply's tool calls.
* :class:`FakeTts` turns flushed text into a speech-like signal (voiced harmonics per
  word, silence between words) with exact word timings, ``first_audio`` seconds after each
  flush, faster than real time.

Each records what it was asked and what it gave (``requests``, ``streams``, counters), so
a test can prove, for example, that a barge-in stopped generation and billing.

>>> import asyncio
>>> from voxwire.services.fake import FakeLlm
>>> async def main() -> list[str]:
...     llm = FakeLlm(lambda messages: "Hello there, caller.", first_token=0, per_token=0)
...     async with llm.complete([]) as stream:
...         return [event.text async for event in stream]
>>> asyncio.run(main())
['Hello', ' there', ',', ' caller', '.']
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from voxwire.errors import ServiceError
from voxwire.services.base import (
    PCM,
    ChatMessage,
    LlmEvent,
    Outbox,
    SpeechAudio,
    StreamMixin,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
    Word,
)

__all__ = [
    "FakeLlm",
    "FakeLlmRequest",
    "FakeLlmStream",
    "FakeReply",
    "FakeStt",
    "FakeSttStream",
    "FakeTts",
    "FakeTtsRequest",
    "FakeTtsStream",
    "speech_signal",
    "split_tokens",
]

_T = TypeVar("_T")

_TOKEN: Final = re.compile(r"\s*(?:[\w'\u2019]+|[^\w\s])|\s+")
_WORD: Final = re.compile(r"\S+")
_FULL_SCALE: Final = 32768.0
_NO_SAMPLES: Final[PCM] = np.zeros(0, dtype=np.int16)
_NO_SAMPLES.flags.writeable = False


def _check_seconds(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0 or math.isnan(value):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _check_rate(sample_rate: int) -> None:
    if not isinstance(sample_rate, int) or sample_rate < 100:
        raise ValueError(f"sample_rate must be an int >= 100 Hz, got {sample_rate!r}")


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")


class _Pausing:
    """Sleeps on the loop clock that :meth:`_poke` (a flush, a close) cuts short."""

    def __init__(self) -> None:
        self._wake: asyncio.Future[None] | None = None

    async def _pause(self, until: float | None) -> None:
        """Sleep until loop time ``until`` (``None``: until poked) or a poke."""
        if self._wake is not None:
            raise RuntimeError(f"{type(self).__name__} is already being iterated by a task")
        loop = asyncio.get_running_loop()
        if until is not None and until <= loop.time():
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = None if until is None else loop.call_at(until, _wake_up, wake)
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None

    def _poke(self) -> None:
        if self._wake is not None:
            _wake_up(self._wake)


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _spread(words: Sequence[str], start: float, end: float) -> tuple[Word, ...]:
    """``words`` evenly over ``[start, end]``."""
    if not words:
        return ()
    step = (end - start) / len(words)
    return tuple(
        Word(w, start + i * step, end if i == len(words) - 1 else start + (i + 1) * step)
        for i, w in enumerate(words)
    )


# --- speech-to-text ----------------------------------------------------------------------


class FakeStt:
    """A speech-to-text service that finds utterances in the audio and reads a script.

    Parameters
    ----------
    transcripts : sequence of str, or callable
        The text of utterance ``n`` (counted from 0 in each stream): ``transcripts[n]``
        (the sequence starts over when it runs out; a single str is the text of every
        utterance) or ``transcripts(n)``.
    sample_rate : int
        The rate :meth:`FakeSttStream.push` takes, in Hz.
    latency : float
        Seconds of non-speech audio that end an utterance; its final transcript comes as
        soon as that much audio has been pushed after the last speech block.
    interim_every : float
        Seconds of stream audio between interim results while speech goes on
        (``math.inf``: no interim results).
    threshold_dbfs : float
        A 10 ms block whose RMS level is above this (dB relative to full scale) is speech.
    words_per_second : float
        Speaking rate the interim results assume: after ``s`` seconds of speech they show
        the utterance's first ``ceil(s * words_per_second)`` words.

    Attributes
    ----------
    streams : list of FakeSttStream
        Every stream opened, in order (each has its own counters).
    """

    def __init__(
        self,
        transcripts: Sequence[str] | Callable[[int], str],
        *,
        sample_rate: int = 16000,
        latency: float = 0.1,
        interim_every: float = 0.3,
        threshold_dbfs: float = -45.0,
        words_per_second: float = 3.0,
    ) -> None:
        _check_rate(sample_rate)
        _check_seconds(latency=latency)
        if not interim_every > 0:
            raise ValueError(f"interim_every must be > 0 seconds, got {interim_every!r}")
        if not words_per_second > 0 or math.isinf(words_per_second):
            raise ValueError(f"words_per_second must be > 0, got {words_per_second!r}")
        if math.isnan(threshold_dbfs):
            raise ValueError("threshold_dbfs must be a number, got nan")
        if isinstance(transcripts, str):
            transcripts = (transcripts,)
        if not callable(transcripts):
            transcripts = tuple(transcripts)
            if not transcripts:
                raise ValueError("transcripts must hold at least one text")
            if not all(isinstance(t, str) for t in transcripts):
                raise TypeError("transcripts must be strings")
        self._transcripts = transcripts
        self._rate = sample_rate
        self.latency = latency
        self.interim_every = interim_every
        self.threshold_dbfs = threshold_dbfs
        self.words_per_second = words_per_second
        self.streams: list[FakeSttStream] = []

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`FakeSttStream.push` takes, in Hz."""
        return self._rate

    @property
    def utterances(self) -> int:
        """Final transcripts given, over all streams."""
        return sum(s.utterances for s in self.streams)

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio pushed, over all streams (what a service would bill)."""
        return sum(s.audio_seconds for s in self.streams)

    def stream(self) -> FakeSttStream:
        """Open a recognition stream."""
        s = FakeSttStream(self)
        self.streams.append(s)
        return s

    def text(self, n: int) -> str:
        """The scripted text of utterance ``n``."""
        if callable(self._transcripts):
            return self._transcripts(n)
        return self._transcripts[n % len(self._transcripts)]


class FakeSttStream(StreamMixin):
    """One recognition stream of a :class:`FakeStt` (see there for the behaviour).

    Attributes
    ----------
    utterances : int
        Final transcripts given.
    interims : int
        Interim transcripts given.
    pushed_samples : int
        Samples pushed before ``end_input`` / ``aclose``.
    dropped_samples : int
        Samples pushed after ``end_input`` or ``aclose`` (ignored).
    """

    def __init__(self, service: FakeStt) -> None:
        self._service = service
        self._rate = service.sample_rate
        self._block = self._rate // 100
        self._latency_samples = round(service.latency * self._rate)
        # a 10 ms block is speech when its sum of squares exceeds this
        self._energy_threshold = (
            self._block * (_FULL_SCALE * 10 ** (service.threshold_dbfs / 20)) ** 2
        )
        self._out: Outbox[Transcript] = Outbox()
        self._partial = _NO_SAMPLES
        self._open = True
        # the utterance under way
        self._in_speech = False
        self._start = 0  # sample of its first speech block
        self._last = 0  # sample just after its last speech block
        self._speech_samples = 0
        self._next_interim = 0
        self._words: list[str] = []
        self._text = ""
        self._shown = 0  # words of the last interim result
        self.utterances = 0
        self.interims = 0
        self.pushed_samples = 0
        self.dropped_samples = 0

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio pushed."""
        return self.pushed_samples / self._rate

    def push(self, pcm: PCM) -> None:
        """Queue mono int16 audio at the service's rate; results follow from it.

        Raises
        ------
        TypeError
            ``pcm`` is not a 1-D numpy int16 array.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(
                f"FakeSttStream.push: expected a 1-D numpy int16 array, got {pcm!r:.60}"
            )
        if not self._open:
            self.dropped_samples += len(pcm)
            return
        data = np.concatenate((self._partial, pcm)) if len(self._partial) else pcm
        n = self._block
        whole = len(data) // n * n
        if whole:
            base = self.pushed_samples - len(self._partial)
            blocks = data[:whole].reshape(-1, n)
            energy = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64).tolist()
            threshold = self._energy_threshold
            for i, e in enumerate(energy):
                speech = e > threshold
                if not speech and not self._in_speech:
                    continue  # silence between utterances: nothing to do
                self._block_done(base + i * n, speech)
                if not self._open:  # the transcript script failed
                    return
        self._partial = data[whole:].copy() if whole < len(data) else _NO_SAMPLES
        self.pushed_samples += len(pcm)

    def _block_done(self, at: int, speech: bool) -> None:
        end = at + self._block
        if speech:
            if not self._in_speech and not self._begin(at):
                return
            self._last = end
            self._speech_samples += self._block
            if end >= self._next_interim:
                while self._next_interim <= end:
                    self._next_interim += max(1, round(self._service.interim_every * self._rate))
                self._interim(end)
        elif self._in_speech and end - self._last >= self._latency_samples:
            self._final(speech_final=True, from_finalize=False)

    def _begin(self, at: int) -> bool:
        n = self.utterances
        try:
            text = self._service.text(n)
            if not isinstance(text, str):
                raise TypeError(f"expected str, got {type(text).__name__}")
        except Exception as exc:
            self._open = False
            self._out.finish(
                ServiceError("stt", "transcripts", f"stt: no text for utterance {n}: {exc!r}")
            )
            return False
        self._in_speech = True
        self._start = at
        self._speech_samples = 0
        self._text = text
        self._words = _WORD.findall(text)
        self._shown = 0
        interval = self._service.interim_every
        self._next_interim = (
            at + max(1, round(interval * self._rate)) if math.isfinite(interval) else 2**62
        )
        return True

    def _interim(self, end: int) -> None:
        seconds = self._speech_samples / self._rate
        count = min(len(self._words), math.ceil(seconds * self._service.words_per_second))
        if count <= self._shown:
            return
        self._shown = count
        words = self._words[:count]
        start_s, end_s = self._start / self._rate, end / self._rate
        self.interims += 1
        self._out.put(
            Transcript(
                " ".join(words),
                final=False,
                start=start_s,
                end=end_s,
                words=_spread(words, start_s, end_s),
                confidence=1.0,
            )
        )

    def _final(self, *, speech_final: bool, from_finalize: bool) -> None:
        self._in_speech = False
        start_s, end_s = self._start / self._rate, self._last / self._rate
        self.utterances += 1
        self._out.put(
            Transcript(
                self._text,
                final=True,
                start=start_s,
                end=end_s,
                words=_spread(self._words, start_s, end_s),
                confidence=1.0,
                speech_final=speech_final,
                from_finalize=from_finalize,
            )
        )

    def finalize(self) -> None:
        """Make the utterance under way final now (``from_finalize=True``).

        Without an utterance under way there is nothing to make final, and no result.
        """
        if self._open and self._in_speech:
            self._final(speech_final=False, from_finalize=True)

    def end_input(self) -> None:
        """No more audio: the utterance under way is made final, then the iteration ends."""
        if not self._open:
            return
        if self._in_speech:
            self._final(speech_final=False, from_finalize=False)
        self._open = False
        self._out.finish()

    async def aclose(self) -> None:
        """Stop now: results not yet taken are dropped and the iteration ends."""
        self._open = False
        self._in_speech = False
        self._out.drop()

    def __aiter__(self) -> FakeSttStream:
        return self

    async def __anext__(self) -> Transcript:
        return await self._out.get()


# --- language model ----------------------------------------------------------------------


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into word-ish tokens that keep their leading spaces.

    ``"".join(split_tokens(text)) == text`` for every string.

    >>> split_tokens("Hello there, caller.")
    ['Hello', ' there', ',', ' caller', '.']
    """
    return _TOKEN.findall(text)


@dataclass(frozen=True, slots=True)
class FakeReply:
    """What a :class:`FakeLlm` responder answers: text, then tool calls, then usage."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    usage: Usage | None = None


@dataclass(slots=True)
class FakeLlmRequest:
    """The record of one :meth:`FakeLlm.complete` call.

    Attributes
    ----------
    messages, tools
        What the completion was asked with.
    tokens : int
        :class:`TextDelta` events yielded.
    text : str
        Their text, joined.
    tool_calls : list of ToolCall
        Tool calls yielded.
    cancelled : bool
        ``aclose`` came before the stream had ended (a barge-in).
    done : bool
        Every event was yielded and the iteration ended.
    error : ServiceError or None
        The failure raised from the iteration, if any.
    """

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...]
    tokens: int = 0
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    cancelled: bool = False
    done: bool = False
    error: ServiceError | None = None


class FakeLlm:
    """A language model that streams the replies of a responder function.

    Parameters
    ----------
    reply : callable
        Called with the messages of each completion; returns the reply text or a
        :class:`FakeReply`. If it raises, the stream raises :class:`ServiceError`
        (``service="llm"``, ``reason="responder"``; a ``ServiceError`` it raises is passed
        on as it is) from the iteration, ``first_token`` seconds in.
    first_token : float
        Seconds from :meth:`complete` (or the first iteration, when called outside a
        running loop) to the first event.
    per_token : float
        Seconds between events after the first.
    stall : bool
        Never answer: the iteration waits until ``aclose`` (for timeout tests).
    fail_after : int or None
        Raise ``ServiceError("llm", "fake_failure")`` from the iteration after this many
        events (a connection lost mid-reply).

    Attributes
    ----------
    requests : list of FakeLlmRequest
        One record per :meth:`complete` call, in order.
    """

    def __init__(
        self,
        reply: Callable[[Sequence[ChatMessage]], FakeReply | str],
        *,
        first_token: float = 0.2,
        per_token: float = 0.02,
        stall: bool = False,
        fail_after: int | None = None,
    ) -> None:
        _check_seconds(first_token=first_token, per_token=per_token)
        _check_count("fail_after", fail_after)
        self._reply = reply
        self.first_token = first_token
        self.per_token = per_token
        self.stall = stall
        self.fail_after = fail_after
        self.requests: list[FakeLlmRequest] = []

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> FakeLlmStream:
        """Start a completion of ``messages``; the responder is asked at once."""
        record = FakeLlmRequest(tuple(messages), tuple(tools))
        self.requests.append(record)
        events: list[LlmEvent] = []
        error: ServiceError | None = None
        try:
            answer = self._reply(record.messages)
            if isinstance(answer, str):
                answer = FakeReply(answer)
            if not isinstance(answer, FakeReply):
                raise TypeError(f"expected str or FakeReply, got {type(answer).__name__}")
            events.extend(TextDelta(t) for t in split_tokens(answer.text))
            events.extend(answer.tool_calls)
            if answer.usage is not None:
                events.append(answer.usage)
        except ServiceError as exc:
            error = exc
        except Exception as exc:
            error = ServiceError("llm", "responder", f"llm: the responder raised {exc!r}")
            error.__cause__ = exc
        return FakeLlmStream(self, record, events, error)


class FakeLlmStream(StreamMixin, _Pausing):
    """One streamed completion of a :class:`FakeLlm`."""

    def __init__(
        self,
        service: FakeLlm,
        record: FakeLlmRequest,
        events: list[LlmEvent],
        error: ServiceError | None,
    ) -> None:
        super().__init__()
        self._service = service
        self._record = record
        self._events = events
        self._error = error
        self._next = 0
        self._ended = False
        try:
            self._t0: float | None = asyncio.get_running_loop().time()
        except RuntimeError:
            self._t0 = None

    @property
    def request(self) -> FakeLlmRequest:
        """This completion's record (also in :attr:`FakeLlm.requests`)."""
        return self._record

    async def aclose(self) -> None:
        """Stop now: nothing more is yielded, a waiting iteration ends."""
        if not self._ended:
            self._ended = True
            self._record.cancelled = True
        self._poke()

    def __aiter__(self) -> FakeLlmStream:
        return self

    def _fail(self, error: ServiceError) -> ServiceError:
        self._ended = True
        self._record.error = error
        return error

    async def __anext__(self) -> LlmEvent:
        service = self._service
        if self._t0 is None:
            self._t0 = asyncio.get_running_loop().time()
        if not self._ended and service.stall:
            await self._pause(None)
        if self._ended:
            raise StopAsyncIteration
        i = self._next
        fails = self._error is not None or (
            service.fail_after is not None and i >= service.fail_after
        )
        if fails or i < len(self._events) or i == 0:
            await self._pause(self._t0 + service.first_token + i * service.per_token)
            if self._ended:
                raise StopAsyncIteration
        if self._error is not None:
            raise self._fail(self._error)
        if service.fail_after is not None and i >= service.fail_after:
            raise self._fail(
                ServiceError("llm", "fake_failure", f"llm: failed after {i} events (fail_after)")
            )
        if i >= len(self._events):
            self._ended = True
            self._record.done = True
            raise StopAsyncIteration
        event = self._events[i]
        self._next = i + 1
        if isinstance(event, TextDelta):
            self._record.tokens += 1
            self._record.text += event.text
        elif isinstance(event, ToolCall):
            self._record.tool_calls.append(event)
        return event


# --- text-to-speech ----------------------------------------------------------------------


_TARGET_RMS: Final = _FULL_SCALE * 10 ** (-20 / 20)
_EDGE_S: Final = 0.015
_TABLE: Final = 2048


def _word_seconds(word: str, unit: float) -> tuple[float, float]:
    """Voiced seconds of ``word`` and the silence after it (``unit``: one word's time)."""
    letters = max(1, sum(c.isalnum() for c in word))
    voiced = unit * (0.25 + 0.12 * letters)
    if word[-1] in ".?!":
        gap = unit
    elif word[-1] in ",;:":
        gap = 0.5 * unit
    else:
        gap = 0.15 * unit
    return voiced, gap


@functools.lru_cache(maxsize=512)
def _period(f0: float, formant: float, top: float) -> npt.NDArray[np.float64]:
    """One period of a voiced sound at pitch ``f0`` (``_TABLE + 1`` points, closed)."""
    k = np.arange(1, max(2, math.ceil(top / (f0 * 1.08))), dtype=np.float64)
    weights = 1.0 / k + np.exp(-(((k * f0 - formant) / 250.0) ** 2))
    grid = 2 * np.pi * np.arange(_TABLE + 1) / _TABLE
    table: npt.NDArray[np.float64] = weights @ np.sin(np.outer(k, grid) + 0.7 * k[:, None])
    table.flags.writeable = False
    return table


def _voiced(word: str, n: int, rate: int) -> npt.NDArray[np.float64]:
    """``n`` samples of a vowel-like sound for ``word``, at RMS -20 dBFS."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(word))
    f0 = 100.0 + seed % 80  # 100..179 Hz
    t = np.arange(n, dtype=np.float64) / rate
    length = max(t[-1], 1e-3)
    pitch = f0 * (1.08 - 0.16 * t / length)  # a falling glide
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    top = min(3800.0, 0.45 * rate)
    formant = 350.0 + 100.0 * (seed % 6)  # 350..850 Hz
    table = _period(f0, formant, top)  # read at the gliding phase, linearly interpolated
    pos = np.mod(phase * (_TABLE / (2 * np.pi)), _TABLE)
    index = np.minimum(pos.astype(np.intp), _TABLE - 1)
    frac = pos - index
    signal = table[index] * (1.0 - frac) + table[index + 1] * frac
    syllables = max(1, round(n / rate / 0.18))
    signal *= 1.0 - 0.3 * np.sin(np.pi * syllables * t / length) ** 2
    edge = min(n // 2, max(1, round(_EDGE_S * rate)))
    ramp = np.sin(0.5 * np.pi * (np.arange(edge) + 0.5) / edge) ** 2
    signal[:edge] *= ramp
    signal[n - edge :] *= ramp[::-1]
    rms = math.sqrt(float(np.mean(signal**2)))
    result: npt.NDArray[np.float64] = signal * (_TARGET_RMS / max(rms, 1e-9))
    return result


def speech_signal(
    text: str, sample_rate: int = 16000, words_per_second: float = 3.0
) -> tuple[PCM, tuple[tuple[str, int, int], ...]]:
    """The fake voice's audio for ``text`` and where each word lies in it.

    Every whitespace-separated word is a voiced sound (harmonics of a 100-180 Hz pitch
    with a formant bump, a syllable-rate envelope and 15 ms ramps) at about -20 dBFS RMS,
    lasting ``(0.25 + 0.12 * letters) / words_per_second`` seconds, followed by digital
    silence: ``0.15 / words_per_second`` s, or ``0.5`` after ``, ; :`` and ``1.0`` after
    ``. ? !``. A five-letter word and its pause thus take ``1 / words_per_second`` s.
    Deterministic: the same text gives the same samples.

    Returns
    -------
    pcm : numpy int16 array
    words : tuple of (word, start_sample, end_sample)
        Each word's voiced samples are ``pcm[start:end]``.
    """
    _check_rate(sample_rate)
    if not words_per_second > 0 or math.isinf(words_per_second):
        raise ValueError(f"words_per_second must be > 0, got {words_per_second!r}")
    unit = 1.0 / words_per_second
    parts: list[npt.NDArray[np.float64]] = []
    words: list[tuple[str, int, int]] = []
    at = 0
    for word in _WORD.findall(text):
        voiced, gap = _word_seconds(word, unit)
        n = max(2, round(voiced * sample_rate))
        silence = round(gap * sample_rate)
        parts.append(_voiced(word, n, sample_rate))
        parts.append(np.zeros(silence))
        words.append((word, at, at + n))
        at += n + silence
    if not parts:
        return np.zeros(0, dtype=np.int16), ()
    pcm = np.clip(np.rint(np.concatenate(parts)), -32768, 32767).astype(np.int16)
    return pcm, tuple(words)


@functools.lru_cache(maxsize=256)
def _signal(
    text: str, sample_rate: int, words_per_second: float
) -> tuple[PCM, tuple[tuple[str, int, int], ...]]:
    """:func:`speech_signal`, read-only and kept: every call of a load test says the same
    few sentences, and making their audio again each time cost more than the call."""
    pcm, words = speech_signal(text, sample_rate, words_per_second)
    pcm.flags.writeable = False
    return pcm, words


@dataclass(slots=True)
class FakeTtsRequest:
    """The record of one :meth:`FakeTts.stream`.

    Attributes
    ----------
    texts : list of str
        The flushed texts whose synthesis began, in order.
    characters : int
        Their characters (what a service would bill).
    chunks : int
        Audio chunks yielded.
    samples : int
        Samples yielded.
    cancelled : bool
        ``aclose`` came before the stream had ended (a barge-in).
    done : bool
        Every chunk was yielded and the iteration ended.
    error : ServiceError or None
        The failure raised from the iteration, if any.
    """

    texts: list[str] = field(default_factory=list)
    characters: int = 0
    chunks: int = 0
    samples: int = 0
    cancelled: bool = False
    done: bool = False
    error: ServiceError | None = None


class FakeTts:
    """A text-to-speech service with a deterministic synthetic voice.

    Text is synthesised when flushed (or at ``end_input``), never before. ``first_audio``
    seconds after a flush (and not before the previous flushed text is out) its audio is
    yielded ``chunk`` seconds at a time, as fast as the consumer takes it. The audio is
    :func:`speech_signal`; each chunk's :attr:`~voxwire.services.base.SpeechAudio.words`
    are the words whose voiced audio starts in it, timed exactly in stream seconds, and
    the last chunk of a flushed text carries that text.

    Parameters
    ----------
    sample_rate : int
        The rate of the audio, in Hz.
    first_audio : float
        Seconds from a flush to its first audio.
    words_per_second : float
        Speaking rate (see :func:`speech_signal`).
    chunk : float
        Seconds of audio per chunk (the last chunk of a text may be shorter).
    stall : bool
        Never give audio: the iteration waits until ``aclose`` (for timeout tests).
    fail_after : int or None
        Raise ``ServiceError("tts", "fake_failure")`` from the iteration when the chunk
        after this many would be due (``0``: fail instead of the first audio).

    Attributes
    ----------
    requests : list of FakeTtsRequest
        One record per stream, in order.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        first_audio: float = 0.1,
        words_per_second: float = 3.0,
        chunk: float = 0.2,
        stall: bool = False,
        fail_after: int | None = None,
    ) -> None:
        _check_rate(sample_rate)
        _check_seconds(first_audio=first_audio)
        if not words_per_second > 0 or math.isinf(words_per_second):
            raise ValueError(f"words_per_second must be > 0, got {words_per_second!r}")
        if not chunk * sample_rate >= 1 or math.isinf(chunk):
            raise ValueError(f"chunk must be at least one sample long, got {chunk!r} s")
        _check_count("fail_after", fail_after)
        self._rate = sample_rate
        self.first_audio = first_audio
        self.words_per_second = words_per_second
        self.chunk = chunk
        self.stall = stall
        self.fail_after = fail_after
        self.requests: list[FakeTtsRequest] = []

    @property
    def sample_rate(self) -> int:
        """The rate of the audio the streams yield, in Hz."""
        return self._rate

    @property
    def characters(self) -> int:
        """Characters synthesised over all streams (what a service would bill)."""
        return sum(r.characters for r in self.requests)

    def stream(self) -> FakeTtsStream:
        """Open a synthesis stream (one per reply)."""
        record = FakeTtsRequest()
        self.requests.append(record)
        return FakeTtsStream(self, record)


@dataclass(slots=True)
class _Flushed:
    text: str
    ready: float  # loop time of its first audio


@dataclass(slots=True)
class _Synth:
    text: str
    pcm: PCM
    words: tuple[tuple[str, int, int], ...]  # starts/ends in stream samples
    offset: int = 0  # samples of pcm yielded
    word: int = 0  # words yielded


class FakeTtsStream(StreamMixin, _Pausing):
    """One synthesis stream of a :class:`FakeTts` (see there for the behaviour)."""

    def __init__(self, service: FakeTts, record: FakeTtsRequest) -> None:
        super().__init__()
        self._service = service
        self._record = record
        self._rate = service.sample_rate
        self._chunk = round(service.chunk * self._rate)
        self._pending: list[str] = []
        self._flushed: deque[_Flushed] = deque()
        self._current: _Synth | None = None
        self._position = 0  # stream samples synthesised before the current text
        self._last_ready = -math.inf
        self._input_ended = False
        self._ended = False

    @property
    def request(self) -> FakeTtsRequest:
        """This stream's record (also in :attr:`FakeTts.requests`)."""
        return self._record

    def push(self, text: str) -> None:
        """Queue text; it is synthesised at the next :meth:`flush` or :meth:`end_input`.

        Raises
        ------
        TypeError
            ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"FakeTtsStream.push: expected str, got {type(text).__name__}")
        if not self._input_ended and not self._ended:
            self._pending.append(text)

    def flush(self) -> None:
        """Synthesise the text pushed since the last flush (text of only spaces: none).

        Call it on the running loop: its audio is due ``first_audio`` after loop time now.
        """
        if self._input_ended or self._ended:
            return
        text = "".join(self._pending)
        self._pending.clear()
        if text.strip():
            now = asyncio.get_running_loop().time()
            ready = max(now + self._service.first_audio, self._last_ready)
            self._last_ready = ready
            self._flushed.append(_Flushed(text, ready))
            self._poke()

    def end_input(self) -> None:
        """No more text: what was pushed is flushed, and the iteration ends after it."""
        self.flush()
        self._input_ended = True
        self._poke()

    async def aclose(self) -> None:
        """Stop now: nothing more is synthesised or yielded, a waiting iteration ends."""
        if not self._ended:
            self._ended = True
            self._record.cancelled = True
        self._pending.clear()
        self._flushed.clear()
        self._current = None
        self._poke()

    def __aiter__(self) -> FakeTtsStream:
        return self

    def _synthesise(self, text: str) -> None:
        pcm, words = _signal(text, self._rate, self._service.words_per_second)
        if self._current is not None:
            self._position += len(self._current.pcm)
        base = self._position
        self._current = _Synth(text, pcm, tuple((w, base + s, base + e) for w, s, e in words))
        self._record.texts.append(text)
        self._record.characters += len(text)

    def _next_chunk(self, current: _Synth) -> SpeechAudio:
        start = current.offset
        stop = min(start + self._chunk, len(current.pcm))
        current.offset = stop
        limit = self._position + stop
        first = current.word
        while current.word < len(current.words) and current.words[current.word][1] < limit:
            current.word += 1
        words = tuple(
            Word(w, s / self._rate, e / self._rate)
            for w, s, e in current.words[first : current.word]
        )
        done = stop == len(current.pcm)
        self._record.chunks += 1
        self._record.samples += stop - start
        return SpeechAudio(current.pcm[start:stop].copy(), words, current.text if done else "")

    def _fail(self, error: ServiceError) -> ServiceError:
        self._ended = True
        self._record.error = error
        return error

    async def __anext__(self) -> SpeechAudio:
        service = self._service
        while not self._ended:
            current = self._current
            if current is not None and current.offset < len(current.pcm):
                if service.fail_after is not None and self._record.chunks >= service.fail_after:
                    raise self._fail(
                        ServiceError(
                            "tts",
                            "fake_failure",
                            f"tts: failed after {self._record.chunks} chunks (fail_after)",
                        )
                    )
                await asyncio.sleep(0)  # faster than real time, but let the loop run
                if self._ended or self._current is not current:
                    continue
                return self._next_chunk(current)
            if self._flushed and not service.stall:
                head = self._flushed[0]
                await self._pause(head.ready)
                if self._ended or asyncio.get_running_loop().time() < head.ready:
                    continue
                self._flushed.popleft()
                self._synthesise(head.text)
                continue
            if self._input_ended and not self._flushed:
                self._ended = True
                self._record.done = True
                break
            await self._pause(None)
        raise StopAsyncIteration
