"""The pacing scheduler on a virtual clock: exact send times, no drift, no bursts."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.pacing import MarkDue, MarkOut, PacedStream, PacingScheduler
from voxwire.protocols import MarkPlayed

F = 0.02


def frames(n: int, rate: int = 8000, start: int = 0) -> np.ndarray:
    """n frames whose first sample is the frame's index (to identify them when sent)."""
    out = np.zeros(n * rate // 50, np.int16)
    out[:: rate // 50] = np.arange(start, start + n)
    return out


def drive(sched: PacingScheduler, until: float, jitter: float = 0.0, seed: int = 0):
    """Poll at each deadline (plus a random lateness up to `jitter`) until `until`."""
    rng = random.Random(seed)
    sent = []
    now = 0.0
    while True:
        for stream, item in sched.poll(now):
            sent.append((now, stream, item))
        deadline = sched.next_deadline()
        if deadline is None or deadline > until:
            return sent
        now = max(now, deadline) + rng.uniform(0, jitter)


def test_lead_then_exactly_one_frame_per_frame_time() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    stream.push(frames(50))
    sent = drive(sched, until=10.0)
    times = [t for t, _, _ in sent]
    ids = [int(item[0]) for _, _, item in sent]
    assert ids == list(range(50))
    # frame k leaves when the audio sent would reach now + lead: t = (k + 1) * F - lead
    expected = [max(0.0, (k + 1) * F - 0.06) for k in range(50)]
    assert times == pytest.approx(expected, abs=1e-9)
    assert stream.sent_samples == 50 * 160


@pytest.mark.parametrize("lead", [0.02, 0.04, 0.06, 0.1])
def test_audio_sent_never_runs_more_than_the_lead_ahead(lead: float) -> None:
    sched = PacingScheduler(lead=lead)
    stream = sched.add(PacedStream(16000))
    stream.push(frames(500, 16000))
    sent = drive(sched, until=20.0, jitter=0.004, seed=7)
    for i, (t, _, _) in enumerate(sent):
        ahead = (i + 1) * F - t  # audio sent so far minus real time elapsed
        assert ahead <= lead + 1e-9


def test_no_drift_over_a_long_call_with_late_wakeups() -> None:
    # ten minutes of audio, the event loop waking up to 5 ms late each time
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000, max_queued=3600))  # ten minutes pushed at once
    n = 30_000
    stream.push(frames(n))
    sent = drive(sched, until=1e9, jitter=0.005, seed=1)
    assert len(sent) == n
    last_time = sent[-1][0]
    # the last frame left when due ((n * F) - lead after the start) plus at most one lateness
    assert (n * F - 0.06) <= last_time <= (n * F - 0.06) + 0.005 + 1e-6
    assert stream.underruns == 0


def test_a_stall_restarts_with_at_most_the_lead_never_a_burst() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    stream.push(frames(200))
    assert len(sched.poll(0.0)) == 3
    assert len(sched.poll(0.02)) == 1
    # the process stalls for a second
    burst = sched.poll(1.02)
    assert len(burst) == 3  # lead / F frames, not the 50 it fell behind
    assert stream.underruns == 1
    assert len(sched.poll(1.03)) == 0
    assert len(sched.poll(1.04)) == 1


def test_starved_producer_restarts_the_schedule_without_a_burst() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    stream.push(frames(2))
    assert len(sched.poll(0.0)) == 2
    # TTS is late: the next audio arrives 0.5 s later, 10 frames at once
    stream.push(frames(10, start=2))
    assert len(sched.poll(0.5)) == 3
    assert sched.next_deadline() == pytest.approx(0.52)


def test_many_streams_each_get_real_time() -> None:
    sched = PacingScheduler(lead=0.06)
    streams = [sched.add(PacedStream(8000, name=str(i))) for i in range(100)]
    for i, stream in enumerate(streams):
        stream.push(frames(100))
        del i
    sent = drive(sched, until=1.0)
    per_stream = {s: 0 for s in streams}
    for t, stream, _ in sent:
        assert t <= 1.0
        per_stream[stream] += 1
    # by t = 1.0 each stream sent (1.0 + lead) / F frames: 53
    assert set(per_stream.values()) == {53}


def test_a_partial_frame_waits_and_flush_pads_it() -> None:
    sched = PacingScheduler()
    stream = sched.add(PacedStream(8000))
    stream.push(np.ones(200, np.int16))
    sent = sched.poll(0.0)
    assert len(sent) == 1
    assert stream.queued_samples == 40
    stream.flush()
    (item,) = [i for _, i in sched.poll(0.0)]
    assert isinstance(item, np.ndarray)
    assert list(item[:40]) == [1] * 40
    assert not item[40:].any()


def test_marks_follow_their_audio_and_give_the_played_position() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    stream.push(frames(5))
    stream.mark("first")
    stream.push(frames(5, start=5))
    stream.mark("second")
    sent = drive(sched, until=1.0)
    kinds = [type(item).__name__ for _, _, item in sent]
    assert kinds == ["ndarray"] * 5 + ["MarkOut"] + ["ndarray"] * 5 + ["MarkOut"]
    # a mark leaves with the frame before it
    assert sent[5][0] == sent[4][0]
    assert stream.played_samples == 0
    assert stream.resolve_mark("first") == MarkPlayed("first")
    assert stream.played_samples == 5 * 160
    assert stream.resolve_mark("second") == MarkPlayed("second")
    assert stream.played_seconds == pytest.approx(0.2)
    assert stream.resolve_mark("not-ours") == MarkPlayed("not-ours")


def test_local_marks_fire_when_their_audio_has_played() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000, local_marks=True))
    stream.push(frames(5))
    stream.mark("end")
    sent = drive(sched, until=1.0)
    marks = [(t, item) for t, _, item in sent if isinstance(item, MarkDue)]
    assert marks == [(pytest.approx(0.1), MarkDue("end"))]
    assert stream.played_samples == 800


def test_clear_drops_queued_audio_and_reports_pending_marks_as_cleared() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    stream.push(frames(2))
    stream.mark("sent")
    stream.push(frames(20, start=2))
    stream.mark("queued")
    first = sched.poll(0.0)
    assert [type(i) for _, i in first] == [np.ndarray, np.ndarray, MarkOut, np.ndarray]
    cleared = stream.clear()
    assert cleared == [MarkPlayed("sent", cleared=True), MarkPlayed("queued", cleared=True)]
    assert stream.queued_samples == 0
    assert sched.poll(0.5) == []
    # the provider's later echo of the cleared mark is swallowed
    assert stream.resolve_mark("sent") is None
    assert stream.played_samples == 0
    # new audio starts a fresh schedule, positions continue after what was sent
    stream.push(frames(1, start=99))
    stream.mark("after")
    out = sched.poll(0.6)
    assert len(out) == 2
    stream.resolve_mark("after")
    assert stream.played_samples == 4 * 160


def test_stream_argument_checks() -> None:
    with pytest.raises(ValueError, match="whole number"):
        PacedStream(44100, frame_ms=20 + 1)
    stream = PacedStream(8000)
    with pytest.raises(TypeError):
        stream.push(np.zeros(10, np.float32))  # type: ignore[arg-type]
    stream.mark("x")
    with pytest.raises(ValueError, match="already pending"):
        stream.mark("x")


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(st.integers(1, 700), st.just("mark"), st.just("flush")), min_size=1, max_size=25
    )
)
def test_frames_out_are_the_audio_in_and_marks_sit_at_their_positions(ops: list[object]) -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    expected: list[np.ndarray] = []
    pending = 0  # samples pushed since the last frame boundary
    positions: dict[str, int] = {}
    total = 0
    counter = 0
    for op in ops:
        if op == "mark" or op == "flush":
            if pending % 160:
                pad = 160 - pending % 160
                expected.append(np.zeros(pad, np.int16))
                total += pad
            pending = 0
            if op == "mark":
                counter += 1
                stream.mark(f"m{counter}")
                positions[f"m{counter}"] = total
            else:
                stream.flush()
        else:
            assert isinstance(op, int)
            chunk = (np.arange(op) % 1000 + counter * 1000).astype(np.int16)
            stream.push(chunk)
            expected.append(chunk)
            pending += op
            total += op
    stream.flush()
    out = drive(sched, until=1e6)
    audio = [item for _, _, item in out if isinstance(item, np.ndarray)]
    assert all(len(a) == 160 for a in audio)
    sent = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    want = np.concatenate(expected) if expected else np.zeros(0, np.int16)
    np.testing.assert_array_equal(sent[: len(want)], want)
    assert not sent[len(want) :].any()  # only the final padding follows
    for name, position in positions.items():
        stream.resolve_mark(name)
        assert stream.played_samples == position


def test_queue_is_bounded_and_refuses_past_the_bound() -> None:
    from voxwire.errors import QueueFull
    from voxwire.pacing import PacedStream

    stream = PacedStream(8000, max_queued=1.0)  # one second of audio
    stream.push(np.zeros(7990, dtype=np.int16))
    assert stream.queued_samples == 7990
    with pytest.raises(QueueFull, match="7990 samples queued \\+ 20 pushed would exceed"):
        stream.push(np.zeros(20, dtype=np.int16))
    assert stream.queued_samples == 7990  # nothing of the refused push was kept
    stream.push(np.zeros(10, dtype=np.int16))  # exactly at the bound is fine
    stream.clear()
    assert stream.queued_samples == 0
    stream.push(np.zeros(8000, dtype=np.int16))
    with pytest.raises(ValueError, match="max_queued must be positive"):
        PacedStream(8000, max_queued=0)


def test_playout_position_follows_the_send_clock_and_never_passes_what_was_sent() -> None:
    sched = PacingScheduler(lead=0.06)
    stream = sched.add(PacedStream(8000))
    assert stream.playout_position(0.0) == 0
    stream.push(frames(10))
    for _, _ in sched.poll(0.0):
        pass
    # frames 0-2 were sent at t=0 (the lead); the phone plays frame k from t0 + k * F
    assert stream.sent_samples == 3 * 160
    assert stream.playout_position(0.0) == 0
    assert stream.playout_position(0.01) == 80
    assert stream.playout_position(0.05) == 400
    assert stream.playout_position(0.07) == 3 * 160  # no further than what was sent
    drive(sched, until=1.0)
    assert stream.playout_position(0.15) == 1200
    assert stream.playout_position(5.0) == 1600
    # after a stall the schedule restarts: audio sent before it counts as played
    stream.push(frames(5))
    for _, _ in sched.poll(3.0):
        pass
    assert stream.playout_position(3.0) == 1600
    assert stream.playout_position(3.03) == 1600 + 240
    stream.clear()
    assert stream.playout_position(3.03) == stream.sent_samples


def test_poll_max_items_leaves_the_other_streams_due_for_the_next_poll() -> None:
    sched = PacingScheduler(lead=0.0)
    streams = [sched.add(PacedStream(8000, name=str(i))) for i in range(3)]
    for i, stream in enumerate(streams):
        stream.push(frames(2, start=10 * i))
    first = sched.poll(0.0, max_items=1)
    assert len(first) == 1  # one stream's due item, then the round stops
    deadline = sched.next_deadline()
    assert deadline is not None
    assert deadline <= 0.0  # the other two are still due
    rest = sched.poll(0.0)
    assert len(rest) == 2
    served = {id(s) for s, _ in first + rest}
    assert served == {id(s) for s in streams}  # every stream once, none twice
    # nothing was skipped or sent early: the second frames come at 20 ms
    assert sched.poll(0.01) == []
    assert len(sched.poll(F)) == 3
