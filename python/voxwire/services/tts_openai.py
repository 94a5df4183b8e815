"""Text-to-speech over OpenAI's ``POST /audio/speech``, streamed as raw PCM.

:class:`OpenAISpeechTts` implements :class:`~voxwire.services.base.TextToSpeech` for
OpenAI and for servers that claim its speech endpoint. It needs aiohttp.

The wire protocol (OpenAI API reference, "Create speech",
https://platform.openai.com/docs/api-reference/audio/createSpeech):

- ``POST {base_url}/audio/speech`` with ``Authorization: Bearer KEY`` (left out where no
  key is given) and a JSON body ``{"model", "input", "voice", "response_format": "pcm"}``
  (``speed`` and ``instructions`` when set; ``input`` is at most 4096 characters).
- ``pcm`` is raw 16-bit little-endian mono samples at 24 kHz with no header, so the body
  is read in pieces as it arrives and yielded as it comes.
- With ``stream_format: "sse"`` the answer is ``text/event-stream`` of
  ``{"type": "speech.audio.delta", "audio": BASE64}`` events and a last
  ``{"type": "speech.audio.done"}``. The client switches on the answer's
  ``Content-Type``, so a server that ignores ``stream_format`` works either way.

Streaming: one request per flushed text, in order (the voice agent pushes a sentence and
flushes it). The endpoint gives no word timings: :attr:`SpeechAudio.words` is empty and
the last chunk of each text carries it in :attr:`SpeechAudio.text`, so the conversation
can estimate them. :meth:`OpenAISpeechStream.aclose` (a barge-in) closes the request in
flight at once (the server sees the client leave) and sends no more.

Errors are raised from the iteration as :class:`~voxwire.errors.ServiceError`
(``service="tts"``), ``reason`` one of ``status_NNN`` (with the server's error text),
``connect``, ``timeout`` (:class:`~voxwire.errors.ServiceTimeout`: no connection within
``connect_timeout`` or no byte within ``timeout``), ``closed`` (the connection broke),
``bad_message`` (an SSE event that is not of the protocol, or a JSON answer),
``server_error`` (an ``error`` event). The API key is only in the header: never in a
``repr`` or an error message (a server that echoes it has it replaced by ``***``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import PCM, Outbox, SpeechAudio, StreamMixin
from voxwire.services.http import (
    HttpSession,
    HttpStatusError,
    SseEvent,
    SseParser,
    aiohttp_module,
    positive,
)
from voxwire.services.retry import RetryPolicy, parse_retry_after, with_retries

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SAMPLE_RATE", "OpenAISpeechStream", "OpenAISpeechTts", "pcm_from_bytes"]

SAMPLE_RATE: Final = 24000
"""The rate of OpenAI's ``pcm`` output, in Hz."""

_READ: Final = 64 * 1024
_ERROR_BODY: Final = 64 * 1024
_ERROR_TEXT: Final = 300


def pcm_from_bytes(data: bytes, carry: bytes = b"") -> tuple[PCM, bytes]:
    """Little-endian PCM16 samples of ``carry + data`` and the odd byte left over."""
    data = carry + data
    cut = len(data) - len(data) % 2
    return np.frombuffer(data[:cut], dtype="<i2").astype(np.int16), data[cut:]


class OpenAISpeechTts(HttpSession):
    """OpenAI's speech endpoint as a :class:`~voxwire.services.base.TextToSpeech`.

    Parameters
    ----------
    base_url
        The API root (``https://api.openai.com/v1``); requests go to
        ``{base_url}/audio/speech``.
    model, voice
        The model (``gpt-4o-mini-tts``, ``tts-1``, ...) and voice (``alloy``, ...).
    api_key
        Sent as ``Authorization: Bearer KEY``; ``None`` sends none.
    speed, instructions
        Sent when set (``instructions`` is not for the ``tts-1`` models).
    stream_format
        ``"sse"`` asks for server-sent events, ``None`` (default) for the raw body.
    timeout, connect_timeout
        Seconds to wait for each byte of the answer (before the first and between two:
        a stall is a :class:`~voxwire.errors.ServiceTimeout`), and for the connection.
    retry
        When a request that failed before its first byte is tried again
        (:class:`~voxwire.services.retry.RetryPolicy`; default: up to 3 attempts on 429,
        5xx and a refused connection, within 3 s).

    Raises
    ------
    ServiceError
        ``unavailable``: aiohttp is not installed.
    ValueError, TypeError
        A parameter is out of range or of the wrong type.
    """

    _kind = "tts"

    def __init__(
        self,
        base_url: str,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        *,
        api_key: str | None = None,
        speed: float | None = None,
        instructions: str | None = None,
        stream_format: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        for name, value in (("model", model), ("voice", voice)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str, got {value!r}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        if speed is not None and not 0.25 <= positive("speed", speed) <= 4.0:
            raise ValueError(f"speed must be in [0.25, 4], got {speed!r}")
        if stream_format not in (None, "audio", "sse"):
            raise ValueError(f"stream_format must be None, 'audio' or 'sse', got {stream_format!r}")
        self._aiohttp: Any = aiohttp_module("tts", "OpenAISpeechTts")
        self._url = base_url.rstrip("/") + "/audio/speech"
        self.model = model
        self.voice = voice
        self._api_key = api_key or None
        self.speed = speed
        self.instructions = instructions
        self.stream_format = stream_format
        self.timeout = positive("timeout", timeout)
        self.connect_timeout = positive("connect_timeout", connect_timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self.retries = 0
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def sample_rate(self) -> int:
        """24000: OpenAI's ``pcm`` rate."""
        return SAMPLE_RATE

    @property
    def url(self) -> str:
        """The URL requests are posted to."""
        return self._url

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenAISpeechTts(url={self._url!r}, voice={self.voice!r}, api_key={key})"

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body that synthesises ``text``."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        }
        if self.speed is not None:
            body["speed"] = self.speed
        if self.instructions:
            body["instructions"] = self.instructions
        if self.stream_format is not None:
            body["stream_format"] = self.stream_format
        return body

    def stream(self) -> OpenAISpeechStream:
        """Open a synthesis stream (one per reply)."""
        return OpenAISpeechStream(self)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "audio/pcm, text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _warm_url(self) -> str:
        return self._url.removesuffix("/audio/speech") + "/models"

    def _warm_headers(self) -> dict[str, str]:
        return {**self._headers(), "Accept": "application/json"}

    async def __aenter__(self) -> OpenAISpeechTts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class OpenAISpeechStream(StreamMixin):
    """One reply's synthesis: a request per flushed text, audio yielded as it arrives."""

    def __init__(self, tts: OpenAISpeechTts) -> None:
        self._tts = tts
        self._pending = ""
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._outbox: Outbox[SpeechAudio] = Outbox()
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._closed = False
        self.requests = 0
        """Requests made so far (retries included)."""
        self.retries = 0
        """Requests tried again (each failed before its first byte)."""
        self._body = 0  # bytes of the current text's answer read

    def push(self, text: str) -> None:
        """Queue text (sent at the next :meth:`flush` or :meth:`end_input`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not (self._ended or self._closed):
            self._pending += text

    def flush(self) -> None:
        """Synthesise the text pushed so far now (one request)."""
        if self._ended or self._closed:
            return
        text, self._pending = self._pending, ""
        if text.strip():
            self._texts.put_nowait(text)
            self._start()

    def end_input(self) -> None:
        """No more text: the rest is synthesised, then the iteration ends."""
        if self._ended or self._closed:
            return
        self.flush()
        self._ended = True
        self._texts.put_nowait(None)
        self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                text = await self._texts.get()
                if text is None:
                    break
                await self._speak(text)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._outbox.finish(self._error(e))
            return
        self._outbox.finish()

    async def _speak(self, text: str) -> None:
        self._body = 0
        await with_retries(
            self._tts.retry,
            lambda: self._attempt(text),
            fresh=lambda: self._body == 0 and not self._closed,
            on_retry=self._retried,
        )

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1
        self._tts.retries += 1

    async def _attempt(self, text: str) -> None:
        try:
            await self._request(text)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            error = self._error(e)
            if isinstance(error, ServiceError):
                raise error from None
            raise

    async def _request(self, text: str) -> None:
        tts = self._tts
        session = tts._session_now()
        self.requests += 1
        async with session.post(
            tts._url, json=tts.request_body(text), headers=tts._headers()
        ) as response:
            if response.status >= 400:
                raise await self._status_error(response)
            kind = response.content_type
            if kind == "application/json":
                raw = await response.content.read(_ERROR_BODY)
                body = tts._scrub(raw.decode("utf-8", "replace"))[:_ERROR_TEXT]
                raise ServiceError(
                    "tts", "bad_message", f"tts: the answer is JSON, not audio: {body}"
                )
            if kind == "text/event-stream":
                await self._sse(response, text)
            else:
                await self._raw(response, text)

    async def _raw(self, response: aiohttp.ClientResponse, text: str) -> None:
        carry = b""
        held: PCM | None = None
        while True:
            data = await response.content.read(_READ)
            if not data:
                break
            self._body += len(data)
            pcm, carry = pcm_from_bytes(data, carry)
            if not len(pcm):
                continue
            if held is not None:
                self._outbox.put(SpeechAudio(held))
            held = pcm
        self._outbox.put(SpeechAudio(held if held is not None else _empty(), text=text))

    async def _sse(self, response: aiohttp.ClientResponse, text: str) -> None:
        parser = SseParser("tts")
        carry = b""
        held: PCM | None = None
        done = False
        while not done:
            data = await response.content.read(_READ)
            self._body += len(data)
            events = parser.feed(data) if data else parser.end()
            for event in events:
                audio, done = _speech_event(event)
                if audio:
                    pcm, carry = pcm_from_bytes(audio, carry)
                    if len(pcm):
                        if held is not None:
                            self._outbox.put(SpeechAudio(held))
                        held = pcm
                if done:
                    break
            if not data:
                break
        if not done:
            raise ServiceError("tts", "closed", "tts: the event stream ended before its end")
        self._outbox.put(SpeechAudio(held if held is not None else _empty(), text=text))

    async def _status_error(self, response: aiohttp.ClientResponse) -> ServiceError:
        try:
            raw = await response.content.read(_ERROR_BODY)
        except Exception:  # the body is only for the message
            raw = b""
        text = raw.decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            value = json.loads(text)
            error = value.get("error", value)
            text = error.get("message", text) if isinstance(error, dict) else str(error)
        text = self._tts._scrub(str(text))[:_ERROR_TEXT]
        message = f"tts: HTTP {response.status} {response.reason or ''}".rstrip()
        return HttpStatusError(
            "tts",
            response.status,
            f"{message}: {text}" if text else message,
            parse_retry_after(response.headers.get("Retry-After")),
        )

    def _error(self, e: BaseException) -> BaseException:
        tts = self._tts
        if isinstance(e, ServiceError):
            if tts._api_key and tts._api_key in str(e):
                return ServiceError(e.service, e.reason, tts._scrub(str(e)))
            return e
        aiohttp = tts._aiohttp
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", ())
        if connect_timeout and isinstance(e, connect_timeout):
            return ServiceTimeout("tts", tts.connect_timeout)
        if isinstance(e, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return ServiceTimeout("tts", tts.timeout)
        if isinstance(e, aiohttp.ClientConnectorError):
            return ServiceError("tts", "connect", tts._scrub(f"tts: cannot connect: {e}"))
        if isinstance(e, aiohttp.ClientError | OSError):
            return ServiceError(
                "tts", "closed", tts._scrub(f"tts: the connection broke: {type(e).__name__}: {e}")
            )
        return e

    async def aclose(self) -> None:
        """Stop now (a barge-in): the request in flight is closed, nothing more is sent."""
        self._closed = True
        self._outbox.drop()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def __aiter__(self) -> AsyncIterator[SpeechAudio]:
        return self

    async def __anext__(self) -> SpeechAudio:
        return await self._outbox.get()


def _empty() -> PCM:
    return np.zeros(0, dtype=np.int16)


def _speech_event(event: SseEvent) -> tuple[bytes, bool]:
    """(audio bytes, whether the speech is done) of one SSE event."""
    try:
        value = json.loads(event.data)
    except ValueError:
        raise ServiceError(
            "tts", "bad_message", f"tts: an event is not JSON: {event.data[:200]!r}"
        ) from None
    if not isinstance(value, Mapping):
        raise ServiceError("tts", "bad_message", "tts: an event must be a JSON object")
    kind = value.get("type")
    if event.event == "error" or kind == "error" or value.get("error") is not None:
        error = value.get("error", value)
        message = error.get("message", "") if isinstance(error, Mapping) else str(error)
        raise ServiceError("tts", "server_error", f"tts: the server sent an error: {message}")
    if kind == "speech.audio.delta":
        audio = value.get("audio")
        if not isinstance(audio, str):
            raise ServiceError("tts", "bad_message", "tts: speech.audio.delta without audio")
        try:
            return base64.b64decode(audio, validate=True), False
        except (binascii.Error, ValueError):
            raise ServiceError("tts", "bad_message", "tts: audio is not base64") from None
    if kind == "speech.audio.done":
        return b"", True
    return b"", False
