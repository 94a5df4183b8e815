"""Deepgram live speech-to-text over its streaming WebSocket (``/v1/listen``).

:class:`DeepgramStt` implements :class:`~voxwire.services.base.SpeechToText`. It needs the
``websockets`` package (``pip install websockets``).

The wire protocol (Deepgram "Live audio" API reference and the "Keep alive", "Finalize"
and "Close stream" guides, developers.deepgram.com/docs):

- Connect to ``wss://api.deepgram.com/v1/listen?model=nova-3&encoding=linear16&
  sample_rate=16000&channels=1&interim_results=true&punctuate=true&endpointing=25&
  utterance_end_ms=1000&vad_events=true&language=en`` with the header
  ``Authorization: Token KEY``.
- Audio goes as binary frames; this client sends frames of about 50 ms
  (:attr:`DeepgramStt.frame_ms`), whatever the sizes of the pushes.
- Control messages are text frames: ``{"type":"KeepAlive"}`` (Deepgram closes a stream
  that had neither audio nor a KeepAlive for 10 s, error NET-0001; this client sends one
  after ``keepalive`` seconds, 4 s by default, without anything sent),
  ``{"type":"Finalize"}`` (the results for the audio so far come back with
  ``"from_finalize": true``) and ``{"type":"CloseStream"}`` (the server sends the last
  results and a ``Metadata`` message, then closes).
- The server sends ``Results`` (``is_final``, ``speech_final``, ``from_finalize``,
  ``start``, ``duration``, ``channel.alternatives[0]`` with ``transcript``, ``confidence``
  and ``words`` with ``word``, ``start``, ``end``, ``punctuated_word``),
  ``SpeechStarted``, ``UtteranceEnd`` (``last_word_end``) and ``Metadata``.

Results become :class:`~voxwire.services.base.Transcript`: ``is_final`` is ``final``;
``start`` / ``end`` are ``start`` and ``start + duration``; words carry their
``punctuated_word`` when there is one. ``SpeechStarted`` and ``UtteranceEnd`` are counted
(:attr:`DeepgramStream.speech_started`, :attr:`DeepgramStream.utterance_ends`) and yield
nothing by default: the voice agent ends turns with its own voice-activity detector and
:meth:`~DeepgramStream.finalize`, and an empty final result would only move its
"last final" time. With ``utterance_end_results=True`` each ``UtteranceEnd`` yields an
empty final ``Transcript(text="", final=True, speech_final=True)`` whose ``start`` and
``end`` are its ``last_word_end``, for a consumer that wants Deepgram's word-gap end of
utterance.

Rates: :attr:`DeepgramStt.sample_rate` is the rate pushed and declared. Telephony audio at
8 kHz goes as it is: with ``sample_rate=8000, encoding="mulaw"`` the agent's pipeline
rate equals ``stt.sample_rate`` (8000), so no resampling happens, and the client encodes
the pushed PCM16 to G.711 mu-law (half the bytes of ``linear16``).

Errors are raised from the iteration as :class:`~voxwire.errors.ServiceError`
(``service="stt"``), ``reason`` one of:

``connect``
    the connection or the WebSocket upgrade failed (refused, unknown host, TLS).
``status_NNN``
    the server refused the upgrade with HTTP NNN (``status_401``: a bad key).
``timeout``
    :class:`~voxwire.errors.ServiceTimeout`: no upgrade within ``connect_timeout``; audio
    (or a ``Finalize``) sent and no message back for ``stall_timeout`` seconds (a stalled
    stream, before its first result as in the middle); or the stream did not end within
    ``drain_timeout`` after :meth:`~DeepgramStream.end_input`.
``closed``
    the server closed or dropped the connection before ``end_input`` (the close reason,
    such as ``NET-0001``, is in the message).
``bad_message``
    a message that is not JSON text or not of the protocol's shape.

The API key is sent only in the ``Authorization`` header: it is never logged, never in a
``repr`` and never in an error message.

Connection policy: the stream connects when it is opened inside a running loop (the
voice agent opens it at call start, so the first turn does not wait for the handshake).
A connection that cannot be made, or whose upgrade is refused with 429 or 5xx, is tried
again by ``retry`` (:class:`~voxwire.services.retry.RetryPolicy`) while no audio has been
sent on it. A stream whose connection drops or stalls ends with the error: its audio
cannot be resumed on a new connection (the results' times would restart at 0), so the
consumer opens a new stream (the voice agent does, and a
:class:`~voxwire.services.fallback.FallbackSTT` replays the unfinished utterance on the
next service). Deepgram answers the audio it gets with ``Results`` messages (interim
ones, and finals with empty transcripts over silence), which is what the stall detector
waits for; ``stall_timeout=None`` turns it off.

Examples
--------
>>> stt = DeepgramStt(api_key="...", sample_rate=8000, encoding="mulaw")
>>> stt.sample_rate, stt.frame_samples
(8000, 400)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlencode

import numpy as np

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.g711 import encode_ulaw
from voxwire.services.base import PCM, Outbox, StreamMixin, Transcript, Word
from voxwire.services.http import HttpStatusError
from voxwire.services.retry import RetryPolicy, parse_retry_after, with_retries
from voxwire.services.ws import Redacting

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["DeepgramStream", "DeepgramStt", "transcript_from_results"]

log = logging.getLogger(__name__)

Encoding = Literal["linear16", "mulaw"]

_KEEPALIVE: Final = '{"type":"KeepAlive"}'
_FINALIZE: Final = '{"type":"Finalize"}'
_CLOSE_STREAM: Final = '{"type":"CloseStream"}'
_MAX_MESSAGE: Final = 1 << 20  # bytes of one server message


async def _close(ws: ClientConnection) -> None:
    """The closing handshake (bounded by the connection's close timeout); the socket is
    aborted when the task is cancelled during it, so no connection outlives its stream."""
    try:
        await ws.close()
    except asyncio.CancelledError:
        ws.transport.abort()
        raise


def _reason(reason: str) -> str:
    return f", {reason}" if reason else ""


def _bad(message: str) -> ServiceError:
    return ServiceError("stt", "bad_message", f"stt: {message}")


def _number(obj: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{key!r} must be a number, got {type(value).__name__}")
    return float(value)


def transcript_from_results(message: Mapping[str, Any]) -> Transcript:
    """A Deepgram ``Results`` message as a :class:`~voxwire.services.base.Transcript`.

    Raises
    ------
    ServiceError
        ``bad_message``: the message is not of the documented shape.
    """
    channel = message.get("channel")
    if not isinstance(channel, dict):
        raise _bad("a Results message has no channel object")
    alternatives = channel.get("alternatives")
    if not isinstance(alternatives, list) or not alternatives:
        raise _bad("a Results message has no alternatives")
    best = alternatives[0]
    if not isinstance(best, dict):
        raise _bad("an alternative must be an object")
    text = best.get("transcript", "")
    if not isinstance(text, str):
        raise _bad("transcript must be a string")
    words_in = best.get("words", [])
    if not isinstance(words_in, list):
        raise _bad("words must be a list")
    words: list[Word] = []
    for w in words_in:
        if not isinstance(w, dict):
            raise _bad("a word must be an object")
        spelled = w.get("punctuated_word") or w.get("word")
        if not isinstance(spelled, str):
            raise _bad("a word has no text")
        words.append(Word(spelled, _number(w, "start"), _number(w, "end")))
    confidence = best.get("confidence")
    if confidence is not None:
        confidence = _number(best, "confidence")
    start = _number(message, "start")
    return Transcript(
        text=text,
        final=bool(message.get("is_final", False)),
        start=start,
        end=start + _number(message, "duration"),
        words=tuple(words),
        confidence=confidence,
        speech_final=bool(message.get("speech_final", False)),
        from_finalize=bool(message.get("from_finalize", False)),
    )


class DeepgramStt:
    """Deepgram live recognition (Nova models) over a WebSocket.

    Parameters
    ----------
    api_key
        Sent as ``Authorization: Token KEY``.
    model, language
        The ``model`` and ``language`` query parameters.
    sample_rate
        The rate :meth:`DeepgramStream.push` takes and the stream declares, in Hz.
    encoding
        ``"linear16"`` (PCM16 little-endian) or ``"mulaw"`` (G.711, encoded here).
    url
        The endpoint; a local test server is ``ws://127.0.0.1:PORT/v1/listen``.
    endpointing_ms
        Silence (ms) after which Deepgram marks ``speech_final``; ``None`` sends
        ``endpointing=false``.
    utterance_end_ms
        The word gap (ms) that sends ``UtteranceEnd``; ``None`` leaves it out (Deepgram
        takes at least 1000 and needs ``interim_results``).
    interim_results
        Ask for interim results (``final=False``).
    keepalive
        Seconds without anything sent after which a KeepAlive goes (Deepgram closes after
        10 s).
    punctuate, vad_events
        The query parameters of the same names.
    utterance_end_results
        Yield an empty final ``speech_final`` Transcript per ``UtteranceEnd`` (see the
        module notes).
    connect_timeout
        Seconds for the connection and the upgrade.
    drain_timeout
        Seconds for the stream to end after ``end_input``.
    stall_timeout
        Seconds without any message after audio or a ``Finalize`` was sent after which
        the stream fails with :class:`~voxwire.errors.ServiceTimeout` (``None``: never).
    retry
        Retries of a connection that could not be made (refused, 429, 5xx).
    frame_ms
        The duration of the audio frames sent.
    extra_query
        More query parameters, merged last (``{"smart_format": "true"}``).

    Raises
    ------
    ServiceError
        ``unavailable``: the ``websockets`` package is not installed.
    ValueError
        A parameter is out of range.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "nova-3",
        sample_rate: int = 16000,
        encoding: Encoding = "linear16",
        url: str = "wss://api.deepgram.com/v1/listen",
        language: str = "en",
        endpointing_ms: int | None = 300,
        utterance_end_ms: int | None = 1000,
        interim_results: bool = True,
        keepalive: float = 4.0,
        punctuate: bool = True,
        vad_events: bool = True,
        utterance_end_results: bool = False,
        connect_timeout: float = 10.0,
        drain_timeout: float = 10.0,
        frame_ms: int = 50,
        extra_query: Mapping[str, str] | None = None,
        stall_timeout: float | None = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if importlib.util.find_spec("websockets") is None:
            raise ServiceError("stt", "unavailable", "stt: pip install websockets")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty str")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must be a ws:// or wss:// URL, got {url!r}")
        if isinstance(sample_rate, bool) or sample_rate not in (8000, 16000, 24000, 48000):
            raise ValueError(
                f"sample_rate must be 8000, 16000, 24000 or 48000, got {sample_rate!r}"
            )
        if encoding not in ("linear16", "mulaw"):
            raise ValueError(f"encoding must be 'linear16' or 'mulaw', got {encoding!r}")
        if not 0.1 <= keepalive <= 9.0:
            raise ValueError(f"keepalive must be in [0.1, 9] seconds, got {keepalive!r}")
        if not 10 <= frame_ms <= 1000:
            raise ValueError(f"frame_ms must be in [10, 1000], got {frame_ms!r}")
        if endpointing_ms is not None and endpointing_ms < 10:
            raise ValueError(f"endpointing_ms must be None or >= 10, got {endpointing_ms!r}")
        if utterance_end_ms is not None and utterance_end_ms < 1000:
            raise ValueError(f"utterance_end_ms must be None or >= 1000, got {utterance_end_ms!r}")
        if connect_timeout <= 0 or drain_timeout <= 0:
            raise ValueError("connect_timeout and drain_timeout must be > 0")
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be None or > 0, got {stall_timeout!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        self._api_key = api_key
        self.model = model
        self.encoding: Encoding = encoding
        self.url = url
        self.language = language
        self.endpointing_ms = endpointing_ms
        self.utterance_end_ms = utterance_end_ms
        self.interim_results = interim_results
        self.keepalive = float(keepalive)
        self.punctuate = punctuate
        self.vad_events = vad_events
        self.utterance_end_results = utterance_end_results
        self.connect_timeout = float(connect_timeout)
        self.drain_timeout = float(drain_timeout)
        self.frame_ms = frame_ms
        self.extra_query = dict(extra_query or {})
        self.stall_timeout = None if stall_timeout is None else float(stall_timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self.retries = 0
        """Connection attempts tried again so far."""
        self._rate = sample_rate

    def __repr__(self) -> str:
        return f"DeepgramStt(model={self.model!r}, url={self.url!r}, sample_rate={self._rate})"

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`DeepgramStream.push` takes, in Hz."""
        return self._rate

    @property
    def frame_samples(self) -> int:
        """Samples in one audio frame sent."""
        return self._rate * self.frame_ms // 1000

    def query(self) -> dict[str, str]:
        """The query parameters of the connection."""
        q = {
            "model": self.model,
            "encoding": self.encoding,
            "sample_rate": str(self._rate),
            "channels": "1",
            "language": self.language,
            "interim_results": str(self.interim_results).lower(),
            "punctuate": str(self.punctuate).lower(),
            "vad_events": str(self.vad_events).lower(),
            "endpointing": "false" if self.endpointing_ms is None else str(self.endpointing_ms),
        }
        if self.utterance_end_ms is not None:
            q["utterance_end_ms"] = str(self.utterance_end_ms)
        q.update(self.extra_query)
        return q

    def request_url(self) -> str:
        """The URL the stream connects to (the key is not in it)."""
        return f"{self.url}?{urlencode(self.query())}"

    def stream(self) -> DeepgramStream:
        """Open a recognition stream (it connects on first use, on the running loop)."""
        return DeepgramStream(self)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._api_key}"}


class DeepgramStream(StreamMixin):
    """One Deepgram live stream; see :class:`DeepgramStt` and the module notes."""

    def __init__(self, stt: DeepgramStt) -> None:
        self._stt = stt
        self._out: Outbox[Transcript] = Outbox()
        self._pending = bytearray()  # audio bytes not yet framed
        self._sends: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._closed = False
        self._frame_bytes = stt.frame_samples * (1 if stt.encoding == "mulaw" else 2)
        self.frames_sent = 0
        """Binary audio frames sent."""
        self.keepalives_sent = 0
        """KeepAlive messages sent."""
        self.speech_started = 0
        """``SpeechStarted`` messages received."""
        self.utterance_ends = 0
        """``UtteranceEnd`` messages received."""
        self.ignored_messages = 0
        """Messages of a type this client does not read."""
        self.metadata: dict[str, Any] | None = None
        """The ``Metadata`` message, once received."""
        self.retries = 0
        """Connection attempts of this stream tried again."""
        self._unanswered: float | None = None  # when audio went with no message since

    # --- the contract ---------------------------------------------------------------------

    def push(self, pcm: PCM) -> None:
        """Queue audio at :attr:`DeepgramStt.sample_rate` (mono int16; never blocks).

        Raises
        ------
        TypeError, ValueError
            ``pcm`` is not a 1-D int16 array.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("pcm must be a 1-D numpy int16 array")
        if self._ended or self._closed or pcm.size == 0:
            return
        if self._stt.encoding == "mulaw":
            data = encode_ulaw(pcm.tobytes())
        else:
            data = pcm.astype("<i2", copy=False).tobytes()
        self._pending += data
        while len(self._pending) >= self._frame_bytes:
            self._sends.append(bytes(self._pending[: self._frame_bytes]))
            del self._pending[: self._frame_bytes]
        self._kick()

    def finalize(self) -> None:
        """Send the audio held, then ``Finalize``: the results so far come back final."""
        if self._ended or self._closed:
            return
        self._flush_pending()
        self._sends.append(_FINALIZE)
        self._kick()

    def end_input(self) -> None:
        """Send the audio held, then ``CloseStream``; iteration ends after the close."""
        if self._ended or self._closed:
            return
        self._flush_pending()
        self._sends.append(_CLOSE_STREAM)
        self._ended = True
        self._kick()

    async def aclose(self) -> None:
        """Close the connection now; results not yet out are dropped."""
        self._closed = True
        self._out.drop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def __aiter__(self) -> AsyncIterator[Transcript]:
        return self

    async def __anext__(self) -> Transcript:
        if not self._closed:
            self._start()
        return await self._out.get()

    # --- the connection -------------------------------------------------------------------

    def _flush_pending(self) -> None:
        if self._pending:
            self._sends.append(bytes(self._pending))
            self._pending.clear()

    def _kick(self) -> None:
        self._wake.set()
        self._start()

    def _start(self) -> None:
        if self._task is not None or self._closed or self._out.done:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first call made on the loop
        self._task = asyncio.ensure_future(self._run())

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1
        self._stt.retries += 1

    async def _connect(self) -> ClientConnection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        stt = self._stt
        ws_log = Redacting(logging.getLogger(f"{__name__}.ws"), stt._api_key)
        try:
            return await asyncio.wait_for(
                connect(
                    stt.request_url(),
                    additional_headers=stt._headers(),
                    open_timeout=None,
                    close_timeout=1.0,
                    max_size=_MAX_MESSAGE,
                    ping_interval=None,
                    user_agent_header="voxwire",
                    logger=ws_log,
                ),
                stt.connect_timeout,
            )
        except TimeoutError:
            raise ServiceTimeout("stt", stt.connect_timeout) from None
        except InvalidStatus as e:
            status = e.response.status_code
            raise HttpStatusError(
                "stt",
                status,
                f"stt: the server refused the stream: HTTP {status}",
                parse_retry_after(e.response.headers.get("Retry-After")),
            ) from None
        except (OSError, InvalidHandshake) as e:
            raise ServiceError(
                "stt", "connect", f"stt: cannot connect to {stt.url}: {type(e).__name__}"
            ) from None

    async def _run(self) -> None:
        try:
            ws = await with_retries(
                self._stt.retry,
                self._connect,
                fresh=lambda: not self._closed,
                on_retry=self._retried,
            )
        except asyncio.CancelledError:
            self._out.drop()
            raise
        except ServiceError as e:
            self._fail(e)
            return
        failed = cancelled = False
        try:
            sender = asyncio.ensure_future(self._send(ws))
            try:
                await self._receive(ws, sender)
            except ServiceError as e:
                # Reported before the connection is closed: a server that does not answer
                # the close keeps this task for up to the close timeout, not the reader.
                failed = True
                self._fail(e)
            finally:
                sender.cancel()
                await asyncio.wait([sender])
                if not sender.cancelled():
                    sender.exception()  # retrieved: the receiver reported the failure
        except asyncio.CancelledError:
            cancelled = True
            self._out.drop()
            raise
        finally:
            if cancelled:
                ws.transport.abort()  # a stream given up waits for no closing handshake
            else:
                await _close(ws)
        if not failed:
            self._out.finish()

    def _fail(self, error: ServiceError) -> None:
        log.warning("%s", error)
        self._out.finish(error)

    async def _send(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        frame_s = self._stt.frame_ms / 1000
        last = loop.time()
        while True:
            while self._sends:
                item = self._sends.popleft()
                await ws.send(item)
                last = loop.time()
                if self._unanswered is None and item != _CLOSE_STREAM:
                    self._unanswered = last
                if isinstance(item, bytes):
                    self.frames_sent += 1
                elif item == _CLOSE_STREAM:
                    return
            self._wake.clear()
            timeout = max(0.0, self._stt.keepalive - (loop.time() - last))
            if self._pending:
                timeout = min(timeout, frame_s)  # a short tail goes if no audio follows
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                if self._pending:
                    self._flush_pending()
                    continue
                await ws.send(_KEEPALIVE)
                self.keepalives_sent += 1
                last = loop.time()

    async def _receive(self, ws: ClientConnection, sender: asyncio.Task[None]) -> None:
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            if deadline is None and self._ended:
                deadline = loop.time() + self._stt.drain_timeout
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                exc = sender.exception()
                if not isinstance(exc, ConnectionClosed):
                    raise ServiceError("stt", "closed", f"stt: sending failed: {exc!r}")
            try:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                # Re-check the end-of-input deadline at least every 0.25 s.
                wait = 0.25 if timeout is None else min(timeout, 0.25)
                message = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise ServiceTimeout("stt", self._stt.drain_timeout) from None
                stall = self._stt.stall_timeout
                since = self._unanswered
                if stall is not None and since is not None and now - since >= stall:
                    raise ServiceTimeout("stt", stall) from None
                continue
            except ConnectionClosed as e:
                if self._ended:
                    return
                reason = e.rcvd.reason if e.rcvd is not None else ""
                code = e.rcvd.code if e.rcvd is not None else 1006
                raise ServiceError(
                    "stt",
                    "closed",
                    f"stt: the server closed the stream (code {code}{_reason(reason)})",
                ) from None
            self._unanswered = None
            self._message(message)

    def _message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            raise _bad("a binary message from the server")
        try:
            message = json.loads(raw)
        except ValueError:
            raise _bad(f"a message is not JSON: {raw[:200]!r}") from None
        if not isinstance(message, dict):
            raise _bad(f"a message must be a JSON object, got {type(message).__name__}")
        kind = message.get("type")
        if kind == "Results":
            self._out.put(transcript_from_results(message))
        elif kind == "SpeechStarted":
            self.speech_started += 1
        elif kind == "UtteranceEnd":
            self.utterance_ends += 1
            if self._stt.utterance_end_results:
                at = _number(message, "last_word_end")
                self._out.put(Transcript("", True, at, at, speech_final=True))
        elif kind == "Metadata":
            self.metadata = message
        elif isinstance(kind, str):
            self.ignored_messages += 1
        else:
            raise _bad("a message has no type")
