"""When a failed service request is tried again, and after how long (sans-I/O).

A :class:`RetryPolicy` answers one question: this attempt failed with this error, so much
time has gone since the first attempt began; wait how many seconds before the next one,
or give up (``None``)? The clients ask it only while nothing of the answer has arrived:
an error after the first byte (a dropped or stalled stream, a malformed frame) is never
retried, since its text or audio may already be playing. A fallback chain
(:mod:`voxwire.services.fallback`) takes over where the policy gives up.

Retried by default: HTTP 429 and 5xx answers (``status_429``, ``status_500`` ...,
including a refused WebSocket upgrade with those codes) and a connection that could not
be made (``connect``: refused, reset before the answer). Not retried: other statuses (a
bad key stays bad), timeouts (the wait has already been paid once), and everything after
the first byte.

The delay of attempt ``n`` (1 for the first retry) is ``base_delay * factor ** (n - 1)``
capped at ``max_delay``, less a random part of up to ``jitter`` of it (so clients that
failed together do not come back together). A ``Retry-After`` the server sent replaces
it. Whatever the delays, there are at most ``attempts`` attempts, and none starts when
its delay would end past ``budget`` seconds after the first attempt began.

:func:`with_retries` is the asyncio loop the clients share around one attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from voxwire.errors import ServiceError

__all__ = ["NO_RETRY", "RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after", "with_retries"]

log = logging.getLogger("voxwire.services")
_T = TypeVar("_T")

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
"""HTTP statuses worth another attempt (529 is Anthropic's "overloaded")."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (RFC 9110 10.2.3) as seconds from now, or ``None``.

    It is either a number of seconds or an HTTP date; a date in the past is 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        now = now or datetime.now(timezone.utc)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a request that failed before its first byte; see the module notes.

    Parameters
    ----------
    attempts
        Attempts in all, the first included (1: never retry).
    base_delay, factor, max_delay
        The backoff: ``base_delay * factor ** (n - 1)`` seconds before retry ``n``, at
        most ``max_delay``.
    jitter
        The fraction (0 to 1) of each delay that is random.
    budget
        Seconds from the first attempt's start after which no retry starts.
    retry_on
        The ``reason`` values of :class:`~voxwire.errors.ServiceError` retried besides
        the statuses of :data:`RETRYABLE_STATUSES`.
    random
        The source of the jitter (a function returning a float in [0, 1)); tests pass a
        constant.
    """

    attempts: int = 3
    base_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 1.0
    jitter: float = 0.5
    budget: float = 3.0
    retry_on: frozenset[str] = frozenset({"connect"})
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        for name in ("base_delay", "max_delay", "budget"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.factor, int | float) and self.factor >= 1):
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if not (isinstance(self.jitter, int | float) and 0 <= self.jitter <= 1):
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")

    def retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind worth another attempt (before the first byte)."""
        if not isinstance(error, ServiceError):
            return False
        if error.reason in self.retry_on:
            return True
        status = error.reason.removeprefix("status_")
        return status != error.reason and status.isdigit() and int(status) in RETRYABLE_STATUSES

    def delay(self, attempt: int, error: BaseException, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        Parameters
        ----------
        attempt
            The attempt that just failed (1 for the first).
        error
            Its error; a ``retry_after`` attribute (seconds) is honoured.
        elapsed
            Seconds since the first attempt began.
        """
        if attempt >= self.attempts or not self.retryable(error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            wait = float(retry_after)
        else:
            wait = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
            wait -= wait * self.jitter * self.random()
        if elapsed + wait > self.budget:
            return None
        return wait


NO_RETRY = RetryPolicy(attempts=1)
"""Fail at the first error (for a primary service with a fallback behind it)."""


async def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[_T]],
    *,
    fresh: Callable[[], bool] = lambda: True,
    on_retry: Callable[[ServiceError, float], None] | None = None,
) -> _T:
    """``await attempt()``, again after the policy's delay while it fails and ``fresh()``.

    ``attempt`` raises :class:`~voxwire.errors.ServiceError` for a failure; ``fresh``
    says nothing of the answer has been given out yet (else the error is raised at once);
    ``on_retry(error, delay)`` is told of each retry before its wait.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    n = 1
    while True:
        try:
            return await attempt()
        except ServiceError as e:
            wait = policy.delay(n, e, loop.time() - began) if fresh() else None
            if wait is None:
                raise
            log.info("%s: attempt %d failed (%s); again in %.3f s", e.service, n, e.reason, wait)
            if on_retry is not None:
                on_retry(e, wait)
        await asyncio.sleep(wait)
        n += 1
