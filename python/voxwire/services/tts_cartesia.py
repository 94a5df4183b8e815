"""Text-to-speech over Cartesia's WebSocket, with word timestamps.

:class:`CartesiaTts` implements :class:`~voxwire.services.base.TextToSpeech` on
``wss://api.cartesia.ai/tts/websocket`` (Cartesia API reference, "Text to Speech
(WebSocket)", https://docs.cartesia.ai/2026-03-01/api-reference/tts/websocket, and the
contexts guide). It needs the ``websockets`` package.

The wire protocol, as used here:

- Connect with the headers ``X-API-Key`` and ``Cartesia-Version`` (default
  ``2026-03-01``). One connection per :class:`CartesiaTts`, shared by its streams; one
  ``context_id`` per stream (per reply).
- Every message repeats the request: ``{"model_id", "voice": {"mode": "id", "id"},
  "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate"},
  "language", "context_id", "transcript", "continue", "add_timestamps": true}``.
  Transcripts of a context are joined as given (the client supplies the spaces).
  Pushed text is sent at :meth:`~CartesiaStream.flush` with ``continue: true``;
  :meth:`~CartesiaStream.end_input` sends the rest (perhaps empty) with
  ``continue: false``; :meth:`~CartesiaStream.aclose` (a barge-in) sends
  ``{"context_id", "cancel": true}`` at once and drops late audio of the context.
- The server sends ``{"type": "chunk", "data": BASE64, "context_id"}``,
  ``{"type": "timestamps", "word_timestamps": {"words", "start", "end"}, "context_id"}``
  (seconds of the context's audio), ``{"type": "done", "context_id"}`` at the end,
  ``{"type": "error", "title"?, "message"?, "error"?, "context_id"?}`` on failure;
  ``flush_done`` and ``phoneme_timestamps`` are ignored.

Word timings arrive apart from the audio, after it: they are yielded with the next audio
chunk (their times unchanged, in seconds of the stream's audio), or with an empty chunk
at ``done``. A barge-in in the moment between a word's audio and its timestamps loses
that word from what was heard.

Errors are :class:`~voxwire.errors.ServiceError` (``service="tts"``) with the reasons of
:class:`~voxwire.services.ws.WsTtsClient`: ``status_NNN`` (the handshake
refused), ``connect``, ``timeout``, ``closed``, ``bad_message``, and ``server_error`` for
an ``error`` message (its ``error_code`` or ``title`` in the text). The API key is only in
the header, never in a ``repr`` or an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from voxwire.errors import ServiceError
from voxwire.services.base import SpeechAudio, Word
from voxwire.services.retry import RetryPolicy
from voxwire.services.ws import WsTtsClient, WsTtsStream

__all__ = ["CARTESIA_VERSION", "CartesiaStream", "CartesiaTts"]

CARTESIA_VERSION = "2026-03-01"
"""The API version sent by default."""


def _bad(message: str) -> ServiceError:
    return ServiceError("tts", "bad_message", f"tts: {message}")


class CartesiaStream(WsTtsStream):
    """One reply on a :class:`CartesiaTts` connection: one ``context_id``."""

    _client: CartesiaTts

    def __init__(self, client: CartesiaTts, context_id: str) -> None:
        super().__init__(client, context_id)
        self._pending = ""
        self._words: list[Word] = []
        self._last_start = 0.0

    def push(self, text: str) -> None:
        """Queue text (sent at the next :meth:`flush` or :meth:`end_input`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not (self._ended or self._closed):
            self._pending += text

    def flush(self) -> None:
        """Send the text pushed so far (``continue: true``)."""
        if self._ended or self._closed or not self._pending:
            return
        text, self._pending = self._pending, ""
        self._due = True
        self._send(self._client._request(self.context_id, text, more=True))

    def end_input(self) -> None:
        """Send the rest with ``continue: false``: the audio follows, then ``done``."""
        if self._ended or self._closed:
            return
        self._ended = True
        text, self._pending = self._pending, ""
        if not self._started and not text:
            self._outbox.finish()
            self._client._forget(self)
            return
        self._due = True
        self._send(self._client._request(self.context_id, text, more=False))

    def _cancel_message(self) -> dict[str, Any]:
        return {"context_id": self.context_id, "cancel": True}

    def _on_message(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "chunk":
            pcm = self._audio(message.get("data"))
            words, self._words = tuple(self._words), []
            self._outbox.put(SpeechAudio(pcm, words))
            if message.get("done") is True:
                self._done()
        elif kind == "timestamps":
            self._timestamps(message.get("word_timestamps"))
        elif kind == "done":
            self._done()
        elif kind == "error":
            raise self._client._server_error(message)
        elif kind not in ("flush_done", "phoneme_timestamps"):
            raise _bad(f"unknown message type {kind!r}")

    def _done(self) -> None:
        if self._words:
            words, self._words = tuple(self._words), []
            self._outbox.put(SpeechAudio(np.zeros(0, dtype=np.int16), words))
        self._finish()

    def _timestamps(self, value: object) -> None:
        if not isinstance(value, Mapping):
            raise _bad("word_timestamps must be an object")
        words, starts, ends = (value.get(k) for k in ("words", "start", "end"))
        if not (isinstance(words, list) and isinstance(starts, list) and isinstance(ends, list)):
            raise _bad("word_timestamps needs words, start and end lists")
        if not len(words) == len(starts) == len(ends):
            raise _bad("word_timestamps lists differ in length")
        for text, start, end in zip(words, starts, ends, strict=True):
            if not isinstance(text, str):
                raise _bad("a timed word must be a string")
            for t in (start, end):
                if isinstance(t, bool) or not isinstance(t, int | float):
                    raise _bad("word times must be numbers")
            if end < start or start < self._last_start - 1e-6:
                raise _bad("word times go backwards")
            self._last_start = float(start)
            self._words.append(Word(text, float(start), float(end)))


class CartesiaTts(WsTtsClient):
    """Cartesia's TTS WebSocket as a :class:`~voxwire.services.base.TextToSpeech`.

    Parameters
    ----------
    voice_id
        The voice (``{"mode": "id", "id": voice_id}``).
    api_key
        Sent as the ``X-API-Key`` header.
    model_id, language
        The model (``sonic-3``, ...) and the language code.
    sample_rate
        The ``pcm_s16le`` output rate, 8000 to 48000 Hz.
    base_url
        ``wss://api.cartesia.ai`` (``ws://`` for a local server).
    version
        The ``Cartesia-Version`` header.
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
        model_id: str = "sonic-3",
        language: str = "en",
        sample_rate: int = 16000,
        base_url: str = "wss://api.cartesia.ai",
        version: str = CARTESIA_VERSION,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(voice_id, str) or not voice_id:
            raise ValueError(f"voice_id must be a non-empty str, got {voice_id!r}")
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, int)
            or not 8000 <= sample_rate <= 48000
        ):
            raise ValueError(f"sample_rate must be an int in [8000, 48000], got {sample_rate!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("ws://", "wss://")):
            raise ValueError(f"base_url must be a ws:// or wss:// URL, got {base_url!r}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        super().__init__(timeout=timeout, connect_timeout=connect_timeout, retry=retry)
        self.voice_id = voice_id
        self.model_id = model_id
        self.language = language
        self._rate = sample_rate
        self._base = base_url.rstrip("/")
        self._api_key = api_key or None
        self.version = version

    @property
    def sample_rate(self) -> int:
        """The rate of the audio it yields, in Hz."""
        return self._rate

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"CartesiaTts(voice_id={self.voice_id!r}, rate={self._rate}, api_key={key})"

    def stream(self) -> CartesiaStream:
        """Open a synthesis stream: a new context on the shared connection."""
        return CartesiaStream(self, self._new_id())

    def _request(self, context_id: str, transcript: str, *, more: bool) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "voice": {"mode": "id", "id": self.voice_id},
            "output_format": {
                "container": "raw",
                "encoding": "pcm_s16le",
                "sample_rate": self._rate,
            },
            "language": self.language,
            "context_id": context_id,
            "transcript": transcript,
            "continue": more,
            "add_timestamps": True,
        }

    def _url(self) -> str:
        return f"{self._base}/tts/websocket"

    def _headers(self) -> dict[str, str]:
        headers = {"Cartesia-Version": self.version}
        if self._api_key:
            headers["X-API-Key"] = self._api_key
        return headers

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _context_of(self, message: Mapping[str, Any]) -> str | None:
        context = message.get("context_id")
        return context if isinstance(context, str) else None

    def _global_error(self, message: Mapping[str, Any]) -> bool:
        return message.get("type") == "error"

    def _server_error(self, message: Mapping[str, Any]) -> ServiceError:
        parts = [
            str(message[k]) for k in ("error_code", "title", "message", "error") if message.get(k)
        ]
        text = ": ".join(parts) or "unknown error"
        return ServiceError(
            "tts", "server_error", self._scrub(f"tts: the server sent an error: {text}")
        )
