"""What the WebSocket speech clients share: one connection carrying many contexts.

:class:`WsTtsClient` keeps one WebSocket per client, shared by its streams (one vendor
"context" per reply): a sender task writes the streams' messages in order, a reader task
routes each message read to its stream by context id. The ElevenLabs and Cartesia
clients (:mod:`voxwire.services.tts_elevenlabs`, :mod:`voxwire.services.tts_cartesia`)
derive from it and add their messages.

Connection policy:

- **Pre-connect.** :meth:`WsTtsClient.prepare` opens the connection now; the voice agent
  calls it when a call starts, so the first reply does not wait for the TCP, TLS and
  WebSocket handshakes.
- **Connect retries.** A connection that cannot be made (refused) or whose upgrade is
  refused with 429 or 5xx is tried again by :attr:`WsTtsClient.retry`
  (:class:`~voxwire.services.retry.RetryPolicy`); other refusals (401) are not.
- **Stalls.** A stream whose audio is due (text flushed, or input ended) and that gets
  no message for :attr:`WsTtsClient.timeout` seconds ends with
  :class:`~voxwire.errors.ServiceTimeout`, before its first audio as in the middle; the
  vendor is told to cancel that context.
- **Reconnect.** A connection that drops ends the streams that had sent on it with
  ``closed`` (their audio cannot be resumed); streams with nothing sent yet, and every
  later stream, go on a new connection, made at their first message. A connection the
  server closed while idle is replaced the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import numpy as np

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import PCM, Outbox, SpeechAudio, StreamMixin
from voxwire.services.http import HttpStatusError
from voxwire.services.retry import RetryPolicy, parse_retry_after, with_retries

__all__ = ["Redacting", "WsTtsClient", "WsTtsStream", "b64_pcm"]

log = logging.getLogger("voxwire.services")

_C = TypeVar("_C", bound="WsTtsClient")


class Redacting(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A connection's logger whose lines have ``secret`` replaced by ``***``.

    The websockets library logs the request headers of a handshake at DEBUG; the API key
    goes in those headers, so every WebSocket client logs through one of these.
    """

    def __init__(self, logger: logging.Logger, secret: str | None) -> None:
        super().__init__(logger)
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        if self._secret:
            text = text.replace(self._secret, "***")
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, text, **kwargs)


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

    def __init__(
        self, *, timeout: float, connect_timeout: float, retry: RetryPolicy | None = None
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
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
        self.retry = retry if retry is not None else RetryPolicy()
        """Retries of a connection that could not be made (refused, 429, 5xx)."""
        self.retries = 0
        """Connection attempts tried again so far."""
        self.connects = 0
        """Connections made so far."""
        self._connecting: asyncio.Task[Any] | None = None
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

    def _secret(self) -> str | None:
        """The API key (for the redacting logger); ``None`` if there is none."""
        key = getattr(self, "_api_key", None)
        return key if isinstance(key, str) and key else None

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

    async def prepare(self) -> None:
        """Open the connection now, so the first stream does not wait for the handshake.

        The voice agent calls it when a call starts. An open connection is kept.

        Raises
        ------
        ServiceError
            The connection could not be made (after the retries).
        """
        await self._connect()

    async def _connect(self) -> Any:
        if self._ws is not None:
            return self._ws
        # One connection attempt at a time, shared by whoever needs the connection.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(
                with_retries(self.retry, self._open, on_retry=self._retried)
            )
        return await asyncio.shield(self._connecting)

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1

    async def _open(self) -> Any:
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
                    logger=Redacting(logging.getLogger("voxwire.services.ws"), self._secret()),
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise ServiceTimeout("tts", self.connect_timeout) from None
        except ws_mod.InvalidStatus as e:
            status = e.response.status_code
            body = self._scrub(bytes(e.response.body or b"").decode("utf-8", "replace"))
            raise HttpStatusError(
                "tts",
                status,
                f"tts: the handshake got HTTP {status}: {body[:300]}",
                parse_retry_after(e.response.headers.get("Retry-After")),
            ) from None
        except (OSError, ws_mod.InvalidHandshake) as e:
            raise ServiceError(
                "tts", "connect", self._scrub(f"tts: cannot connect: {type(e).__name__}: {e}")
            ) from None
        self._ws = ws
        self.connects += 1
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
        for task in (self._sender, self._reader, self._connecting):
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
