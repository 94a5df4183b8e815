"""Offline speech-to-text with PocketSphinx: no key, no network, word timings included.

:class:`PocketSphinxStt` implements :class:`~voxwire.services.base.SpeechToText` on the
``pocketsphinx`` wheel (5.x), whose US English acoustic model, dictionary and language
model ship inside it: nothing is downloaded.

Text is lower case without punctuation, as the dictionary spells it (``"i'd"``,
``"o'clock"``); numbers come as words (``"three"``). Accuracy is far below a cloud
service's (see ``docs/offline-engines.md``): this engine is for demos, tests and
offline development, not for production calls.

Streaming
---------
:meth:`~_PocketSphinxStream.push` queues audio and returns; one worker thread per stream
runs the decoder, never the event loop. The engine's own endpointer
(:class:`pocketsphinx.Endpointer`, a voice-activity window) opens an utterance when
speech starts and closes it when speech stops. While an utterance is open, every frame
goes to the decoder at once (the endpointer only decides; its delayed output is not
waited for), and an interim :class:`~voxwire.services.base.Transcript` follows every
``interim_interval`` seconds of decoded audio when the hypothesis changed. A final one
follows when the endpointer ends the utterance (``speech_final=True``), at
:meth:`~_PocketSphinxStream.finalize` (``from_finalize=True``, even when nothing was
heard: ``text=""``) and at :meth:`~_PocketSphinxStream.end_input`. Word timings come from
the decoder's segmentation, in seconds of the stream's audio.

Examples
--------
>>> import asyncio
>>> import numpy as np
>>> from voxwire.services.stt_pocketsphinx import PocketSphinxStt
>>> async def main() -> list[str]:
...     async with PocketSphinxStt().stream() as s:
...         s.push(np.zeros(16000, dtype=np.int16))  # one second of silence
...         s.finalize()
...         s.end_input()
...         return [t.text async for t in s if t.final]
>>> asyncio.run(main())
['']
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import queue
import re
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from voxwire.errors import ServiceError
from voxwire.services.base import PCM, Outbox, StreamMixin, Transcript, Word

__all__ = ["PocketSphinxStt", "pocketsphinx_available"]

_RATE = 16000
_FRAME_RATE = 100  # the decoder's feature frames per second (its ``frate``)
_VAD_FRAME = 480  # the endpointer's 30 ms frame at 16 kHz
_FILLERS = frozenset({"<s>", "</s>", "<sil>"})
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")

_FINALIZE = "finalize"
_END = "end"
_STOP = "stop"


def pocketsphinx_available() -> bool:
    """Whether the ``pocketsphinx`` wheel (5.x, with its English model) is installed."""
    return importlib.util.find_spec("pocketsphinx") is not None


def _clean_word(word: str) -> str:
    """A dictionary word as text: alternate pronunciations (``"the(2)"``) unmarked."""
    cut = word.find("(")
    return word[:cut] if cut > 0 else word


def _is_filler(word: str) -> bool:
    return word in _FILLERS or word.startswith(("[", "+", "<"))


def _normalise(phrase: str) -> list[str]:
    return _WORD.findall(phrase.lower().replace("\u2019", "'"))


def _phrase_model(phrases: Sequence[str]) -> tuple[str, str]:
    """(ARPA trigram text, dictionary text) for a closed vocabulary of ``phrases``.

    Raises
    ------
    ValueError
        No words, or words the pronunciation dictionary does not have.
    """
    from pocketsphinx import get_model_path  # type: ignore[import-untyped,unused-ignore]
    from pocketsphinx.lm import ArpaBoLM  # type: ignore[import-untyped,unused-ignore]

    sentences = [" ".join(words) for words in map(_normalise, phrases) if words]
    vocabulary = {w for s in sentences for w in s.split()}
    if not vocabulary:
        raise ValueError("phrases has no words")
    entries: list[str] = []
    found: set[str] = set()
    with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
        for line in f:
            word = _clean_word(line.split(" ", 1)[0])
            if word in vocabulary:
                entries.append(line)
                found.add(word)
    missing = sorted(vocabulary - found)
    if missing:
        raise ValueError(f"words not in the pronunciation dictionary: {', '.join(missing)}")
    model = ArpaBoLM(text="\n".join(sentences) + "\n", add_start=True)
    model.compute()
    arpa = io.StringIO()
    model.write(arpa)
    return arpa.getvalue(), "".join(entries)


class _DecoderPool:
    """Loaded decoders kept for the next stream (loading the model takes ~0.5 s)."""

    def __init__(
        self, config: dict[str, Any], keep: int, bias: tuple[str, str] | None = None
    ) -> None:
        self._config = config
        self._keep = keep
        self._bias = bias
        self._free: list[Any] = []
        self._lock = threading.Lock()

    def take(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
        from pocketsphinx import Decoder  # type: ignore[import-untyped,unused-ignore]

        if self._bias is None:
            return Decoder(**self._config)
        arpa, dictionary = self._bias
        with tempfile.TemporaryDirectory(prefix="voxwire-lm-") as tmp:
            lm_path = os.path.join(tmp, "phrases.arpa")
            dict_path = os.path.join(tmp, "phrases.dict")
            with open(lm_path, "w", encoding="utf-8") as f:
                f.write(arpa)
            with open(dict_path, "w", encoding="utf-8") as f:
                f.write(dictionary)
            return Decoder(**self._config, lm=lm_path, dict=dict_path)

    def give(self, decoder: Any) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(decoder)


class _Inbox:
    """What a stream sends its worker: audio and markers, with the audio backlog counted."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PCM | str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.backlog = 0  # samples put and not yet taken

    def put_audio(self, pcm: PCM, limit: int) -> bool:
        """Queue ``pcm`` unless the backlog would pass ``limit`` samples."""
        with self._lock:
            if self.backlog + len(pcm) > limit:
                return False
            self.backlog += len(pcm)
        self._queue.put(pcm)
        return True

    def put(self, marker: str) -> None:
        self._queue.put(marker)

    def get(self) -> PCM | str:
        item = self._queue.get()
        if isinstance(item, np.ndarray):
            with self._lock:
                self.backlog -= len(item)
        return item


_Post = Callable[[Transcript | ServiceError | None], None]


def _poster(ref: weakref.ReferenceType[_PocketSphinxStream]) -> _Post:
    """Post to the stream while it exists (the worker must not keep it alive)."""

    def post(item: Transcript | ServiceError | None) -> None:
        stream = ref()
        if stream is not None:
            stream._post(item)

    return post


def _work(post: _Post, inbox: _Inbox, stt: PocketSphinxStt) -> None:
    """A stream's worker thread: load a decoder, decode until told to stop."""
    try:
        decoder = stt._pool.take()
    except Exception as exc:
        post(ServiceError("stt", "unavailable", f"stt: {exc}"))
        return
    healthy = False
    try:
        _Recognizer(post, inbox, stt, decoder).run()
        healthy = True
    except ServiceError as exc:
        post(exc)
    except Exception as exc:  # a decoder failure is the service's, not the caller's
        post(ServiceError("stt", "decode", f"stt: {exc!r}"))
    finally:
        if healthy:
            stt._pool.give(decoder)


class _PocketSphinxStream(StreamMixin):
    """One call's streaming recognition on PocketSphinx (see :class:`PocketSphinxStt`)."""

    def __init__(self, stt: PocketSphinxStt, loop: asyncio.AbstractEventLoop) -> None:
        self._stt = stt
        self._loop = loop
        self._inbox = _Inbox()
        self._out: Outbox[Transcript] = Outbox()
        self._ended = False
        self._closed = False
        self.dropped = 0
        """Samples pushed after :meth:`end_input` or :meth:`aclose` (ignored)."""
        self._worker = threading.Thread(
            target=_work,
            args=(_poster(weakref.ref(self)), self._inbox, stt),
            name="voxwire-pocketsphinx",
            daemon=True,
        )
        self._worker.start()
        # A stream dropped without aclose() still stops its worker.
        weakref.finalize(self, self._inbox.put, _STOP)

    # --- the contract ----------------------------------------------------------------

    def push(self, pcm: PCM) -> None:
        """Queue 16 kHz mono PCM16 audio (any length; never blocks).

        Raises
        ------
        TypeError
            ``pcm`` is not a numpy ``int16`` array.
        ValueError
            ``pcm`` is not one-dimensional.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            got = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
            raise TypeError(f"push() takes a numpy int16 array, got {got}")
        if pcm.ndim != 1:
            raise ValueError(f"push() takes a 1-D array, got shape {pcm.shape}")
        if self._ended or self._closed:
            self.dropped += len(pcm)
            return
        if len(pcm) == 0:
            return
        if not self._inbox.put_audio(pcm.copy(), round(self._stt.max_backlog * _RATE)):
            # The decoder cannot keep up (an overloaded machine): fail the stream rather
            # than let the queue and the latency grow without bound.
            self._fail(ServiceError("stt", "overloaded", "stt: the decoder fell behind"))

    def finalize(self) -> None:
        """Make the results for the audio pushed so far final now."""
        if not (self._ended or self._closed):
            self._inbox.put(_FINALIZE)

    def end_input(self) -> None:
        """No more audio: the last final result follows, then the iteration ends."""
        if not (self._ended or self._closed):
            self._ended = True
            self._inbox.put(_END)

    async def aclose(self) -> None:
        """Stop now; results not yet out are dropped."""
        if self._closed:
            return
        self._closed = True
        self._out.drop()
        self._inbox.put(_STOP)

    def __aiter__(self) -> AsyncIterator[Transcript]:
        return self

    async def __anext__(self) -> Transcript:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self._out.get()
        except ServiceError:
            self._closed = True
            raise

    # --- delivery to the event loop --------------------------------------------------

    def _post(self, item: Transcript | ServiceError | None) -> None:
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._closed = True

    def _put(self, item: Transcript | ServiceError | None) -> None:
        if self._closed or self._out.done:
            return
        if item is None or isinstance(item, ServiceError):
            self._out.finish(item)
            self._ended = True
        else:
            self._out.put(item)

    def _fail(self, exc: ServiceError) -> None:
        self._ended = True
        self._inbox.put(_STOP)
        self._post(exc)


class _Recognizer:
    """The decoding loop of one stream (worker thread only)."""

    def __init__(self, post: _Post, inbox: _Inbox, stt: PocketSphinxStt, decoder: Any) -> None:
        from pocketsphinx import Endpointer  # type: ignore[import-untyped,unused-ignore]

        self._post = post
        self._inbox = inbox
        self._decoder = decoder
        self._endpointer = (
            Endpointer(
                window=stt.endpoint_window,
                ratio=stt.endpoint_ratio,
                vad_mode=stt.vad_mode,
                sample_rate=_RATE,
            )
            if stt.endpointing
            else None
        )
        self._interim_every = round(stt.interim_interval * _RATE)
        # Frames kept to open an utterance where the endpointer says speech began (it
        # decides about a window late).
        keep = int(np.ceil((stt.endpoint_window + 0.3) * _RATE / _VAD_FRAME))
        self._recent: deque[tuple[int, PCM]] = deque(maxlen=keep)
        self._leftover = np.zeros(0, dtype=np.int16)
        self._samples = 0  # stream samples seen (whole frames)
        self._in_utt = False
        self._utt_start = 0  # stream sample of the utterance's first decoded sample
        self._utt_fed = 0
        self._last_interim_at = 0
        self._last_text = ""

    def run(self) -> None:
        while True:
            item = self._inbox.get()
            if isinstance(item, np.ndarray):
                self._audio(item)
            elif item == _FINALIZE:
                self._flush_leftover()
                self._end_utterance(speech_final=False, from_finalize=True)
            elif item == _END:
                self._flush_leftover()
                self._end_utterance(speech_final=False, from_finalize=False)
                self._post(None)
                return
            else:  # _STOP
                if self._in_utt:
                    self._decoder.end_utt()
                return

    def _audio(self, pcm: PCM) -> None:
        if len(self._leftover):
            pcm = np.concatenate([self._leftover, pcm])
        n = len(pcm) // _VAD_FRAME * _VAD_FRAME
        self._leftover = pcm[n:]
        for i in range(0, n, _VAD_FRAME):
            self._frame(pcm[i : i + _VAD_FRAME])

    def _flush_leftover(self) -> None:
        """Decode the last partial frame too (only inside an utterance)."""
        if len(self._leftover) and (self._in_utt or self._endpointer is None):
            tail, self._leftover = self._leftover, np.zeros(0, dtype=np.int16)
            if not self._in_utt:
                self._start_utterance(self._samples)
            self._feed(tail)
            self._samples += len(tail)

    def _frame(self, frame: PCM) -> None:
        at = self._samples
        self._samples += len(frame)
        ep = self._endpointer
        if ep is None:
            if not self._in_utt:
                self._start_utterance(at)
            self._feed(frame)
            return
        was_speech = ep.in_speech
        ep.process(frame.tobytes())
        self._recent.append((at, frame))
        if not was_speech and ep.in_speech and not self._in_utt:
            begin = round(ep.speech_start * _RATE)
            self._start_utterance(begin)
            for t, f in self._recent:  # the speech the endpointer has seen, this frame too
                if t + len(f) > begin:
                    self._feed(f[max(0, begin - t) :])
            return
        if self._in_utt:
            self._feed(frame)
            if was_speech and not ep.in_speech:
                self._end_utterance(speech_final=True, from_finalize=False)
        elif ep.in_speech:
            # finalize() closed the utterance while speech went on: open the next one here.
            self._start_utterance(at)
            self._feed(frame)

    def _start_utterance(self, at: int) -> None:
        self._decoder.start_utt()
        self._in_utt = True
        self._utt_start = at
        self._utt_fed = 0
        self._last_interim_at = 0
        self._last_text = ""

    def _feed(self, pcm: PCM) -> None:
        if len(pcm) == 0:
            return
        self._decoder.process_raw(pcm.tobytes(), False, False)
        self._utt_fed += len(pcm)
        if self._utt_fed - self._last_interim_at >= self._interim_every:
            self._last_interim_at = self._utt_fed
            hyp = self._decoder.hyp()
            text = _text(hyp.hypstr) if hyp is not None else ""
            if text and text != self._last_text:
                self._last_text = text
                self._post(self._transcript(text, final=False))

    def _end_utterance(self, *, speech_final: bool, from_finalize: bool) -> None:
        if not self._in_utt:
            if from_finalize:
                now = (self._samples + len(self._leftover)) / _RATE
                self._post(Transcript("", final=True, start=now, end=now, from_finalize=True))
            return
        self._decoder.end_utt()
        self._in_utt = False
        hyp = self._decoder.hyp()
        text = _text(hyp.hypstr) if hyp is not None else ""
        if text or from_finalize:
            self._post(
                self._transcript(
                    text, final=True, speech_final=speech_final, from_finalize=from_finalize
                )
            )

    def _transcript(
        self, text: str, *, final: bool, speech_final: bool = False, from_finalize: bool = False
    ) -> Transcript:
        base = self._utt_start / _RATE
        words = tuple(
            Word(
                _clean_word(seg.word),
                base + seg.start_frame / _FRAME_RATE,
                base + (seg.end_frame + 1) / _FRAME_RATE,
            )
            for seg in self._decoder.seg()
            if not _is_filler(seg.word)
        )
        start = words[0].start if words else base
        end = words[-1].end if words else base + self._utt_fed / _RATE
        return Transcript(
            text,
            final=final,
            start=start,
            end=max(start, end),
            words=words,
            speech_final=speech_final,
            from_finalize=from_finalize,
        )


def _text(hypstr: str) -> str:
    return " ".join(_clean_word(w) for w in hypstr.split() if not _is_filler(w))


class PocketSphinxStt:
    """Speech-to-text on PocketSphinx (offline; the ``pocketsphinx`` wheel's US English).

    Parameters
    ----------
    endpointing : bool, default True
        Let the engine's endpointer end utterances (finals with ``speech_final=True``).
        Without it an utterance lasts from the first audio to the next
        :meth:`~_PocketSphinxStream.finalize` or :meth:`~_PocketSphinxStream.end_input`.
    endpoint_window : float, default 0.5
        Seconds of audio the endpointer judges at a time: an utterance ends once
        ``endpoint_ratio`` of such a window is non-speech.
    endpoint_ratio : float, default 0.9
        The fraction of the window that must agree for a transition.
    vad_mode : int, default 0
        The endpointer's voice-activity aggressiveness, 0 (loose) to 3 (strict).
    interim_interval : float, default 0.25
        Seconds of decoded speech between interim results (sent only when the text
        changed).
    max_backlog : float, default 30.0
        Seconds of audio that may wait for the decoder; past that the stream fails with
        ``ServiceError("stt", "overloaded")``.
    keep_decoders : int, default 2
        Loaded decoders kept for later streams. Each holds about 100 MB with the default
        model and takes about half a second to load; one is loaded per concurrent stream.
    phrases : sequence of str, optional
        Bias recognition to these phrases: the language model becomes a trigram model of
        them (and their words the whole vocabulary), built here in well under a second.
        Words outside it cannot be recognised, so list what callers of the application
        say (questions, days, times, names...). Lower-cased; punctuation ignored.
    decoder_options : dict, optional
        Extra ``pocketsphinx.Decoder`` options (``hmm``, ``dict``, ``lm``, ``beam``, ...).

    Attributes
    ----------
    sample_rate : int
        16000: the shipped model is wideband. Telephone audio is better upsampled to it
        than decoded with an 8 kHz front end (measured in ``docs/offline-engines.md``).

    Raises
    ------
    ServiceError
        ``reason="unavailable"``: the ``pocketsphinx`` wheel is not installed.
    ValueError
        A parameter out of range, or ``phrases`` with words the dictionary lacks.
    """

    def __init__(
        self,
        *,
        endpointing: bool = True,
        endpoint_window: float = 0.5,
        endpoint_ratio: float = 0.9,
        vad_mode: int = 0,
        interim_interval: float = 0.25,
        max_backlog: float = 30.0,
        keep_decoders: int = 2,
        phrases: Sequence[str] = (),
        decoder_options: dict[str, Any] | None = None,
    ) -> None:
        if not pocketsphinx_available():
            raise ServiceError(
                "stt",
                "unavailable",
                "stt: needs the pocketsphinx wheel (pip install 'voxwire[demo]')",
            )
        if not 0.06 <= endpoint_window <= 5.0:
            raise ValueError(f"endpoint_window must be 0.06 to 5 s, got {endpoint_window}")
        if not 0.0 < endpoint_ratio < 1.0:
            raise ValueError(f"endpoint_ratio must be in (0, 1), got {endpoint_ratio}")
        if vad_mode not in (0, 1, 2, 3):
            raise ValueError(f"vad_mode must be 0 to 3, got {vad_mode}")
        if not 0.01 <= interim_interval <= 10.0:
            raise ValueError(f"interim_interval must be 0.01 to 10 s, got {interim_interval}")
        if not max_backlog > 0:
            raise ValueError(f"max_backlog must be positive, got {max_backlog}")
        if keep_decoders < 0:
            raise ValueError(f"keep_decoders must be >= 0, got {keep_decoders}")
        self.endpointing = endpointing
        self.endpoint_window = endpoint_window
        self.endpoint_ratio = endpoint_ratio
        self.vad_mode = vad_mode
        self.interim_interval = interim_interval
        self.max_backlog = max_backlog
        config: dict[str, Any] = {"samprate": _RATE, "loglevel": "FATAL"}
        config.update(decoder_options or {})
        if config["samprate"] != _RATE:
            raise ValueError(f"samprate must be {_RATE} (the model's rate)")
        if isinstance(phrases, str):
            raise TypeError("phrases must be a sequence of str, not one str")
        bias = _phrase_model(phrases) if phrases else None
        if bias is not None and ("lm" in config or "dict" in config):
            raise ValueError("phrases replaces the lm and dict options: give one or the other")
        self._pool = _DecoderPool(config, keep_decoders, bias)

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`~_PocketSphinxStream.push` takes: 16000 Hz."""
        return _RATE

    def warm_up(self) -> None:
        """Load a decoder now (blocking, ~0.5 s) so the first stream need not wait."""
        self._pool.give(self._pool.take())

    def stream(self) -> _PocketSphinxStream:
        """Open a recognition stream (call from within the running event loop)."""
        return _PocketSphinxStream(self, asyncio.get_running_loop())
