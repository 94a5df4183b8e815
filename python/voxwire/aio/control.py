"""The control API of a server: list the calls up, hang one up, mute or unmute its agent,
have it say a text.

Served on the WebSocket port, beside ``/health``, ``/ready`` and ``/metrics``, before any
upgrade (``voxwire serve --control``; :func:`voxwire.agents.server.serve_agent` with
``control=``). Every request carries the bearer token (``Authorization: Bearer TOKEN``,
compared in constant time); without it, or with another, the answer is 401 with
``WWW-Authenticate: Bearer``. Bodies are JSON.

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
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from voxwire.aio.session import CLOSE_NORMAL, Call

__all__ = ["CALLS_PATH", "Control", "load_token"]

CALLS_PATH = "/calls"

_ACTIONS = ("hangup", "mute", "unmute", "say")


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


class Control:
    """The control API; see the module docstring.

    Parameters
    ----------
    token : str
        The bearer token every request must carry.
    server_delay_ms, network_delay_ms : float
        The one-way delays of the quality estimate (as in
        :class:`~voxwire.aio.metrics.ServerMetrics`).
    """

    def __init__(
        self, token: str, *, server_delay_ms: float = 80.0, network_delay_ms: float = 0.0
    ) -> None:
        if not token:
            raise ValueError("the control token must not be empty")
        self._token = token.encode("utf-8")
        self.server_delay_ms = server_delay_ms
        self.network_delay_ms = network_delay_ms
        self._begun: dict[int, float] = {}  # call serial -> first seen

    def answer(
        self, method: str, path: str, authorization: str | None, calls: Iterable[Call]
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """(status, JSON body, extra headers) of a request on a control path (``path``
        with its query string, if any); None for a path that is not one (the media
        stream, the health paths)."""
        url = urlsplit(path)
        path = url.path
        if path != CALLS_PATH and not path.startswith(CALLS_PATH + "/"):
            return None
        if not self._authorized(authorization):
            return _error(401, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})
        parts = path[len(CALLS_PATH) :].strip("/").split("/") if path != CALLS_PATH else []
        up = {self.call_id(c): c for c in calls if c.started is not None}
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
        if action == "hangup":
            asyncio.get_running_loop().create_task(
                call.close(CLOSE_NORMAL, "hung up by the control API")
            )
            return _json(202, self.describe(call, closing=True))
        if action == "say":
            return self._say(call, parse_qs(url.query).get("text", [""])[-1])
        if action == "mute":
            call.mute()
        else:
            call.unmute()
        return _json(200, self.describe(call))

    def _say(self, call: Call, text: str) -> tuple[int, bytes, dict[str, str]]:
        if not text.strip():
            return _error(400, "give the text to say: ?text=...")
        if call.on_say is None:
            return _error(409, "the agent of this call cannot say a text")
        try:
            call.on_say(text)
        except ValueError as exc:
            return _error(409, str(exc))
        return _json(202, self.describe(call))

    @staticmethod
    def call_id(call: Call) -> str:
        started = call.started
        return started.stream_id if started is not None else f"#{call.serial}"

    def describe(self, call: Call, *, closing: bool = False) -> dict[str, Any]:
        """A call's entry in the answers."""
        from voxwire.aio.metrics import call_quality

        started = call.started
        stats = call.stats
        rate = started.media_format.sample_rate if started is not None else 0
        begun = self._begun.get(call.serial)
        state = "connecting" if started is None else "up"
        if closing or call.close_code is not None:
            state = "closing"
        return {
            "call_id": self.call_id(call),
            "protocol": call.codec.name,
            "state": state,
            "muted": call.muted,
            "duration_s": None if begun is None else round(time.monotonic() - begun, 3),
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "audio_in_s": round(stats.audio_samples_in / rate, 3) if rate else 0.0,
            "audio_out_s": round(stats.audio_samples_out / rate, 3) if rate else 0.0,
            "muted_audio_s": round(call.muted_samples / rate, 3) if rate else 0.0,
            "quality": call_quality(call, self.server_delay_ms, self.network_delay_ms),
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
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message}).encode("utf-8"), headers or {}
