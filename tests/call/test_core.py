"""The per-call core driven with messages and times passed in: no event loop, no sockets."""

from __future__ import annotations

import json

import numpy as np
import pytest

import voxwire
from voxwire.call import (
    CLOSE_IDLE,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SLOW_PEER,
    CLOSE_TOO_BIG,
    CallCore,
    Limits,
)
from voxwire.pacing import PacingScheduler
from voxwire.protocols import Audio, CallStarted, MarkPlayed, Stopped
from voxwire.protocols.audiosocket import AudioSocketCodec
from voxwire.protocols.twilio import TwilioCodec
from voxwire.security import TokenAuth
from voxwire.sim.providers import AudioSocketSide, TwilioSide

SILENCE = np.zeros(160, dtype=np.int16)


def started_core(
    limits: Limits | None = None, side: TwilioSide | None = None
) -> tuple[CallCore, TwilioSide]:
    side = side or TwilioSide(strict=True)
    core = CallCore(TwilioCodec(resampler=voxwire.Resampler), limits, now=0.0)
    for message in side.opening():
        assert core.receive(message, 0.0) is None
    assert [type(event).__name__ for event in core.events] == ["Connected", "CallStarted"]
    core.events.clear()
    return core, side


def kinds(core: CallCore) -> list[str]:
    names = [type(event).__name__ for event in core.events]
    core.events.clear()
    return names


def pace(core: CallCore, scheduler: PacingScheduler, until: float, step: float = 0.005) -> None:
    """What a pacer does: poll the schedule on a clock and hand each item to the core."""
    now = 0.0
    while now <= until:
        for _, item in scheduler.poll(now):
            core.paced(item)
        now += step


def sent(core: CallCore, side: TwilioSide) -> list[str]:
    """The outbox as the strict Twilio side reads it (raises on a wire-format violation)."""
    names: list[str] = []
    while core.outbox:
        names.extend(type(event).__name__ for event in side.parse(core.outbox.popleft()))
    return names


def test_the_start_opens_the_paced_stream_and_audio_follows_in_order() -> None:
    core, side = started_core()
    assert core.stream is not None
    assert core.stream.sample_rate == 8000
    assert core.receive(side.audio(SILENCE), 0.02) is None
    assert kinds(core) == ["Audio"]
    assert not core.outbox  # nothing to send before anything is played


def test_play_resamples_once_and_each_paced_frame_becomes_one_message() -> None:
    core, side = started_core()
    scheduler = PacingScheduler()
    assert core.stream is not None
    scheduler.add(core.stream)
    core.play(np.zeros(2400, dtype=np.int16), 24_000)  # 100 ms at 24 kHz
    core.flush()
    assert core.queued_samples == 800  # five line-rate frames, the last one padded
    pace(core, scheduler, 0.2)
    assert sent(core, side) == ["PlayAudio"] * 5
    assert core.queued_samples == 0


def test_marks_are_sent_after_their_audio_and_an_echo_moves_the_played_position() -> None:
    core, side = started_core()
    scheduler = PacingScheduler()
    assert core.stream is not None
    scheduler.add(core.stream)
    core.play(np.zeros(320, dtype=np.int16))
    core.mark("m1")
    pace(core, scheduler, 0.1)
    assert sent(core, side) == ["PlayAudio", "PlayAudio", "PlayMark"]
    assert core.played_samples == 0
    for message in side.mark_played("m1"):
        core.receive(message, 0.2)
    events = list(core.events)
    assert events == [MarkPlayed("m1")]
    assert core.played_samples == 320


def test_a_clear_returns_its_marks_as_cleared_sends_the_clear_and_swallows_late_echoes() -> None:
    core, side = started_core()
    scheduler = PacingScheduler()
    assert core.stream is not None
    scheduler.add(core.stream)
    core.play(np.zeros(1600, dtype=np.int16))
    core.mark("reply")
    pace(core, scheduler, 0.25)  # all ten frames and the mark are out
    sent(core, side)
    core.events.clear()
    core.clear()
    assert list(core.events) == [MarkPlayed("reply", cleared=True)]
    assert sent(core, side) == ["ClearAudio"]
    for message in side.mark_played("reply"):  # the provider echoes it anyway
        core.receive(message, 0.3)
    assert list(core.events) == [MarkPlayed("reply", cleared=True)]  # swallowed
    assert core.played_samples == 0


def test_mute_clears_and_drops_what_is_played_until_unmute() -> None:
    core, side = started_core()
    core.play(np.zeros(160, dtype=np.int16))
    core.mute()
    assert core.muted
    assert sent(core, side) == ["ClearAudio"]
    core.play(np.zeros(480, dtype=np.int16))
    assert core.muted_samples == 480
    assert core.queued_samples == 0
    core.unmute()
    core.play(np.zeros(160, dtype=np.int16))
    assert core.queued_samples == 160


def test_audio_events_past_the_bound_are_dropped_and_counted_others_are_kept() -> None:
    core, side = started_core(Limits(max_pending_events=3))
    for i in range(5):
        core.receive(side.audio(SILENCE), 0.02 * (i + 1))
    dtmf = side.dtmf("5")
    assert dtmf is not None
    core.receive(dtmf, 0.2)
    assert kinds(core) == ["Audio", "Audio", "Audio", "Dtmf"]
    assert core.events_dropped == 2


def test_a_message_over_the_size_limit_closes_and_yields_no_event() -> None:
    side = TwilioSide(strict=True)
    largest = max(len(message) for message in side.opening())
    core, side = started_core(Limits(max_message_bytes=largest), side)
    decision = core.receive(side.audio(np.zeros(1600, dtype=np.int16)), 0.02)
    assert decision is not None
    assert (decision.kind, decision.code) == ("too_big", CLOSE_TOO_BIG)
    assert core.closing == decision
    assert core.input_ended
    assert not core.events


def test_messages_without_audio_past_the_rate_close_with_policy() -> None:
    core, side = started_core(Limits(max_messages_per_second=5))
    decision = None
    for i in range(20):
        dtmf = side.dtmf("1")
        assert dtmf is not None
        decision = decision or core.receive(dtmf, 0.001 * i)
    assert decision is not None
    assert (decision.kind, decision.code) == ("message_rate", CLOSE_POLICY)


def test_the_timer_is_the_idle_deadline_an_early_wake_does_nothing_and_silence_closes() -> None:
    core, side = started_core(Limits(idle_timeout=3.0))
    core.receive(side.audio(SILENCE), 1.0)
    assert core.get_timer() == pytest.approx(4.0)
    assert core.handle_timer(3.5) is None  # woken early: not idle yet
    assert core.closing is None
    decision = core.handle_timer(4.0)
    assert decision is not None
    assert (decision.kind, decision.code) == ("idle", CLOSE_IDLE)
    assert core.get_timer() is None


def test_the_stop_ends_the_input_and_later_plays_are_dropped() -> None:
    core, side = started_core()
    for message in side.closing():
        core.receive(message, 0.5)
    assert isinstance(core.events[-1], Stopped)
    assert core.input_ended
    assert core.closing is None  # the driver closes normally once the handler returns
    assert core.get_timer() is None
    core.play(np.zeros(160, dtype=np.int16))
    assert core.queued_samples == 0


def test_a_peer_that_does_not_read_closes_the_call_and_nothing_more_is_queued() -> None:
    core, _ = started_core(Limits(max_pending_out=3))
    frame = np.zeros(160, dtype=np.int16)
    for _ in range(3):
        assert core.paced(frame) is None
    decision = core.paced(frame)
    assert decision is not None
    assert (decision.kind, decision.code) == ("slow_peer", CLOSE_SLOW_PEER)
    assert len(core.outbox) == 3
    assert core.paced(frame) == decision  # the first decision stands
    core.clear()
    assert len(core.outbox) == 3  # no clear goes out on a closing call


def test_the_application_close_is_a_decision_and_the_first_one_stands() -> None:
    core, _ = started_core()
    first = core.close(CLOSE_NORMAL, "bye")
    assert (first.kind, first.code, first.reason) == ("", CLOSE_NORMAL, "bye")
    assert core.close(4000, "later") == first
    assert core.closing == first


# --- the authentication gate ------------------------------------------------------------


def deferred(now: float = 0.0) -> CallCore:
    return CallCore(
        TwilioCodec(),
        Limits(auth_timeout=5.0),
        now=now,
        auth=TokenAuth("s3cret"),
        authenticated=False,
    )


def test_a_start_with_the_right_token_authenticates_and_opens_the_stream() -> None:
    core = deferred()
    side = TwilioSide(strict=True, parameters={"token": "s3cret"})
    for message in side.opening():
        assert core.receive(message, 0.1) is None
    assert core.authenticated
    assert core.stream is not None
    assert core.get_timer() == pytest.approx(0.1 + 15.0)  # only the idle deadline is left
    assert kinds(core) == ["CallStarted"]  # nothing before the token reaches the app


def test_a_start_with_a_wrong_token_closes_with_policy_and_nothing_reaches_the_app() -> None:
    core = deferred()
    side = TwilioSide(strict=True, parameters={"token": "wrong"})
    decisions = [core.receive(message, 0.1) for message in side.opening()]
    decision = decisions[-1]
    assert decision is not None
    assert (decision.kind, decision.code) == ("auth", CLOSE_POLICY)
    assert decision.reason.startswith("authentication failed")
    assert not core.events
    assert core.stream is None


def test_no_token_within_the_deadline_closes_and_events_before_it_are_dropped() -> None:
    core = deferred(now=10.0)
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    core.receive(connected, 10.5)
    assert not core.events
    assert core.get_timer() == pytest.approx(15.0)  # the auth deadline comes before idleness
    assert core.handle_timer(14.9) is None
    decision = core.handle_timer(15.0)
    assert decision is not None
    assert (decision.kind, decision.code) == ("auth_deadline", CLOSE_POLICY)


# --- AudioSocket: a second start re-announces the rate ----------------------------------


def test_a_re_announced_rate_opens_a_new_paced_stream_at_the_new_rate() -> None:
    side = AudioSocketSide(16000)
    core = CallCore(AudioSocketCodec(), now=0.0)
    for message in side.opening():  # the UUID: the stream opens at the codec's 8 kHz
        core.receive(message, 0.0)
    first = core.stream
    assert first is not None
    assert first.sample_rate == 8000
    core.receive(side.audio(np.zeros(320, dtype=np.int16)), 0.02)  # audio fixes 16 kHz
    assert core.stream is not None
    assert core.stream is not first
    assert core.stream.sample_rate == 16000
    starts = [e for e in core.events if isinstance(e, CallStarted)]
    assert [s.media_format.sample_rate for s in starts] == [8000, 16000]
    assert isinstance(core.events[-1], Audio)


def test_before_the_start_the_application_surface_refuses_to_play() -> None:
    core = CallCore(TwilioCodec(), now=0.0)
    with pytest.raises(RuntimeError, match="has not started"):
        core.play(SILENCE)
    assert core.queued_total == 0
    assert core.playout_position(1.0) == 0


def test_the_traffic_summary_counts_what_the_core_took_and_sent() -> None:
    core, side = started_core()
    for i in range(50):
        core.receive(side.audio(SILENCE), 0.02 * (i + 1))
    for _ in range(25):
        core.paced(np.zeros(160, dtype=np.int16))
    traffic = core.stats.traffic(8000)
    assert traffic["messages_in"] == 52  # connected, start and the media
    assert traffic["audio_in_s"] == 1.0
    assert traffic["messages_out"] == len(core.outbox) == 25
    assert traffic["audio_out_s"] == 0.5
    assert core.stats.traffic(0)["audio_in_s"] == 0.0  # no rate known yet
