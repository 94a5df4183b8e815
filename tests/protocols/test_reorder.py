"""The reorder buffer: invariants under any arrival order, and the Telnyx codec using it."""

from __future__ import annotations

import json
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.protocols import Audio, ReorderBuffer, TelnyxCodec
from voxwire.sim.providers import TelnyxSide


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(0, 60), st.floats(0, 0.05)), max_size=80),
    capacity=st.integers(1, 10),
    delay=st.floats(0, 0.2),
)
def test_output_is_in_order_without_duplicates_and_everything_is_accounted_for(
    arrivals: list[tuple[int, float]], capacity: int, delay: float
) -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(capacity, delay)
    out: list[int] = []
    now = 0.0
    for seq, step in arrivals:
        now += step
        out += buf.poll(now)
        out += buf.push(seq, seq, now)
        assert len(buf) <= capacity
        deadline = buf.deadline()
        assert (deadline is None) == (len(buf) == 0)
        if deadline is not None:
            assert deadline <= now + delay + 1e-12
    out += buf.flush()
    assert len(buf) == 0
    assert out == sorted(set(out))  # strictly increasing
    assert len(arrivals) == len(out) + buf.late + buf.duplicates
    if out:
        assert buf.gaps == out[-1] - out[0] + 1 - len(out)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 200), capacity=st.integers(1, 8), seed=st.integers(0, 2**32))
def test_displacement_within_capacity_loses_nothing(n: int, capacity: int, seed: int) -> None:
    # each item moves at most `capacity` places from its slot, no time passes
    rng = random.Random(seed)
    keys = [i + rng.uniform(0, capacity) for i in range(n)]
    order = [i for _, i in sorted(zip(keys, range(n), strict=True))]
    buf: ReorderBuffer[int] = ReorderBuffer(capacity, 1.0)
    out: list[int] = []
    for seq in order:
        out += buf.push(seq, seq, 0.0)
    out += buf.flush()
    if order[0] == 0:
        assert out == list(range(n))
        assert buf.gaps == 0
        assert buf.late == 0


def test_a_gap_is_given_up_after_max_delay() -> None:
    buf: ReorderBuffer[str] = ReorderBuffer(capacity=8, max_delay=0.06)
    assert buf.push(1, "a", 0.00) == ["a"]
    assert buf.push(3, "c", 0.02) == []
    assert buf.push(4, "d", 0.04) == []
    assert buf.deadline() == 0.08
    assert buf.poll(0.079) == []
    assert buf.poll(0.08) == ["c", "d"]
    assert buf.gaps == 1
    assert buf.push(2, "b", 0.1) == []  # too late now
    assert buf.late == 1


def test_capacity_overflow_gives_up_the_gap_at_once() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(capacity=2, max_delay=10.0)
    buf.push(0, 0, 0.0)
    assert buf.push(2, 2, 0.0) == []
    assert buf.push(3, 3, 0.0) == []
    assert buf.push(4, 4, 0.0) == [2, 3, 4]
    assert buf.gaps == 1


def test_telnyx_media_arriving_out_of_order_is_delivered_in_order() -> None:
    peer = TelnyxSide(strict=True)
    codec = TelnyxCodec(reorder_capacity=4, reorder_delay=0.06)
    for message in peer.opening():
        codec.receive(message, 0.0)
    frames = [np.full(160, i * 100, np.int16) for i in range(8)]
    messages = [peer.audio(f) for f in frames]
    order = [0, 2, 1, 3, 5, 4, 7, 6]
    events = []
    for t, i in enumerate(order):
        events += codec.receive(messages[i], t * 0.02)
    events += codec.handle_timer(1.0)
    audio = [e for e in events if isinstance(e, Audio)]
    assert [a.sequence for a in audio] == list(range(1, 9))
    assert codec.stats.reordered == 3
    assert codec.stats.gaps == 0


def test_telnyx_lost_media_is_released_by_the_timer() -> None:
    peer = TelnyxSide(strict=True)
    codec = TelnyxCodec(reorder_delay=0.05)
    for message in peer.opening():
        codec.receive(message, 0.0)
    messages = [peer.audio(np.zeros(160, np.int16)) for _ in range(4)]
    assert len(codec.receive(messages[0], 0.00)) == 1
    assert codec.receive(messages[2], 0.02) == []  # chunk 2 is lost
    assert codec.receive(messages[3], 0.04) == []
    assert codec.get_timer() == 0.07
    released = codec.handle_timer(0.07)
    assert [a.sequence for a in released if isinstance(a, Audio)] == [3, 4]
    assert codec.stats.gaps == 1
    assert codec.get_timer() is None
    # duplicates and stale chunks are dropped and counted
    assert codec.receive(messages[3], 0.08) == []
    assert codec.receive(messages[1], 0.08) == []
    assert codec.stats.late_dropped == 2


def test_telnyx_stop_flushes_held_media_first() -> None:
    peer = TelnyxSide(strict=True)
    codec = TelnyxCodec()
    for message in peer.opening():
        codec.receive(message, 0.0)
    messages = [peer.audio(np.zeros(160, np.int16)) for _ in range(3)]
    codec.receive(messages[0], 0.0)
    codec.receive(messages[2], 0.0)
    events = codec.receive(peer.closing()[0], 0.01)
    assert [type(e).__name__ for e in events] == ["Audio", "Stopped"]
    assert json.loads(peer.closing()[0])["event"] == "stop"
