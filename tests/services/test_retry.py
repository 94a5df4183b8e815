"""RetryPolicy (sans-I/O) and with_retries: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.http import HttpStatusError
from voxwire.services.retry import NO_RETRY, RetryPolicy, parse_retry_after, with_retries


def status(code: int, retry_after: float | None = None) -> HttpStatusError:
    return HttpStatusError("llm", code, f"llm: HTTP {code}", retry_after)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (status(429), True),
        (status(500), True),
        (status(503), True),
        (status(529), True),
        (ServiceError("tts", "status_502"), True),
        (ServiceError("stt", "connect"), True),
        (status(400), False),
        (status(401), False),
        (status(404), False),
        (ServiceTimeout("llm", 1.0), False),
        (ServiceError("llm", "closed"), False),
        (ServiceError("llm", "bad_message"), False),
        (ServiceError("llm", "status_abc"), False),
        (ValueError("not a service error"), False),
    ],
)
def test_what_is_retried(error: BaseException, retried: bool) -> None:
    assert RetryPolicy().retryable(error) is retried
    assert (RetryPolicy().delay(1, error, 0.0) is not None) is retried
    assert NO_RETRY.delay(1, error, 0.0) is None


def test_backoff_doubles_up_to_the_cap_with_jitter_below_it() -> None:
    top = RetryPolicy(attempts=10, base_delay=0.1, max_delay=0.5, budget=100, random=lambda: 0.0)
    assert [top.delay(n, status(500), 0.0) for n in range(1, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )
    low = RetryPolicy(attempts=10, base_delay=0.1, jitter=0.5, budget=100, random=lambda: 0.999)
    delay = low.delay(2, status(500), 0.0)
    assert delay is not None
    assert 0.1 <= delay < 0.2 * 0.5 + 0.001


def test_attempts_and_budget_bound_the_retries() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.1, budget=1.0, random=lambda: 0.0)
    assert policy.delay(2, status(500), 0.0) is not None
    assert policy.delay(3, status(500), 0.0) is None  # three attempts made
    assert policy.delay(1, status(500), 0.95) is None  # the wait would end past the budget


def test_retry_after_is_honoured_within_the_budget() -> None:
    policy = RetryPolicy(budget=3.0)
    assert policy.delay(1, status(429, retry_after=2.0), 0.0) == 2.0
    assert policy.delay(1, status(429, retry_after=0.0), 0.0) == 0.0
    assert policy.delay(1, status(429, retry_after=5.0), 0.0) is None  # past the budget


def test_parse_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:07 GMT", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    for bad in (None, "", "soon", "-1", "nan", "inf"):
        assert parse_retry_after(bad) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"base_delay": -1},
        {"factor": 0.5},
        {"jitter": 2},
        {"budget": float("inf")},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RetryPolicy(attempts=1.5)  # type: ignore[arg-type]


def test_with_retries_tries_again_until_success_and_reports_each_retry() -> None:
    calls: list[float] = []
    told: list[tuple[str, float]] = []

    async def attempt() -> str:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise status(503)
        return "ok"

    policy = RetryPolicy(attempts=5, base_delay=0.02, random=lambda: 0.0)

    async def main() -> str:
        return await with_retries(policy, attempt, on_retry=lambda e, w: told.append((e.reason, w)))

    assert asyncio.run(main()) == "ok"
    assert told == [("status_503", 0.02), ("status_503", 0.04)]
    assert calls[1] - calls[0] >= 0.02
    assert calls[2] - calls[1] >= 0.04


def test_with_retries_gives_up_at_once_when_data_was_given_out() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise status(500)

    async def main() -> None:
        await with_retries(RetryPolicy(), attempt, fresh=lambda: False)

    with pytest.raises(HttpStatusError):
        asyncio.run(main())
    assert calls == 1
