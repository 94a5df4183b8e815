"""Per-worker admission: the call limit, the drain state, and what a balancer is told.

One :class:`Admission` per server process decides, for every new call, whether it is
taken; the server adapters ask it before the call starts and hand it back when the call
ends. It refuses a call when the worker is **draining** (it was told to stop: it finishes
the calls it has and takes no more) or **full** (``max_calls`` calls are up).

How a refused call is told, per transport
-----------------------------------------
========================  ==============================================================
transport                 refusal
========================  ==============================================================
WebSocket (``websockets``  HTTP 503 Service Unavailable before the upgrade, with a
adapter)                  ``Retry-After`` header; the provider sees a failed connection
                          and can retry elsewhere
AudioSocket (TCP)         the connection is accepted and hung up at once (the hangup
                          message, type 0x00), before any audio
========================  ==============================================================

What a balancer is told
-----------------------
* ``GET /health`` on the WebSocket port: 200 while the process runs (liveness), draining
  included (:func:`http_answer`);
* ``GET /ready``: 200 while calls are admitted, 503 while draining or full (readiness,
  :attr:`Admission.ready`);
* the HAProxy agent-check reply on a TCP port of its own (:func:`serve_agent_check`,
  :meth:`Admission.agent_reply`): ``drain`` while draining, otherwise ``up N%`` where N is
  the free share of the worker (100 idle, 0 full), which HAProxy applies to the server's
  configured weight (configure ``weight 100`` so that small percentages do not round to
  zero).

>>> a = Admission(max_calls=2)
>>> a.admit("one"), a.admit("two"), a.admit("three")
(True, True, False)
>>> a.refusal(), a.agent_reply()
('full: 2 of 2 calls', 'up 0%\\n')
>>> a.release("one")
>>> a.ready, a.load, a.agent_reply()
(True, 0.5, 'up 50%\\n')
>>> a.start_drain()
>>> a.refusal(), a.agent_reply()
('draining', 'drain\\n')
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable

__all__ = [
    "HEALTH_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "Admission",
    "http_answer",
    "serve_agent_check",
]

HEALTH_PATH = "/health"
READY_PATH = "/ready"
METRICS_PATH = "/metrics"


def _always() -> bool:
    return True


class Admission:
    """Admission control of one worker; see the module docstring.

    Parameters
    ----------
    max_calls : int, optional
        Calls taken at once; None for no limit.

    Raises
    ------
    ValueError
        For ``max_calls < 1``.
    """

    def __init__(self, max_calls: int | None = None) -> None:
        if max_calls is not None and (isinstance(max_calls, bool) or max_calls < 1):
            raise ValueError(f"max_calls must be >= 1 or None, got {max_calls!r}")
        self.max_calls = max_calls
        self.draining = False
        #: calls refused, by reason ("draining", "full")
        self.refused: dict[str, int] = {"draining": 0, "full": 0}
        self._held: dict[Hashable, Callable[[], bool]] = {}
        self._drained = asyncio.Event()

    # --- calls -----------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Calls held now (a key whose ``alive`` says it is gone no longer counts)."""
        dead = [key for key, alive in self._held.items() if not alive()]
        for key in dead:
            del self._held[key]
        if dead:
            self._check_drained()
        return len(self._held)

    def refusal(self) -> str | None:
        """Why a new call would be refused now, or None when it would be taken."""
        if self.draining:
            return "draining"
        if self.max_calls is not None and self.active >= self.max_calls:
            return f"full: {self.active} of {self.max_calls} calls"
        return None

    def admit(self, key: Hashable, alive: Callable[[], bool] = _always) -> bool:
        """Take the call ``key`` if :meth:`refusal` allows (count it as refused if not).

        ``alive`` tells whether the call's connection still exists: a call whose
        connection went away without :meth:`release` (a handshake that failed after the
        decision) stops counting once ``alive()`` is false.
        """
        reason = self.refusal()
        if reason is not None:
            self.refused["draining" if self.draining else "full"] += 1
            return False
        self._held[key] = alive
        return True

    def release(self, key: Hashable) -> None:
        """The call ``key`` ended (a key not held is ignored)."""
        if self._held.pop(key, None) is not None:
            self._check_drained()

    # --- state for balancers ---------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a new call would be taken (``GET /ready`` answers 200)."""
        return self.refusal() is None

    @property
    def load(self) -> float:
        """The share of the worker in use, 0..1: calls over ``max_calls`` (0 without a
        limit)."""
        if self.max_calls is None:
            return 0.0
        return min(1.0, self.active / self.max_calls)

    def agent_reply(self) -> str:
        """The HAProxy agent-check reply line: ``drain``, or ``up N%`` (N free)."""
        if self.draining:
            return "drain\n"
        return f"up {round(100 * (1.0 - self.load))}%\n"

    # --- drain -----------------------------------------------------------------------

    def start_drain(self) -> None:
        """Take no more calls; :meth:`wait_drained` returns once the last one ended."""
        self.draining = True
        self._check_drained()

    async def wait_drained(self) -> None:
        """Wait until draining and no call is held."""
        self._check_drained()
        while not (self.draining and self.active == 0):
            # the event wakes on release; the poll catches keys that died unreleased
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 0.5)

    def _check_drained(self) -> None:
        if self.draining and not self._held:
            self._drained.set()


def http_answer(admission: Admission, path: str) -> tuple[int, str] | None:
    """The (status, body) of ``GET path`` for the health paths, None for any other path.

    >>> a = Admission(max_calls=1)
    >>> http_answer(a, "/health"), http_answer(a, "/ready"), http_answer(a, "/media")
    ((200, 'ok\\n'), (200, 'ready\\n'), None)
    >>> a.start_drain()
    >>> http_answer(a, "/health"), http_answer(a, "/ready")
    ((200, 'ok\\n'), (503, 'draining\\n'))
    """
    if path == HEALTH_PATH:
        return 200, "ok\n"
    if path == READY_PATH:
        reason = admission.refusal()
        return (200, "ready\n") if reason is None else (503, f"{reason}\n")
    return None


async def serve_agent_check(
    admission: Admission, host: str, port: int, *, reuse_port: bool = False
) -> asyncio.Server:
    """The HAProxy ``agent-check`` responder: a TCP server that answers each connection
    with :meth:`Admission.agent_reply` and closes it (``reuse_port`` for workers sharing
    the port)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(admission.agent_reply().encode("ascii"))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    return await asyncio.start_server(answer, host, port, reuse_port=reuse_port or None)
