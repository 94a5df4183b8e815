"""The control API of a server: list the calls up, hang one up, mute or unmute its agent,
have it say a text, transfer it.

Served on the WebSocket port, beside ``/health``, ``/ready`` and ``/metrics``, before any
upgrade (``voxwire serve --control``; :func:`voxwire.agents.server.serve_agent` with
``control=``), or, for a SIP server, on an HTTP listener of its own
(:func:`serve_control`; ``voxwire serve --protocol sip --control --control-port``). The
routes work over :class:`ControlledCall`, which the WebSocket session's call (wrapped
here) and the SIP call (:class:`voxwire.aio.sip.SipControlled`) implement. Every request
carries the bearer token (``Authorization: Bearer TOKEN``, compared in constant time);
without it, or with another, the answer is 401 with ``WWW-Authenticate: Bearer``. Bodies
are JSON.

==========================  ========================================================
request                     answer
==========================  ========================================================
``GET /calls``              200 ``{"calls": [CALL, ...]}``
``GET /calls/ID``           200 ``CALL``; 404 for an id not up
``POST /calls/ID/hangup``   202 ``CALL``: the call is closed (normal closure, 1000)
``POST /calls/ID/mute``     200 ``CALL``: the agent's audio queued is dropped (as a
                            barge-in does, here and at the provider) and what it plays
                            next is not sent, until ``unmute``
``POST /calls/ID/unmute``   200 ``CALL``
``POST /calls/ID/say?text=``  202 ``CALL``: the agent says the (URL-encoded) text, at
                            once on a free line, else once its reply under way has
                            played; kept in the history as heard. 400 without a text;
                            409 when the call's agent cannot say a text (the echo
                            agent) or refuses it, with its reason (over 2000
                            characters, 8 texts already wait, not started yet)
``POST /calls/ID/transfer?target=``  a blind transfer (SIP: REFER), answered once it
                            ended: 200 ``CALL`` with ``"transfer": {"target",
                            "transferred", "statuses"}`` when the caller reached the
                            target (the call ends), 502 when it refused or failed,
                            504 without a final NOTIFY; 400 for a bad target
                            (:func:`check_target`: nothing is sent); 409 while a
                            transfer runs, and on a transport that cannot transfer
                            (a WebSocket media stream)
==========================  ========================================================

A ``CALL`` is ``{"call_id", "protocol", "state", "muted", "duration_s",
"messages_in", "messages_out", "audio_in_s", "audio_out_s", "muted_audio_s",
"quality"}``: ``state`` is ``connecting`` (no start message yet), ``up`` or
``closing``; ``quality`` the loss and E-model estimate of
:func:`voxwire.aio.metrics.call_quality`. The id is the provider's stream id (a call
not started yet has none and is not listed). Another method on a control path is 405
with ``Allow``; POST requests carry no body (the WebSocket library refuses one): the text to say
comes in the query string.

>>> control = Control("s3cret")
>>> control.answer("GET", "/calls", "Bearer s3cret", [])[0:2]
(200, b'{"calls": []}')
>>> control.answer("GET", "/calls", "Bearer wrong", [])[0]
401
>>> control.answer("GET", "/media", None, []) is None
True
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from voxwire.aio.session import CLOSE_NORMAL, Call

__all__ = [
    "CALLS_PATH",
    "MAX_TARGET",
    "CallControls",
    "Control",
    "ControlledCall",
    "Refused",
    "TransferOutcome",
    "check_target",
    "load_token",
    "say_into",
    "serve_control",
]

CALLS_PATH = "/calls"
#: the longest transfer target taken, in characters
MAX_TARGET = 256

_ACTIONS = ("hangup", "mute", "unmute", "say", "transfer")
_BAD_TARGET = re.compile(r'[\x00-\x20\x7f<>"]')


def load_token(value: str | None = None, file: str | None = None) -> str:
    """The control token: ``value``, or the first line of ``file``.

    Raises
    ------
    ValueError
        With neither, with both, or when the token is empty or shorter than 16
        characters.
    OSError
        When ``file`` cannot be read.
    """
    if (value is None) == (file is None):
        raise ValueError("give the control token or its file, one of the two")
    if file is not None:
        with open(file, encoding="utf-8") as f:
            value = f.readline().strip()
    assert value is not None
    if len(value) < 16:
        raise ValueError("the control token must be at least 16 characters")
    return value


class Refused(Exception):
    """A control action the call cannot take: answered with ``status`` and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """How a transfer ended: ``transferred`` (the call then ends), the statuses of the
    REFER's answer and of each NOTIFY's sipfrag, in order."""

    transferred: bool
    statuses: tuple[int, ...]


class ControlledCall(Protocol):
    """What the control API needs of a call, whatever transport carries it: the
    WebSocket session's :class:`~voxwire.aio.session.Call` (wrapped by :class:`Control`
    itself) and the SIP call (:class:`voxwire.aio.sip.SipControlled`)."""

    @property
    def control_id(self) -> str | None:
        """The id in the paths; None for a call not listed yet."""
        ...

    def describe(self, server_delay_ms: float, network_delay_ms: float) -> dict[str, Any]:
        """The ``CALL`` fields but ``call_id``, ``state`` and ``duration_s``."""
        ...

    @property
    def state(self) -> str:
        """``connecting``, ``up`` or ``closing``."""
        ...

    @property
    def duration_s(self) -> float | None: ...

    def hangup(self) -> None:
        """End the call (the close runs as a task)."""
        ...

    def mute(self) -> None: ...

    def unmute(self) -> None: ...

    def say(self, text: str) -> None:
        """Have the agent say ``text``; :class:`Refused` when it cannot."""
        ...

    def check_transfer(self) -> None:
        """:class:`Refused` when the call cannot be transferred now."""
        ...

    async def transfer(self, target: str, timeout: float) -> TransferOutcome: ...


class _Steerable(Protocol):
    """What :class:`CallControls` needs of a call."""

    on_say: Callable[[str], None] | None

    async def close(self, code: int, reason: str) -> None: ...

    def mute(self) -> None: ...

    def unmute(self) -> None: ...


_closing: set[asyncio.Task[None]] = set()  # hang-ups under way, held until they end


class CallControls:
    """The hang-up, mute, unmute and say of a :class:`ControlledCall`, over its ``call``:
    the same for every transport's call."""

    call: _Steerable

    def hangup(self) -> None:
        close = self.call.close(CLOSE_NORMAL, "hung up by the control API")
        task = asyncio.get_running_loop().create_task(close)
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    def mute(self) -> None:
        self.call.mute()

    def unmute(self) -> None:
        self.call.unmute()

    def say(self, text: str) -> None:
        say_into(self.call.on_say, text)


class _SessionCall(CallControls):
    """A WebSocket (or AudioSocket) :class:`Call` as a :class:`ControlledCall`."""

    call: Call

    def __init__(self, call: Call, begun: float | None) -> None:
        self.call = call
        self.begun = begun

    @property
    def control_id(self) -> str | None:
        started = self.call.started
        return started.stream_id if started is not None else None

    @property
    def state(self) -> str:
        call = self.call
        if call.close_code is not None:
            return "closing"
        return "connecting" if call.started is None else "up"

    @property
    def duration_s(self) -> float | None:
        return None if self.begun is None else round(time.monotonic() - self.begun, 3)

    def describe(self, server_delay_ms: float, network_delay_ms: float) -> dict[str, Any]:
        from voxwire.aio.metrics import call_quality

        call = self.call
        started = call.started
        stats = call.stats
        rate = started.media_format.sample_rate if started is not None else 0
        return {
            "protocol": call.codec.name,
            "muted": call.muted,
            **stats.traffic(rate),
            "muted_audio_s": round(call.muted_samples / rate, 3) if rate else 0.0,
            "quality": call_quality(call, server_delay_ms, network_delay_ms),
        }

    def check_transfer(self) -> None:
        raise Refused(
            409,
            f"a {self.call.codec.name} media stream cannot transfer the call: transfer it "
            "with the provider's call control",
        )

    async def transfer(self, target: str, timeout: float) -> TransferOutcome:
        self.check_transfer()
        raise AssertionError("unreachable")  # pragma: no cover


def say_into(on_say: Callable[[str], None] | None, text: str) -> None:
    """Call a call's ``on_say`` with ``text``; :class:`Refused` (409) when there is none
    or it refuses the text."""
    if on_say is None:
        raise Refused(409, "the agent of this call cannot say a text")
    try:
        on_say(text)
    except ValueError as exc:
        raise Refused(409, str(exc)) from None


def check_target(target: str) -> str | None:
    """Why ``target`` is not a transfer target (None when it is one): a ``sip:``,
    ``sips:`` or ``tel:`` URI of at most :data:`MAX_TARGET` characters, without spaces,
    control characters or the characters that would end a header's ``<URI>``.

    >>> check_target("sip:human@192.0.2.50"), check_target("tel:+15551234567") is None
    (None, True)
    >>> check_target("http://x")
    'the target must be a sip:, sips: or tel: URI'
    >>> check_target("sip:a@b\\r\\nX: y")
    'the target holds a space, a control character or one of <>"'
    """
    if not target:
        return "give the target: ?target=sip:..."
    if len(target) > MAX_TARGET:
        return f"the target is longer than {MAX_TARGET} characters"
    if _BAD_TARGET.search(target):
        return 'the target holds a space, a control character or one of <>"'
    scheme, colon, rest = target.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel") or not rest:
        return "the target must be a sip:, sips: or tel: URI"
    return None


class Control:
    """The control API; see the module docstring.

    Parameters
    ----------
    token : str
        The bearer token every request must carry.
    server_delay_ms, network_delay_ms : float
        The one-way delays of the quality estimate (as in
        :class:`~voxwire.aio.metrics.ServerMetrics`).
    transfer_timeout : float
        Seconds a transfer may take, from the REFER to its final NOTIFY.
    """

    def __init__(
        self,
        token: str,
        *,
        server_delay_ms: float = 80.0,
        network_delay_ms: float = 0.0,
        transfer_timeout: float = 32.0,
    ) -> None:
        if not token:
            raise ValueError("the control token must not be empty")
        if not transfer_timeout > 0:
            raise ValueError(f"transfer_timeout must be positive, got {transfer_timeout}")
        self._token = token.encode("utf-8")
        self.server_delay_ms = server_delay_ms
        self.network_delay_ms = network_delay_ms
        self.transfer_timeout = transfer_timeout
        self._begun: dict[int, float] = {}  # call serial -> first seen

    def answer(
        self,
        method: str,
        path: str,
        authorization: str | None,
        calls: Iterable[Call | ControlledCall],
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """(status, JSON body, extra headers) of a request on a control path (``path``
        with its query string, if any); None for a path that is not one (the media
        stream, the health paths). A transfer, which waits for its outcome, is answered
        by :meth:`answer_async` only (here: 409)."""
        routed = self._route(method, path, authorization, calls)
        if isinstance(routed, _Transfer):
            return _error(409, "a transfer needs the control listener of a SIP server")
        return routed

    async def answer_async(
        self,
        method: str,
        path: str,
        authorization: str | None,
        calls: Iterable[Call | ControlledCall],
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """:meth:`answer`, with transfers: ``POST /calls/ID/transfer`` waits for the
        transfer's outcome (at most ``transfer_timeout`` seconds)."""
        routed = self._route(method, path, authorization, calls)
        if not isinstance(routed, _Transfer):
            return routed
        call, target = routed.call, routed.target
        try:
            outcome = await call.transfer(target, self.transfer_timeout)
        except Refused as exc:
            return _error(exc.status, str(exc))
        report = {"target": target, "transferred": outcome.transferred,
                  "statuses": list(outcome.statuses)}  # fmt: skip
        if outcome.transferred:
            return _json(200, {**self.describe(call, closing=True), "transfer": report})
        if not outcome.statuses:
            why = f"no answer to the REFER within {self.transfer_timeout:g} s"
            return _error(504, why, body={"transfer": report})
        why = f"the transfer failed: {outcome.statuses[-1]}"
        if len(outcome.statuses) == 1:
            why = f"the caller refused the transfer: {outcome.statuses[0]}"
        elif outcome.statuses[-1] < 200:
            why = f"no final NOTIFY within {self.transfer_timeout:g} s"
            return _error(504, why, body={"transfer": report})
        return _error(502, why, body={"transfer": report})

    def _route(
        self,
        method: str,
        path: str,
        authorization: str | None,
        calls: Iterable[Call | ControlledCall],
    ) -> tuple[int, bytes, dict[str, str]] | _Transfer | None:
        url = urlsplit(path)
        path = url.path
        if path != CALLS_PATH and not path.startswith(CALLS_PATH + "/"):
            return None
        if not self._authorized(authorization):
            return _error(401, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})
        parts = path[len(CALLS_PATH) :].strip("/").split("/") if path != CALLS_PATH else []
        up: dict[str, ControlledCall] = {}
        for c in calls:
            controlled = self._controlled(c)
            key = controlled.control_id
            if key is not None:
                up[key] = controlled
        if not parts:
            if method != "GET":
                return _error(405, "GET only", {"Allow": "GET"})
            return _json(200, {"calls": [self.describe(c) for c in up.values()]})
        call = up.get(parts[0])
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in _ACTIONS):
            return _error(404, "no such control path")
        if len(parts) == 1:
            if method != "GET":
                return _error(405, "GET only", {"Allow": "GET"})
            return _error(404, "no such call") if call is None else _json(200, self.describe(call))
        if method != "POST":
            return _error(405, "POST only", {"Allow": "POST"})
        if call is None:
            return _error(404, "no such call")
        action = parts[1]
        query = parse_qs(url.query)
        try:
            if action == "hangup":
                call.hangup()
                return _json(202, self.describe(call, closing=True))
            if action == "say":
                text = query.get("text", [""])[-1]
                if not text.strip():
                    return _error(400, "give the text to say: ?text=...")
                call.say(text)
                return _json(202, self.describe(call))
            if action == "transfer":
                target = query.get("target", [""])[-1]
                bad = check_target(target)
                if bad is not None:
                    return _error(400, bad)
                call.check_transfer()
                return _Transfer(call, target)
        except Refused as exc:
            return _error(exc.status, str(exc))
        if action == "mute":
            call.mute()
        else:
            call.unmute()
        return _json(200, self.describe(call))

    def _controlled(self, call: Call | ControlledCall) -> ControlledCall:
        if isinstance(call, Call):
            return _SessionCall(call, self._begun.get(call.serial))
        return call

    @staticmethod
    def call_id(call: Call) -> str:
        started = call.started
        return started.stream_id if started is not None else f"#{call.serial}"

    def describe(self, call: Call | ControlledCall, *, closing: bool = False) -> dict[str, Any]:
        """A call's entry in the answers."""
        controlled = self._controlled(call)
        key = controlled.control_id
        if isinstance(call, Call) and key is None:
            key = f"#{call.serial}"
        return {
            "call_id": key,
            "state": "closing" if closing else controlled.state,
            "duration_s": controlled.duration_s,
            **controlled.describe(self.server_delay_ms, self.network_delay_ms),
        }

    def call_started(self, call: Call) -> None:
        """A call's handler started (for its duration)."""
        self._begun[call.serial] = time.monotonic()

    def call_ended(self, call: Call) -> None:
        """A call's handler ended."""
        self._begun.pop(call.serial, None)

    def _authorized(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(body).encode("utf-8"), {}


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    body: dict[str, Any] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message, **(body or {})}).encode("utf-8"), headers or {}


@dataclass(frozen=True, slots=True)
class _Transfer:
    """A transfer request that passed every check: :meth:`Control.answer_async` runs it."""

    call: ControlledCall
    target: str


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            409: "Conflict", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 504: "Gateway Timeout"}  # fmt: skip


async def serve_control(
    control: Control,
    calls: Callable[[], Iterable[Call | ControlledCall]],
    host: str,
    port: int,
    *,
    max_head: int = 8192,
    read_timeout: float = 10.0,
) -> asyncio.Server:
    """The control API on an HTTP/1.1 listener of its own (``voxwire serve --protocol
    sip --control-port``): one request per connection (``Connection: close``), its head
    at most ``max_head`` bytes (else 431) read within ``read_timeout`` seconds (else
    408); a path that is not a control path is 404. ``calls()`` gives the calls up at
    each request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answered = await _http_answer(reader)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            answered = _error(408, "the request did not come in time")
        except asyncio.LimitOverrunError:
            answered = _error(431, f"the request head is over {max_head} bytes")
        except ValueError as exc:
            answered = _error(400, str(exc))
        status, body, headers = answered
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                "Content-Type: application/json", f"Content-Length: {len(body)}",
                "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        with contextlib.suppress(ConnectionError):
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _http_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]]:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_timeout)
        lines = raw.decode("latin-1").split("\r\n")
        request = lines[0].split(" ")
        if len(request) != 3 or not request[2].startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x request line")
        method, target, _ = request
        authorization = None
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "authorization":
                authorization = value.strip()
        answered = await control.answer_async(method, target, authorization, calls())
        return answered if answered is not None else _error(404, "not a control path")

    return await asyncio.start_server(handle, host, port, limit=max_head)
