"""Text-to-speech over ElevenLabs' multi-context WebSocket, with word timings.

:class:`ElevenLabsTts` implements :class:`~voxwire.services.base.TextToSpeech` on
``wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input`` (ElevenLabs
API reference, "Multi-Context WebSocket",
https://elevenlabs.io/docs/api-reference/websockets/multi-context). It needs the
``websockets`` package.

The wire protocol, as used here:

- Connect with the ``xi-api-key`` header and the query ``model_id``, ``output_format``
  (``pcm_8000``, ``pcm_16000``, ``pcm_22050`` or ``pcm_24000``: raw 16-bit little-endian
  mono), ``sync_alignment=true`` (alignment in the same message as its audio) and
  ``inactivity_timeout``.
- One connection per :class:`ElevenLabsTts`, shared by its streams; one ``context_id`` per
  stream (per reply). The first text of a context is the init message
  ``{"text": " ", "context_id", "voice_settings"?}``; then ``{"text", "context_id"}``
  pieces; :meth:`~ElevenLabsStream.flush` sends ``{"context_id", "flush": true}``;
  :meth:`~ElevenLabsStream.end_input` and :meth:`~ElevenLabsStream.aclose` send
  ``{"context_id", "close_context": true}``.
- The server sends ``{"audio": BASE64, "alignment": {"chars", "charStartTimesMs",
  "charDurationsMs"}, "contextId"}`` (also ``normalizedAlignment``; ``context_id`` is
  accepted too), then ``{"isFinal": true, "contextId"}`` when the context is done, and
  ``{"error": ...}`` on failure.

Word timings: alignment times are relative to the start of their message's audio, so each
is offset by the samples of the context already received, giving seconds of the stream's
own audio. Characters are grouped into words at whitespace; a word is yielded with the
chunk in which it starts. The audio of a word still incomplete at the end of a message
(split over two messages) is held back until the word is complete, so a chunk carries
exactly the words whose audio starts in it; the audio before that word goes out at once.
The last word of a context completes at ``isFinal``.

:meth:`~ElevenLabsStream.aclose` (a barge-in) sends ``close_context`` at once, with no
text of the stream still unsent (so it is never generated or billed), and drops any late
audio of that context (counted in :attr:`WsTtsClient.ignored`). The protocol has no other
cancel: what the server still sends for a closed context is read and dropped.

Errors are :class:`~voxwire.errors.ServiceError` (``service="tts"``): ``connect`` (the
connection could not be made, or the handshake was refused: an HTTP 401 is
``status_401``), ``timeout`` (:class:`~voxwire.errors.ServiceTimeout`: no message for a
context within ``timeout`` while audio is due), ``closed`` (the connection dropped; the
next stream reconnects), ``bad_message`` (a message that is not JSON or not of the
protocol), ``server_error`` (an ``error`` message). The API key is only in the header,
never in a ``repr`` or an error message.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from voxwire.errors import ServiceError
from voxwire.services.base import PCM, SpeechAudio, Word
from voxwire.services.retry import RetryPolicy
from voxwire.services.ws import WsTtsClient, WsTtsStream, b64_pcm

__all__ = [
    "SAMPLE_RATES",
    "ElevenLabsStream",
    "ElevenLabsTts",
    "WsTtsClient",
    "WsTtsStream",
    "b64_pcm",
    "words_from_alignment",
]

SAMPLE_RATES: Final = (8000, 16000, 22050, 24000)
"""The PCM output rates ElevenLabs offers (``pcm_RATE``)."""


def _bad(message: str) -> ServiceError:
    return ServiceError("tts", "bad_message", f"tts: {message}")


# --- ElevenLabs --------------------------------------------------------------------------


def words_from_alignment(
    chars: list[str], starts: list[float], durations: list[float], offset: float
) -> list[tuple[str, float, float]]:
    """Characters with start times and durations (ms) to (char, start s, end s)."""
    if not (len(chars) == len(starts) == len(durations)):
        raise _bad("alignment lists differ in length")
    out = []
    for c, s, d in zip(chars, starts, durations, strict=True):
        if not isinstance(c, str) or isinstance(s, bool) or isinstance(d, bool):
            raise _bad("alignment entries must be strings and numbers")
        if not isinstance(s, int | float) or not isinstance(d, int | float) or d < 0:
            raise _bad("alignment times must be numbers (durations >= 0)")
        out.append((c, offset + s / 1000.0, offset + (s + d) / 1000.0))
    return out


class ElevenLabsStream(WsTtsStream):
    """One reply on an :class:`ElevenLabsTts` connection: one ``context_id``."""

    _client: ElevenLabsTts

    def __init__(self, client: ElevenLabsTts, context_id: str) -> None:
        super().__init__(client, context_id)
        self._word = ""
        self._word_start = 0.0
        self._word_end = 0.0
        self._last_time = 0.0
        self._held: list[PCM] = []  # audio received, not yet yielded
        self._emitted = 0  # samples yielded

    def push(self, text: str) -> None:
        """Send text (spaces as given; ElevenLabs buffers it until enough to speak)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self._ended or self._closed or not text:
            return
        if not self._started:
            self._send(self._client._init_message(self.context_id))
        self._send({"text": text, "context_id": self.context_id})

    def flush(self) -> None:
        """Generate what was pushed now."""
        if self._started and not (self._ended or self._closed):
            self._due = True
            self._send({"context_id": self.context_id, "flush": True})

    def end_input(self) -> None:
        """Close the context: the remaining audio follows, then ``isFinal`` ends it."""
        if self._ended or self._closed:
            return
        self._ended = True
        if not self._started:
            self._outbox.finish()
            self._client._forget(self)
            return
        self._due = True
        self._send({"context_id": self.context_id, "close_context": True})

    def _cancel_message(self) -> dict[str, Any]:
        return {"context_id": self.context_id, "close_context": True}

    def _on_message(self, message: Mapping[str, Any]) -> None:
        if message.get("error") is not None:
            raise self._client._server_error(message)
        audio = message.get("audio")
        words: list[Word] = []
        if audio is not None:
            offset = self.samples / self._client.sample_rate
            self._held.append(self._audio(audio))
            alignment = message.get("alignment") or message.get("normalizedAlignment")
            if alignment is not None:
                words = self._align(alignment, offset)
        if message.get("isFinal") is True:
            words.extend(self._end_word())
            self._yield(self.samples, words)
            self._finish()
            return
        # The audio of a word not yet complete is held back with it, so that a chunk
        # carries exactly the words whose audio starts in it.
        cut = self.samples
        if self._word:
            cut = min(cut, round(self._word_start * self._client.sample_rate))
        self._yield(cut, words)

    def _yield(self, cut: int, words: list[Word]) -> None:
        """Yield the held audio up to sample ``cut`` of the stream, with ``words``."""
        if cut <= self._emitted and not words:
            return
        held = np.concatenate(self._held) if self._held else np.zeros(0, dtype=np.int16)
        n = max(0, min(len(held), cut - self._emitted))
        self._held = [held[n:]] if n < len(held) else []
        self._emitted += n
        self._outbox.put(SpeechAudio(held[:n], tuple(words)))

    def _align(self, alignment: object, offset: float) -> list[Word]:
        if not isinstance(alignment, Mapping):
            raise _bad("alignment must be an object")
        lists = [alignment.get(k) for k in ("chars", "charStartTimesMs", "charDurationsMs")]
        if not all(isinstance(v, list) for v in lists):
            raise _bad("alignment needs chars, charStartTimesMs and charDurationsMs lists")
        timed = words_from_alignment(lists[0], lists[1], lists[2], offset)  # type: ignore[arg-type]
        words: list[Word] = []
        for char, start, end in timed:
            if start < self._last_time - 1e-6:
                raise _bad("alignment times go backwards")
            self._last_time = start
            if char.isspace():
                words.extend(self._end_word())
                continue
            if not self._word:
                self._word_start = start
            self._word += char
            self._word_end = end
        return words

    def _end_word(self) -> list[Word]:
        if not self._word:
            return []
        word = Word(self._word, self._word_start, self._word_end)
        self._word = ""
        return [word]


class ElevenLabsTts(WsTtsClient):
    """ElevenLabs' multi-context WebSocket as a :class:`~voxwire.services.base.TextToSpeech`.

    Parameters
    ----------
    voice_id
        The voice.
    api_key
        Sent as the ``xi-api-key`` header.
    model_id
        The model (``eleven_flash_v2_5``, ...).
    sample_rate
        One of :data:`SAMPLE_RATES`: the ``pcm_RATE`` output format.
    base_url
        ``wss://api.elevenlabs.io`` (``ws://`` for a local server).
    voice_settings
        Sent in each context's init message when given.
    inactivity_timeout
        Seconds the server keeps an idle connection (its ``inactivity_timeout``).
    timeout, connect_timeout
        Seconds a stream waits for its next message while audio is due, and for the
        connection.
    retry
        Retries of a connection that could not be made or was refused with 429/5xx
        (:class:`~voxwire.services.retry.RetryPolicy`; see :mod:`voxwire.services.ws`
        for the reconnect policy).

    Raises
    ------
    ServiceError
        ``unavailable``: websockets is not installed.
    ValueError
        A parameter is out of range.
    """

    def __init__(
        self,
        voice_id: str,
        *,
        api_key: str | None = None,
        model_id: str = "eleven_flash_v2_5",
        sample_rate: int = 16000,
        base_url: str = "wss://api.elevenlabs.io",
        voice_settings: Mapping[str, Any] | None = None,
        inactivity_timeout: int = 180,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(voice_id, str) or not voice_id:
            raise ValueError(f"voice_id must be a non-empty str, got {voice_id!r}")
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("ws://", "wss://")):
            raise ValueError(f"base_url must be a ws:// or wss:// URL, got {base_url!r}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        super().__init__(timeout=timeout, connect_timeout=connect_timeout, retry=retry)
        self.voice_id = voice_id
        self.model_id = model_id
        self._rate = sample_rate
        self._base = base_url.rstrip("/")
        self._api_key = api_key or None
        self.voice_settings = dict(voice_settings) if voice_settings else None
        self.inactivity_timeout = inactivity_timeout

    @property
    def sample_rate(self) -> int:
        """The rate of the audio it yields, in Hz."""
        return self._rate

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"ElevenLabsTts(voice_id={self.voice_id!r}, rate={self._rate}, api_key={key})"

    def stream(self) -> ElevenLabsStream:
        """Open a synthesis stream: a new context on the shared connection."""
        return ElevenLabsStream(self, self._new_id())

    def _url(self) -> str:
        query = urllib.parse.urlencode(
            {
                "model_id": self.model_id,
                "output_format": f"pcm_{self._rate}",
                "sync_alignment": "true",
                "inactivity_timeout": str(self.inactivity_timeout),
            }
        )
        voice = urllib.parse.quote(self.voice_id, safe="")
        return f"{self._base}/v1/text-to-speech/{voice}/multi-stream-input?{query}"

    def _headers(self) -> dict[str, str]:
        return {"xi-api-key": self._api_key} if self._api_key else {}

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _init_message(self, context_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {"text": " ", "context_id": context_id}
        if self.voice_settings:
            message["voice_settings"] = self.voice_settings
        return message

    def _context_of(self, message: Mapping[str, Any]) -> str | None:
        context = message.get("contextId", message.get("context_id"))
        return context if isinstance(context, str) else None
