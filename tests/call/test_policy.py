"""The call's limits as pure decisions, driven with times passed in (no event loop)."""

from __future__ import annotations

import pytest

from voxwire.call import (
    CLOSE_IDLE,
    CLOSE_POLICY,
    CLOSE_SLOW_PEER,
    CLOSE_TOO_BIG,
    CallPolicy,
    Limits,
)


def test_a_message_over_the_size_limit_is_refused_and_one_at_it_passes() -> None:
    policy = CallPolicy(Limits(max_message_bytes=100), 0.0)
    assert policy.received(100, 1.0) is None
    refused = policy.received(101, 2.0)
    assert refused is not None
    assert (refused.kind, refused.code) == ("too_big", CLOSE_TOO_BIG)
    assert "101 bytes" in refused.reason
    closed = policy.too_big_closed("frame too large")
    assert (closed.kind, closed.code) == ("too_big", CLOSE_TOO_BIG)
    assert "frame too large" in closed.reason


def test_audio_at_real_time_passes_for_a_long_call() -> None:
    policy = CallPolicy(Limits(), 0.0)
    for i in range(1, 30_001):  # 10 minutes of 20 ms messages, on time
        assert policy.charge(i * 0.02, 0.02) is None


def test_audio_held_back_then_delivered_at_once_passes_up_to_the_burst() -> None:
    policy = CallPolicy(Limits(max_audio_burst=10.0), 0.0)
    # 9.9 s of audio arriving in one instant fits the 10 s burst ...
    for _ in range(495):
        assert policy.charge(0.0, 0.02) is None
    # ... the next 0.2 s does not
    refused = None
    for _ in range(10):
        refused = refused or policy.charge(0.0, 0.02)
    assert refused is not None
    assert (refused.kind, refused.code) == ("audio_rate", CLOSE_POLICY)


def test_audio_faster_than_the_sustained_rate_is_refused_once_the_burst_is_spent() -> None:
    policy = CallPolicy(Limits(max_audio_burst=1.0, max_audio_rate=1.05), 0.0)
    now, refused = 0.0, None
    while refused is None and now < 60.0:
        now += 0.01  # 20 ms of audio every 10 ms: twice real time
        refused = policy.charge(now, 0.02)
    assert refused is not None
    assert refused.kind == "audio_rate"
    # 1 s of burst spent at (2 - 1.05) s/s takes about 1.05 s
    assert 0.9 < now < 1.2


def test_tiny_audio_messages_cost_at_least_the_minimum() -> None:
    policy = CallPolicy(Limits(max_audio_burst=1.0, min_message_audio=0.01), 0.0)
    refused = [policy.charge(0.0, 0.0001) for _ in range(200)]
    first = next(i for i, r in enumerate(refused) if r is not None)
    # charged 10 ms each, not 0.1 ms: the 1 s burst is spent by about the 100th
    assert 98 <= first <= 100
    decision = refused[first]
    assert decision is not None
    assert decision.kind == "audio_rate"


def test_messages_without_audio_have_their_own_bucket() -> None:
    policy = CallPolicy(Limits(max_messages_per_second=10.0), 0.0)
    assert all(policy.charge(0.0, 0.0) is None for _ in range(10))
    refused = policy.charge(0.0, 0.0)
    assert refused is not None
    assert (refused.kind, refused.code) == ("message_rate", CLOSE_POLICY)
    # a second later the bucket is full again
    policy = CallPolicy(Limits(max_messages_per_second=10.0), 0.0)
    for _ in range(10):
        policy.charge(0.0, 0.0)
    assert policy.charge(1.0, 0.0) is None
    # and audio does not draw on it
    assert policy.charge(1.0, 0.02) is None


def test_idle_is_judged_from_the_last_message_received() -> None:
    policy = CallPolicy(Limits(idle_timeout=15.0), 100.0)
    assert policy.idle_due == 115.0
    assert policy.check_idle(114.9) is None
    policy.received(10, 110.0)
    assert policy.idle_due == 125.0
    assert policy.check_idle(115.0) is None
    refused = policy.check_idle(125.0)
    assert refused is not None
    assert (refused.kind, refused.code) == ("idle", CLOSE_IDLE)


def test_the_auth_deadline_closes_only_an_unauthenticated_call() -> None:
    assert CallPolicy(Limits(), 0.0).auth_due is None
    assert CallPolicy(Limits(), 0.0).check_auth_deadline(1e9) is None
    policy = CallPolicy(Limits(auth_timeout=5.0), 10.0, authenticated=False)
    assert policy.auth_due == 15.0
    assert policy.check_auth_deadline(14.99) is None
    refused = policy.check_auth_deadline(15.0)
    assert refused is not None
    assert (refused.kind, refused.code) == ("auth_deadline", CLOSE_POLICY)
    policy = CallPolicy(Limits(auth_timeout=5.0), 10.0, authenticated=False)
    policy.authenticated()
    assert policy.auth_due is None
    assert policy.check_auth_deadline(20.0) is None


def test_the_slow_peer_rule_counts_what_waits_plus_what_would_be_added() -> None:
    policy = CallPolicy(Limits(max_pending_out=500), 0.0)
    assert policy.check_pending_out(499, 1) is None
    refused = policy.check_pending_out(499, 2)
    assert refused is not None
    assert (refused.kind, refused.code) == ("slow_peer", CLOSE_SLOW_PEER)
    assert "499 messages pending" in refused.reason
    lag = policy.read_lag_exceeded()
    assert (lag.kind, lag.code) == ("slow_peer", CLOSE_SLOW_PEER)
    assert "max_read_lag" in lag.reason


@pytest.mark.parametrize(
    "field", ["max_message_bytes", "max_audio_rate", "idle_timeout", "auth_timeout"]
)
def test_limits_refuse_a_non_positive_value(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


def test_the_session_module_still_exports_the_same_objects() -> None:
    from voxwire.aio import session
    from voxwire.call import policy

    assert session.Limits is policy.Limits
    for name in ("CLOSE_IDLE", "CLOSE_POLICY", "CLOSE_SLOW_PEER", "CLOSE_TOO_BIG"):
        assert getattr(session, name) == getattr(policy, name)
