"""Offline text-to-speech with espeak-ng: no key, no network, word timings included.

:class:`EspeakTts` implements :class:`~voxwire.services.base.TextToSpeech` on the
espeak-ng library shipped in the ``espeakng-loader`` wheel (library and voice data, so
nothing is downloaded), driven through :mod:`ctypes`.

Streaming
---------
Pushed text is synthesised a sentence at a time: a complete sentence (ending in ``.``,
``!`` or ``?`` and a space) starts at once, the rest waits for :meth:`~_EspeakStream.flush`
or :meth:`~_EspeakStream.end_input`. Synthesis runs in one worker thread per process,
never on the event loop, and audio is yielded as the engine's callback delivers it. Each
chunk carries the words whose audio starts in it, timed from espeak's word events
(``audio_position``) in seconds of the stream's own audio, across all its sentences. A
word's end is the start of the next word less the trailing silence (a pause after a
comma or at the end of a sentence is not part of the word), so the audio of a word is
held until the engine has reached the next word: that costs the compute time of one
word (a few milliseconds), not its duration.

espeak-ng's C API is process-wide and not thread-safe: every call goes through one lock
and one worker, so several streams at once are queued sentence by sentence (each one's
audio stays its own, and a long reply does not hold the others back by more than a
sentence). :meth:`~_EspeakStream.aclose` stops the sentence being synthesised at the
engine's next audio buffer and drops the ones queued.

Examples
--------
>>> import asyncio
>>> from voxwire.services.tts_espeak import EspeakTts
>>> async def main() -> list[str]:
...     async with EspeakTts().stream() as s:
...         s.push("Hello there, how are you?")
...         s.end_input()
...         return [w.text async for chunk in s for w in chunk.words]
>>> asyncio.run(main())
['Hello', 'there', 'how', 'are', 'you']
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import queue
import re
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire.errors import ServiceError
from voxwire.services.base import PCM, Outbox, SpeechAudio, StreamMixin, Word

__all__ = ["EspeakTts", "espeak_available"]

# espeak-ng's speak_lib.h
_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_END_PAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1

_BUFFER_MS = 40  # the callback gets this much audio at a time (the cancel granularity)
_SILENCE = 256  # |sample| below this (-42 dBFS) is silence when trimming a word's end
_TRIM_BLOCK_S = 0.005

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")
_CLAUSE_END = re.compile(r"[.!?,;:][\"')\]]*\s*$")


class _EspeakEvent(ctypes.Structure):
    _fields_ = [  # the layout of espeak_EVENT
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


def espeak_available() -> bool:
    """Whether the ``espeakng-loader`` wheel (espeak-ng library and voices) is installed."""
    return importlib.util.find_spec("espeakng_loader") is not None


@dataclass(eq=False)
class _Job:
    """One sentence of one stream (``text=None``: the stream's end of input)."""

    stream: _EspeakStream
    text: str | None


@dataclass(eq=False)
class _Synthesis:
    """The worker's state for the sentence being synthesised (worker thread only)."""

    job: _Job
    text: str
    base: int  # the stream's sample count when the sentence started
    rate: int
    audio: list[PCM] = field(default_factory=list)
    buffered: int = 0  # samples received so far (``audio`` holds ``[emitted, buffered)``)
    emitted: int = 0  # samples of the sentence already sent
    words: list[tuple[int, int]] = field(default_factory=list)  # (sample, text index)
    sent_words: int = 0


class _Engine:
    """The process's espeak-ng: the library, its one lock and its one worker thread."""

    def __init__(self) -> None:
        if not espeak_available():
            raise ServiceError(
                "tts",
                "unavailable",
                "espeak-ng needs the espeakng-loader wheel (pip install 'voxwire[demo]')",
            )
        import espeakng_loader  # type: ignore[import-untyped,unused-ignore]

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self.lock = threading.Lock()
        data = espeakng_loader.get_data_path().encode()
        with self.lock:
            rate = lib.espeak_Initialize(
                _OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, _INITIALIZE_DONT_EXIT
            )
        if rate <= 0:
            raise ServiceError("tts", "unavailable", f"espeak-ng failed to start ({rate})")
        self.rate = int(rate)
        self._lib = lib
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the engine
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._current: _Synthesis | None = None
        self._worker: threading.Thread | None = None

    def check_voice(self, voice: str) -> bool:
        """Whether espeak-ng knows ``voice`` (a name such as ``en-us`` or ``en-us+f3``)."""
        with self.lock:
            return int(self._lib.espeak_SetVoiceByName(voice.encode())) == 0

    def submit(self, job: _Job) -> None:
        with self.lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="voxwire-espeak", daemon=True
                )
                self._worker.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            stream = job.stream
            if stream.closed:
                continue
            if job.text is None:
                stream.deliver_end()
                continue
            try:
                self._synthesise(job, job.text)
            except ServiceError as exc:
                stream.deliver_error(exc)
            except Exception as exc:  # the worker must outlive any one sentence
                stream.deliver_error(ServiceError("tts", "synth", f"tts: {exc!r}"))

    def _synthesise(self, job: _Job, text: str) -> None:
        stream = job.stream
        with self.lock:
            if self._lib.espeak_SetVoiceByName(stream.voice.encode()) != 0:
                raise ServiceError("tts", "voice", f"tts: espeak-ng has no voice {stream.voice!r}")
            self._lib.espeak_SetParameter(_PARAM_RATE, stream.rate_wpm, 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, stream.pitch, 0)
            self._lib.espeak_SetParameter(_PARAM_VOLUME, stream.volume, 0)
            self._lib.espeak_SetSynthCallback(self._callback)
            synth = _Synthesis(job, text, stream.samples, self.rate)
            stream.running.clear()
            self._current = synth
            raw = text.encode() + b"\0"
            # A pause after a sentence or a clause, none inside a phrase flushed early.
            flags = _CHARS_UTF8 | (_END_PAUSE if _CLAUSE_END.search(text) else 0)
            try:
                status = self._lib.espeak_Synth(
                    raw, len(raw), 0, _POS_CHARACTER, 0, flags, None, None
                )
            finally:
                self._current = None
                stream.running.set()
                _restore_other_users()
        if stream.closed:
            return
        if status != 0:
            raise ServiceError("tts", "synth", f"tts: espeak-ng failed on {text!r} ({status})")
        self._release(synth, synth.buffered, final=True)

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        # Runs inside espeak_Synth on the worker thread, under the lock.
        synth = self._current
        if synth is None:
            return 0
        if synth.job.stream.closed:
            return 1  # abort the sentence: nothing more is synthesised
        try:
            if count > 0 and wav:
                synth.job.stream.synthesised += count
                synth.audio.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
                synth.buffered += count
            i = 0
            while events and events[i].type != _EVENT_LIST_TERMINATED:
                event = events[i]
                if event.type == _EVENT_WORD:
                    _add_word(synth, event)
                i += 1
            # Audio up to the start of the last word seen is final: that word's end is
            # not known until the next one starts.
            upto = synth.words[-1][0] if len(synth.words) > synth.sent_words else synth.buffered
            self._release(synth, upto, final=False)
        except Exception as exc:  # never let an exception unwind through C
            synth.job.stream.deliver_error(ServiceError("tts", "synth", f"tts: {exc!r}"))
            return 1
        return 0

    def _release(self, synth: _Synthesis, upto: int, *, final: bool) -> None:
        upto = min(upto, synth.buffered)
        if upto <= synth.emitted and not final:
            return
        pcm = _take(synth, upto)
        words: list[Word] = []
        n_words = len(synth.words)
        while synth.sent_words < n_words:
            i = synth.sent_words
            start, first = synth.words[i]
            is_last = i == n_words - 1
            if is_last and not final:
                break  # its end is not known yet
            end, last = (synth.buffered, len(synth.text)) if is_last else synth.words[i + 1]
            end = _trim_end(synth, pcm, start, end)
            # espeak-ng gives no event for some short words ("a", "one" after "this"):
            # they share the time of the word before them, split by their length.
            words += _split(synth, synth.text[0 if i == 0 else first : last], start, end)
            synth.sent_words += 1
        if len(pcm) == 0 and not words and not final:
            return
        synth.emitted = upto
        synth.job.stream.deliver_audio(
            SpeechAudio(pcm=pcm, words=tuple(words), text=synth.text if final else "")
        )


def _add_word(synth: _Synthesis, event: Any) -> None:
    start = round(int(event.audio_position) * synth.rate / 1000)
    first = min(len(synth.text), max(0, int(event.text_position) - 1))
    if synth.words:
        start = max(start, synth.words[-1][0])
        first = max(first, synth.words[-1][1])
    synth.words.append((max(start, synth.emitted), first))


def _split(synth: _Synthesis, text: str, start: int, end: int) -> list[Word]:
    """The words of ``text``, sharing the samples ``[start, end)`` by their length."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        return []
    rate = float(synth.rate)
    end = max(end, start + len(tokens))
    total = sum(len(t) for t in tokens)
    out: list[Word] = []
    at = start
    done = 0
    for token in tokens:
        done += len(token)
        stop = start + round((end - start) * done / total)
        out.append(Word(token, (synth.base + at) / rate, (synth.base + stop) / rate))
        at = stop
    return out


def _take(synth: _Synthesis, upto: int) -> PCM:
    """The sentence's samples ``[emitted, upto)``, removed from its buffer."""
    need = upto - synth.emitted
    parts: list[PCM] = []
    while need > 0 and synth.audio:
        head = synth.audio[0]
        if len(head) <= need:
            parts.append(head)
            synth.audio.pop(0)
            need -= len(head)
        else:
            parts.append(head[:need])
            synth.audio[0] = head[need:]
            need = 0
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _trim_end(synth: _Synthesis, pcm: PCM, start: int, end: int) -> int:
    """``end`` moved back over the silence before it (within the chunk being released)."""
    offset = synth.emitted  # the chunk ``pcm`` begins at this sentence sample
    lo = max(start, offset)
    hi = min(end, offset + len(pcm))
    if hi <= lo:
        return end
    seg = np.abs(pcm[lo - offset : hi - offset].astype(np.int32))
    block = max(1, round(_TRIM_BLOCK_S * synth.rate))
    loud = np.flatnonzero(seg >= _SILENCE)
    if len(loud) == 0:
        return end
    last = lo + int(loud[-1]) + 1
    return min(end, last + block)


def _restore_other_users() -> None:
    """Give the synth callback back to the simulated caller's espeak-ng, if it shares the
    library with this engine.

    espeak-ng has one callback per loaded library. :mod:`voxwire.sim.speech` normally
    speaks each phrase in a private copy of the library (nothing shared, nothing to give
    back); only where a library cannot be unloaded does it keep one instance of the shared
    library, with its callback set once.
    """
    module = sys.modules.get("voxwire.sim.speech")
    engine_fn = getattr(module, "_engine", None) if module is not None else None
    cache_info = getattr(engine_fn, "cache_info", None)
    if engine_fn is None or cache_info is None or cache_info().currsize == 0:
        return
    try:
        other = engine_fn()
        if other.fresh:
            return
        other._lib.espeak_SetSynthCallback(other._callback)
    except Exception:  # pragma: no cover - the other engine is best effort
        return


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


class _EspeakStream(StreamMixin):
    """One reply's synthesis on espeak-ng (see :class:`EspeakTts`)."""

    def __init__(self, tts: EspeakTts, engine: _Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.voice = tts.voice
        self.rate_wpm = tts.rate_wpm
        self.pitch = tts.pitch
        self.volume = tts.volume
        self._auto = tts.sentence_split
        self._engine = engine
        self._loop = loop
        self._pending = ""
        self._ended = False
        self.closed = False
        self.samples = 0
        """Samples yielded so far: the stream's time (written by the worker)."""
        self.synthesised = 0
        """Samples espeak-ng produced for this stream, yielded or not."""
        self._out: Outbox[SpeechAudio] = Outbox()
        self.running = threading.Event()  # cleared while one of its sentences is synthesised
        self.running.set()

    # --- the contract ----------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue text; a complete sentence is synthesised at once (never blocks).

        Raises
        ------
        TypeError
            ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise TypeError(f"push() takes str, got {type(text).__name__}")
        if self.closed or self._ended:
            return
        self._pending += text
        if self._auto:
            cut = max((m.end() for m in _SENTENCE_END.finditer(self._pending)), default=0)
            if cut:
                head, self._pending = self._pending[:cut], self._pending[cut:]
                self._submit_sentences(head)

    def flush(self) -> None:
        """Synthesise all the text pushed so far, without waiting for more."""
        if self.closed or self._ended:
            return
        head, self._pending = self._pending, ""
        self._submit_sentences(head)

    def end_input(self) -> None:
        """No more text: the remaining audio follows, then the iteration ends."""
        if self.closed or self._ended:
            return
        self.flush()
        self._ended = True
        self._submit(None)

    async def aclose(self) -> None:
        """Stop now: the sentence being synthesised is cut short, the rest dropped."""
        if self.closed:
            return
        self.closed = True
        self._out.drop()
        # The worker aborts at its next audio buffer; wait for that (bounded) so nothing
        # of this stream is being synthesised once aclose returns.
        if not self.running.is_set():
            await asyncio.to_thread(self.running.wait, 2.0)

    def __aiter__(self) -> AsyncIterator[SpeechAudio]:
        return self

    async def __anext__(self) -> SpeechAudio:
        if self.closed:
            raise StopAsyncIteration
        try:
            return await self._out.get()
        except ServiceError:
            self.closed = True
            raise

    # --- worker side -----------------------------------------------------------------

    def _submit_sentences(self, text: str) -> None:
        if not text.strip():
            return
        start = 0
        for m in _SENTENCE_END.finditer(text):
            self._submit(text[start : m.end()])
            start = m.end()
        if text[start:].strip():
            self._submit(text[start:])

    def _submit(self, text: str | None) -> None:
        self._engine.submit(_Job(self, text))

    def deliver_audio(self, chunk: SpeechAudio) -> None:
        self.samples += len(chunk.pcm)
        self._post(chunk)

    def deliver_end(self) -> None:
        self._post(None)

    def deliver_error(self, exc: ServiceError) -> None:
        self._post(exc)

    def _post(self, item: SpeechAudio | ServiceError | None) -> None:
        if self.closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.closed = True

    def _put(self, item: SpeechAudio | ServiceError | None) -> None:
        if self.closed:
            return
        if item is None or isinstance(item, ServiceError):
            self._out.finish(item)
        else:
            self._out.put(item)


class EspeakTts:
    """Text-to-speech on espeak-ng (offline; the ``espeakng-loader`` wheel).

    Parameters
    ----------
    voice : str, default "en-us"
        An espeak-ng voice name, optionally with a variant (``"en-us+f3"``).
    rate_wpm : int, default 175
        Speaking rate in words per minute (80 to 450).
    pitch : int, default 50
        Base pitch, 0 to 100.
    volume : int, default 100
        Amplitude, 0 to 200 (100 is espeak-ng's normal level).
    sentence_split : bool, default True
        Start synthesising each complete sentence as soon as it is pushed, without
        waiting for :meth:`~_EspeakStream.flush`.

    Attributes
    ----------
    sample_rate : int
        espeak-ng's native rate (22050 Hz).

    Raises
    ------
    ServiceError
        ``reason="unavailable"``: espeak-ng cannot be loaded.
    ValueError
        An unknown voice or a parameter out of range.
    """

    def __init__(
        self,
        *,
        voice: str = "en-us",
        rate_wpm: int = 175,
        pitch: int = 50,
        volume: int = 100,
        sentence_split: bool = True,
    ) -> None:
        if not 80 <= rate_wpm <= 450:
            raise ValueError(f"rate_wpm must be 80 to 450, got {rate_wpm}")
        if not 0 <= pitch <= 100:
            raise ValueError(f"pitch must be 0 to 100, got {pitch}")
        if not 0 <= volume <= 200:
            raise ValueError(f"volume must be 0 to 200, got {volume}")
        self._engine = _engine()
        if not voice or "\0" in voice or not self._engine.check_voice(voice):
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        self.volume = volume
        self.sentence_split = sentence_split

    @property
    def sample_rate(self) -> int:
        """The rate of the audio it yields: espeak-ng's native 22050 Hz."""
        return self._engine.rate

    def stream(self) -> _EspeakStream:
        """Open a synthesis stream (call from within the running event loop)."""
        return _EspeakStream(self, self._engine, asyncio.get_running_loop())
