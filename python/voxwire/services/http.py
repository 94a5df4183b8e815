"""What the HTTP service clients share: one kept-alive session, server-sent events, errors.

:class:`HttpSession` holds one aiohttp session per client, made in the running event
loop on first use and reused, so requests after the first go on a kept-alive connection
(HTTP/1.1 keep-alive: no new TCP or TLS handshake per turn). :class:`SseParser` reads a
``text/event-stream`` body (the WHATWG HTML standard, section 9.2 "Server-sent events")
without a socket. :class:`HttpStatusError` is an HTTP error answer, with the seconds of
its ``Retry-After`` header for :class:`~voxwire.services.retry.RetryPolicy`.

The LLM clients (:mod:`voxwire.services.llm_openai`, :mod:`voxwire.services.llm_anthropic`)
and the OpenAI speech client (:mod:`voxwire.services.tts_openai`) build on these.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.retry import RetryPolicy

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_LINE",
    "HttpSession",
    "HttpStatusError",
    "SseEvent",
    "SseParser",
    "aiohttp_module",
    "error_text",
    "positive",
    "warm_up",
]

MAX_LINE: Final = 1 << 20
"""The longest SSE line accepted, in characters (longer is ``bad_message``)."""

_LINE_END: Final = re.compile(r"\r\n|\r|\n")


# --- sans-I/O: server-sent events --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its ``event`` type (``"message"`` by default) and data."""

    data: str
    event: str = "message"


class SseParser:
    """Server-sent events from bytes, as the WHATWG HTML standard (9.2) parses them.

    Feed the body's bytes in any pieces; each call returns the events completed by them.
    Lines end with CRLF, LF or CR; a line starting with ``:`` is a comment; ``data``
    lines of one event are joined with ``\\n``; a blank line ends the event. ``id`` and
    ``retry`` are read and dropped, other fields are ignored and counted in
    :attr:`ignored_lines`. Bad UTF-8 is replaced with U+FFFD. Memory is bounded: a line
    longer than :data:`MAX_LINE` characters raises.

    Parameters
    ----------
    service
        The ``service`` of the errors raised (``"llm"``).
    """

    def __init__(self, service: str = "llm") -> None:
        self._service = service
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._data: list[str] = []
        self._event = ""
        self._first = True
        self.ignored_lines = 0
        """Lines that were neither data, event, id, retry, a comment nor blank."""
        self.comments = 0
        """Comment lines (``:`` first), such as keep-alives."""

    def feed(self, data: bytes) -> list[SseEvent]:
        """Parse the next bytes of the stream; return the events they complete.

        Raises
        ------
        ServiceError
            ``bad_message``: a line is longer than :data:`MAX_LINE` characters.
        """
        return self._lines(self._decoder.decode(data), final=False)

    def end(self) -> list[SseEvent]:
        """The stream ended: return the last event even if no blank line closed it."""
        events = self._lines(self._decoder.decode(b"", final=True), final=True)
        if self._data:
            events.append(self._dispatch())
        return events

    def _lines(self, text: str, *, final: bool) -> list[SseEvent]:
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        buf = self._pending + text
        parts = _LINE_END.split(buf)
        self._pending = parts.pop()
        if buf.endswith("\r") and not final:
            # A CR at the end may be the first half of CRLF: keep the line for later.
            self._pending = parts.pop() + "\r"
        if final and self._pending:
            parts.append(self._pending.rstrip("\r"))
            self._pending = ""
        if len(self._pending) > MAX_LINE:
            raise ServiceError(
                self._service,
                "bad_message",
                f"{self._service}: an SSE line longer than {MAX_LINE} characters",
            )
        events: list[SseEvent] = []
        for line in parts:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._event = ""
            return None
        if len(line) > MAX_LINE:
            raise ServiceError(
                self._service,
                "bad_message",
                f"{self._service}: an SSE line longer than {MAX_LINE} characters",
            )
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name not in ("id", "retry"):
            self.ignored_lines += 1
        return None

    def _dispatch(self) -> SseEvent:
        event = SseEvent("\n".join(self._data), self._event or "message")
        self._data = []
        self._event = ""
        return event


# --- errors ---------------------------------------------------------------------------------


class HttpStatusError(ServiceError):
    """The server answered an HTTP error status (``reason`` is ``"status_NNN"``).

    ``status`` is the code; ``retry_after`` the seconds its ``Retry-After`` header asked
    to wait (a number of seconds or an HTTP date), else ``None``.
    """

    def __init__(
        self, service: str, status: int, message: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(service, f"status_{status}", message)

    def __reduce__(self) -> tuple[object, ...]:
        return (HttpStatusError, (self.service, self.status, str(self), self.retry_after))


def error_text(body: str) -> tuple[str, str]:
    """The (type, message) of a JSON error answer, or ("", the text) for another body."""
    try:
        value = json.loads(body)
    except ValueError:
        return "", body.strip()
    error = value.get("error", value) if isinstance(value, dict) else value
    if isinstance(error, dict):
        message = error.get("message", "")
        kind = error.get("type", "")
        return (
            kind if isinstance(kind, str) else "",
            message if isinstance(message, str) else json.dumps(message),
        )
    return "", error if isinstance(error, str) else json.dumps(error)


def aiohttp_module(service: str, who: str = "the HTTP service clients") -> Any:
    """The ``aiohttp`` module, or ``ServiceError(service, "unavailable")`` saying to install it."""
    try:
        return importlib.import_module("aiohttp")
    except ImportError as e:
        raise ServiceError(
            service, "unavailable", f"{service}: {who} need aiohttp: pip install aiohttp ({e})"
        ) from e


def positive(name: str, value: object) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


WARM_BODY: Final = 1 << 16
"""The most of a warm-up answer read (bytes); a longer one closes its connection."""


async def warm_up(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    service: str,
    seconds: float,
    scrub: Callable[[str], str] | None = None,
) -> int:
    """``GET url`` and read the answer, so the session holds an open, kept-alive
    connection to the server (TCP and TLS done) for the next request; return the status.

    The status does not matter (a 401 or 404 leaves the connection open as well as a 200):
    only a connection that cannot be made, or no answer within ``seconds``, is an error.

    Raises
    ------
    ServiceError
        ``connect``: no connection (refused, unknown host, TLS).
    ServiceTimeout
        No answer within ``seconds``.
    """
    import aiohttp as aiohttp_

    async def get() -> int:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            total = 0
            while total <= WARM_BODY:
                data = await response.content.readany()
                if not data:
                    return response.status
                total += len(data)
            response.close()  # too long for a model list: not worth keeping
            return response.status

    try:
        return await asyncio.wait_for(get(), seconds)
    except asyncio.TimeoutError:
        raise ServiceTimeout(service, seconds) from None
    except (aiohttp_.ClientError, OSError) as e:
        text = f"{service}: could not connect to {url}: {type(e).__name__}: {e}"
        raise ServiceError(service, "connect", scrub(text) if scrub else text) from None


# --- the session ----------------------------------------------------------------------------


class HttpSession:
    """One aiohttp session per client, made in the running event loop on first use and
    reused (connections kept alive); the key scrubbed from any text shown. For the HTTP
    service clients, which set the attributes below in their ``__init__``."""

    _aiohttp: Any
    _api_key: str | None
    _kind: str = "llm"
    """The ``service`` of the errors (``"llm"``, ``"tts"``)."""
    timeout: float
    connect_timeout: float
    retry: RetryPolicy
    """Retries of a request that failed before its first byte (429, 5xx, refused)."""
    retries: int
    """Requests tried again so far (each retry counts once)."""
    _session: aiohttp.ClientSession | None
    _loop: asyncio.AbstractEventLoop | None
    rewarm_after: float = 4.0
    """:meth:`prepare` sends its warm-up request only when the session has not been used
    for this many seconds (a server may have closed the idle connection: vLLM's uvicorn
    after 5 s); sooner, the connection is taken as open and nothing is sent."""
    _used: float | None = None  # the loop time of the session's last use

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        self._used = loop.time()
        if self._session is None or self._session.closed or self._loop is not loop:
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.timeout
                ),
                trust_env=False,
            )
            self._loop = loop
        return self._session

    def _warm_url(self) -> str:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _warm_headers(self) -> dict[str, str]:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def prepare(self) -> None:
        """Open the connection now, so the first turn does not pay the TCP and TLS
        handshakes (the voice agent calls it when a call starts).

        It makes the session in the running loop and sends one ``GET`` of the API's model
        list (``/models``, free on OpenAI, Anthropic and the OpenAI-compatible servers),
        whose answer is read and whose connection is kept alive: the first request of the
        call goes on it. aiohttp closes a connection left idle for 15 s, and a server may
        close it sooner; so the voice agent calls this again when the caller starts to
        speak, and it sends its request only when the session has been idle for
        :attr:`rewarm_after` seconds (otherwise it returns at once).

        Raises
        ------
        ServiceError
            ``connect``: the server cannot be reached; ``timeout``: it did not answer within
            ``connect_timeout + timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        session = self._session
        if (
            session is not None
            and not session.closed
            and self._loop is loop
            and self._used is not None
            and loop.time() - self._used < self.rewarm_after
        ):
            return
        session = self._session_now()
        await warm_up(
            session,
            self._warm_url(),
            self._warm_headers(),
            service=self._kind,
            seconds=self.connect_timeout + self.timeout,
            scrub=self._scrub,
        )

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1

    async def aclose(self) -> None:
        """Close the session and its kept-alive connections (a later call opens another)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
