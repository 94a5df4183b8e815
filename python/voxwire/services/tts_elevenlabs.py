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

import asyncio
import base64
import binascii
import importlib
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, TypeVar

import numpy as np

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import PCM, Outbox, SpeechAudio, StreamMixin, Word

__all__ = [
    "SAMPLE_RATES",
    "ElevenLabsStream",
    "ElevenLabsTts",
    "WsTtsClient",
    "WsTtsStream",
    "words_from_alignment",
]

_C = TypeVar("_C", bound="WsTtsClient")

SAMPLE_RATES: Final = (8000, 16000, 22050, 24000)
"""The PCM output rates ElevenLabs offers (``pcm_RATE``)."""


def _bad(message: str) -> ServiceError:
    return ServiceError("tts", "bad_message", f"tts: {message}")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def b64_pcm(data: object, carry: bytes = b"") -> tuple[PCM, bytes]:
    """Little-endian PCM16 of base64 ``data`` after ``carry``, and the odd byte left."""
    if not isinstance(data, str):
        raise _bad(f"audio must be a base64 string, got {type(data).__name__}")
    try:
        raw = carry + base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("audio is not base64") from None
    cut = len(raw) - len(raw) % 2
    return np.frombuffer(raw[:cut], dtype="<i2").astype(np.int16), raw[cut:]


# --- the shared WebSocket client -----------------------------------------------------------


class WsTtsStream(StreamMixin):
    """One context on a :class:`WsTtsClient`'s connection (the vendor streams derive)."""

    def __init__(self, client: WsTtsClient, context_id: str) -> None:
        self._client = client
        self.context_id = context_id
        """The vendor's context id of this stream."""
        self._outbox: Outbox[SpeechAudio] = Outbox()
        self._carry = b""
        self.samples = 0
        """Samples of audio received so far."""
        self.messages_sent = 0
        """Messages of this stream sent so far."""
        self._ws: Any = None  # the connection its messages went on
        self._started = False
        self._due = False  # audio is expected (text flushed or input ended)
        self._ended = False
        self._closed = False

    # Vendor hooks --------------------------------------------------------------------------

    def _on_message(self, message: Mapping[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _cancel_message(self) -> dict[str, Any] | None:  # pragma: no cover
        raise NotImplementedError

    # Shared --------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            self._client._register(self)
        self._client._enqueue(self, message)

    def _audio(self, data: object) -> PCM:
        pcm, self._carry = b64_pcm(data, self._carry)
        self.samples += len(pcm)
        return pcm

    def _finish(self, error: BaseException | None = None) -> None:
        self._client._forget(self)
        self._outbox.finish(error)

    async def aclose(self) -> None:
        """Stop now (a barge-in): the vendor is told at once; late audio is dropped."""
        if self._closed:
            return
        self._closed = True
        self._outbox.drop()
        client = self._client
        if self._started and self.context_id in client._streams:
            client._purge(self)
            message = self._cancel_message()
            if message is not None:
                client._enqueue(self, message, force=True)
        client._forget(self)

    def __aiter__(self) -> AsyncIterator[SpeechAudio]:
        return self

    async def __anext__(self) -> SpeechAudio:
        outbox = self._outbox
        while True:
            if not self._due or outbox.done:
                return await outbox.get()
            try:
                return await asyncio.wait_for(outbox.get(), self._client.timeout)
            except asyncio.TimeoutError:
                if not self._due or outbox.done:
                    continue
                error = ServiceTimeout("tts", self._client.timeout)
                await self.aclose()
                raise error from None


class WsTtsClient:
    """One WebSocket shared by context streams: a sender and a reader task.

    Messages are sent in the order the streams make them; each message read is routed to
    its stream by context id. A connection that fails finishes every open stream with the
    error; the next message reconnects.
    """

    def __init__(self, *, timeout: float, connect_timeout: float) -> None:
        try:
            self._client_mod: Any = importlib.import_module("websockets.asyncio.client")
            self._ws_mod: Any = importlib.import_module("websockets")
        except ImportError as e:
            raise ServiceError(
                "tts", "unavailable", f"tts: {type(self).__name__} needs websockets ({e})"
            ) from e
        self.timeout = _positive("timeout", timeout)
        """Seconds a stream waits for its next message while audio is due."""
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        """Seconds to wait for the connection and its handshake."""
        self._streams: dict[str, WsTtsStream] = {}
        self._queue: asyncio.Queue[tuple[WsTtsStream, dict[str, Any]]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self.ignored = 0
        """Messages read for no open stream (late audio after a cancel, ...), dropped."""
        self.messages_sent = 0
        """Messages sent so far."""

    def _url(self) -> str:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _scrub(self, text: str) -> str:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _context_of(self, message: Mapping[str, Any]) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def _new_id(self) -> str:
        return f"vx{id(self):x}-{next(self._ids)}"

    def _register(self, stream: WsTtsStream) -> None:
        self._streams[stream.context_id] = stream

    def _forget(self, stream: WsTtsStream) -> None:
        if self._streams.get(stream.context_id) is stream:
            del self._streams[stream.context_id]

    def _enqueue(self, stream: WsTtsStream, message: dict[str, Any], force: bool = False) -> None:
        if stream._closed and not force:
            return
        self._queue.put_nowait((stream, message))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def _purge(self, stream: WsTtsStream) -> None:
        """Forget the messages of ``stream`` not yet sent."""
        kept = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item[0] is not stream:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)

    async def _connect(self) -> Any:
        if self._ws is not None:
            return self._ws
        ws_mod = self._ws_mod
        try:
            ws = await asyncio.wait_for(
                self._client_mod.connect(
                    self._url(),
                    additional_headers=self._headers(),
                    open_timeout=None,
                    max_size=16 * 1024 * 1024,
                    proxy=None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise ServiceTimeout("tts", self.connect_timeout) from None
        except ws_mod.InvalidStatus as e:
            status = e.response.status_code
            body = self._scrub(bytes(e.response.body or b"").decode("utf-8", "replace"))
            raise ServiceError(
                "tts", f"status_{status}", f"tts: the handshake got HTTP {status}: {body[:300]}"
            ) from None
        except (OSError, ws_mod.InvalidHandshake) as e:
            raise ServiceError(
                "tts", "connect", self._scrub(f"tts: cannot connect: {type(e).__name__}: {e}")
            ) from None
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(ws))
        return ws

    async def _send_loop(self) -> None:
        while not self._queue.empty():
            stream, message = self._queue.get_nowait()
            for attempt in (1, 2):
                try:
                    ws = await self._connect()
                    await ws.send(json.dumps(message))
                except ServiceError as e:
                    self._fail(e, everyone=True)
                except self._ws_mod.ConnectionClosed as e:
                    if self._ws is ws:
                        self._ws = None
                    if attempt == 1 and stream._ws is None:
                        # An idle connection the server had closed: a stream with
                        # nothing on it yet goes on a new one.
                        continue
                    error = ServiceError("tts", "closed", f"tts: the connection broke: {e}")
                    stream._finish(error)
                    self._fail(error, ws=ws)
                except Exception as e:  # the connection broke while sending
                    error = ServiceError(
                        "tts", "closed", self._scrub(f"tts: the connection broke: {e}")
                    )
                    stream._finish(error)
                    self._fail(error)
                else:
                    stream._ws = ws
                    stream.messages_sent += 1
                    self.messages_sent += 1
                break

    async def _read_loop(self, ws: Any) -> None:
        error: ServiceError | None = None
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    error = _bad(f"a message is not JSON: {str(raw)[:200]!r}")
                    break
                if not isinstance(message, dict):
                    error = _bad("a message must be a JSON object")
                    break
                context = self._context_of(message)
                stream = self._streams.get(context) if context is not None else None
                if stream is None:
                    if context is None and self._global_error(message):
                        error = self._server_error(message)
                        break
                    self.ignored += 1
                    continue
                try:
                    stream._on_message(message)
                except ServiceError as e:
                    stream._finish(e)
            else:
                error = ServiceError("tts", "closed", "tts: the server closed the connection")
        except self._ws_mod.ConnectionClosed as e:
            error = ServiceError("tts", "closed", f"tts: the connection broke: {e}")
        except asyncio.CancelledError:
            raise
        finally:
            if self._ws is ws:
                self._ws = None
        if error is not None:
            self._fail(error, ws=ws)
        await ws.close()

    def _global_error(self, message: Mapping[str, Any]) -> bool:
        return message.get("error") is not None

    def _server_error(self, message: Mapping[str, Any]) -> ServiceError:
        error = message.get("message") or message.get("error") or message
        return ServiceError(
            "tts", "server_error", self._scrub(f"tts: the server sent an error: {error}")
        )

    def _fail(self, error: ServiceError, *, ws: Any = None, everyone: bool = False) -> None:
        """End the streams on connection ``ws`` (any, if ``None``) with ``error``.

        With ``everyone``, the streams waiting for a connection end too; the others go
        on a new connection.
        """
        failed = {
            stream
            for stream in self._streams.values()
            if everyone or (stream._ws is not None and (ws is None or stream._ws is ws))
        }
        for stream in failed:
            stream._finish(error)
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for item in items:
            if not everyone and item[0] not in failed and not item[0]._closed:
                self._queue.put_nowait(item)

    async def aclose(self) -> None:
        """Close the connection (open streams end with ``closed``)."""
        for task in (self._sender, self._reader):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._fail(ServiceError("tts", "closed", "tts: the client was closed"), everyone=True)

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
    ) -> None:
        if not isinstance(voice_id, str) or not voice_id:
            raise ValueError(f"voice_id must be a non-empty str, got {voice_id!r}")
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("ws://", "wss://")):
            raise ValueError(f"base_url must be a ws:// or wss:// URL, got {base_url!r}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        super().__init__(timeout=timeout, connect_timeout=connect_timeout)
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
