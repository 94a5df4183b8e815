"""The rules of one RTP stream, driven with datagrams and times passed in (no event loop).

The outbound side is paced the way :mod:`voxwire.aio.pacer` paces it, with the sans-I/O
:class:`PacingScheduler` polled at its own deadlines on a virtual clock; every packet the
core returns is parsed with :func:`voxwire.rtp.parse_rtp`.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from voxwire.call.rtp import (
    DRAIN_MARK_PREFIX,
    TAIL_FADE_MS,
    RtpEndpointCore,
    rtp_call_started,
    rtp_frame_step,
)
from voxwire.g711 import decode_ulaw
from voxwire.pacing import MarkDue, PacingScheduler
from voxwire.protocols.rtp_session import RtpSession
from voxwire.rtp import RtpPacket, parse_rtp

N = 160  # samples (and timestamp units) of a 20 ms PCMU frame
F = 0.02
PEER = ("192.0.2.10", 4000)
OTHER = ("198.51.100.20", 5000)


def _frames(count: int, value: int = 1000) -> np.ndarray:
    return np.full(count * N, value, np.int16)


def _pcm(packet: RtpPacket) -> np.ndarray:
    return np.asarray(decode_ulaw(np.frombuffer(packet.payload, np.uint8)))


def _packet(peer: RtpSession) -> bytes:
    return peer.send(np.zeros(N, np.int16))


class Wire:
    """A core's outbound side on a virtual clock: the scheduler polled at its deadlines
    (as the asyncio pacer does), each frame handed to :meth:`RtpEndpointCore.send`."""

    def __init__(self, core: RtpEndpointCore) -> None:
        self.core = core
        self.scheduler = PacingScheduler()
        self.scheduler.add(core.stream)
        self.now = 0.0
        self.sent: list[tuple[float, RtpPacket]] = []
        self.marks: list[str] = []
        self.nones = 0

    def run_until(self, end: float) -> None:
        while True:
            due = self.scheduler.next_deadline()
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            for _, item in self.scheduler.poll(self.now):
                if isinstance(item, MarkDue):
                    self.marks.append(item.name)
                    assert self.core.send(item, self.now) is None
                    continue
                wire = self.core.send(item, self.now)
                if wire is None:
                    self.nones += 1
                else:
                    self.sent.append((self.now, parse_rtp(wire)))
        self.now = max(self.now, end)


def _steady(packets: list[RtpPacket]) -> None:
    """Consecutive sequence numbers and timestamps, no marker bit."""
    for a, b in itertools.pairwise(packets):
        assert b.sequence == (a.sequence + 1) & 0xFFFF
        assert b.timestamp == (a.timestamp + N) & 0xFFFFFFFF
        assert not b.marker


# --- latching -------------------------------------------------------------------------


def test_latches_onto_the_first_accepted_packet_and_counts_the_others() -> None:
    peer = RtpSession("pcmu", ssrc=0x1234ABCD)
    core = RtpEndpointCore(RtpSession("pcmu"))
    assert core.remote_addr is None
    assert not core.latched
    # not RTP, and RTP of another payload type: neither latches
    assert core.receive(b"\x00" * 5, OTHER, 1.0) == "malformed"
    assert core.receive(_packet(RtpSession("pcma")), OTHER, 1.0) == "other_payload"
    assert core.remote_addr is None
    assert core.last_received is None
    assert core.receive(_packet(peer), PEER, 1.5) == "stored"
    assert core.latched
    assert core.remote_addr == PEER
    assert (core.last_received, core.remote_ssrc) == (1.5, 0x1234ABCD)
    # from now on anyone else is ignored, not looked at
    stranger = RtpSession("pcmu", ssrc=0x0BADF00D)
    assert core.receive(_packet(stranger), OTHER, 1.6) is None
    assert core.receive(b"junk", OTHER, 1.7) is None
    assert core.foreign_datagrams == 2
    assert (core.remote_addr, core.last_received, core.remote_ssrc) == (PEER, 1.5, 0x1234ABCD)
    assert core.session.stats().malformed == {"too_short": 1}  # only the first junk
    assert core.receive(_packet(peer), PEER, 1.8) == "stored"
    assert core.last_received == 1.8


def test_a_given_remote_address_is_latched_from_the_start() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER)
    assert core.latched
    assert core.receive(_packet(RtpSession("pcmu")), OTHER, 1.0) is None
    assert core.foreign_datagrams == 1
    assert core.last_received is None
    assert core.receive(_packet(RtpSession("pcmu")), PEER, 1.1) == "stored"


def test_a_duplicate_counts_as_the_stream_s_packet() -> None:
    peer = RtpSession("pcmu")
    core = RtpEndpointCore(RtpSession("pcmu"))
    packet = _packet(peer)
    assert core.receive(packet, PEER, 1.0) == "stored"
    assert core.receive(packet, PEER, 1.2) == "duplicate"
    assert core.last_received == 1.2


def test_setting_the_remote_address_moves_the_stream_without_latching() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"))
    core.remote_addr = OTHER  # a signalled offer names where to send
    assert not core.latched
    assert core.receive(_packet(RtpSession("pcmu")), PEER, 1.0) == "stored"
    assert core.remote_addr == PEER
    assert core.latched


# --- the playout clock ----------------------------------------------------------------


def test_the_playout_clock_ticks_once_per_frame_from_its_start() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"))
    assert core.get_timer() is None
    assert core.handle_timer(5.0) == []
    core.start(100.0)
    assert core.get_timer() == 100.0
    assert core.handle_timer(99.99) == []
    assert len(core.handle_timer(100.0)) == 1
    assert core.get_timer() == pytest.approx(100.02)
    assert core.handle_timer(100.0199) == []
    # a timer that fires a hair early (rounding of the loop's clock) is on time
    assert len(core.handle_timer(100.02 - 1e-7)) == 1
    assert core.stalls == 0


def test_the_clock_does_not_drift_over_a_long_call() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"))
    start = 1000.0
    core.start(start)
    ticks = 30_000  # ten minutes
    for _ in range(ticks):
        when = core.get_timer()
        assert when is not None
        assert len(core.handle_timer(when)) == 1
    # computed from the start, never accumulated: exactly start + k * frame
    assert core.get_timer() == start + ticks * F
    accumulated = start
    for _ in range(ticks):
        accumulated += F
    assert accumulated != start + ticks * F  # what adding up would have drifted to
    assert core.stalls == 0


def test_a_short_stall_pulls_every_frame_that_fell_due() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), max_catch_up=0.2)
    core.start(0.0)
    assert len(core.handle_timer(0.0)) == 1
    # held up 150 ms past the tick at 0.02: ticks 0.02 .. 0.16 are all due
    frames = core.handle_timer(0.17)
    assert len(frames) == 8
    assert core.stalls == 0
    assert core.get_timer() == pytest.approx(0.18)
    assert core.session.stats().frames == {"silence": 9}


def test_a_long_stall_rebases_the_clock_and_counts_the_skipped_ticks() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), max_catch_up=0.2)
    core.start(0.0)
    assert len(core.handle_timer(0.0)) == 1
    # the tick at 0.02 runs at 1.03: 1.01 s behind, 50 ticks skipped, the one at 1.02 due
    frames = core.handle_timer(1.03)
    assert core.stalls == 50
    assert len(frames) == 1
    assert core.get_timer() == pytest.approx(1.04)
    # then on time again
    assert len(core.handle_timer(1.04)) == 1
    assert core.stalls == 50


def test_the_playout_clock_plays_the_received_stream() -> None:
    peer = RtpSession("pcmu", first_sequence=7)
    core = RtpEndpointCore(RtpSession("pcmu"))
    core.start(0.0)
    played = []
    for k in range(60):
        now = k * F
        core.receive(peer.send(_frames(1, 100 * k)), PEER, now + 0.001)
        played.extend(f.sequence for f in core.handle_timer(now) if f.kind == "normal")
    assert played
    assert played == list(range(7, 7 + len(played)))


# --- sending: talkspurts --------------------------------------------------------------


def test_steady_sending_has_continuous_timestamps_and_one_marker() -> None:
    wire = Wire(RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER))
    wire.core.push(_frames(50))
    wire.run_until(2.0)
    packets = [p for _, p in wire.sent]
    assert len(packets) == 50
    assert packets[0].marker  # the stream's first packet starts a talkspurt
    _steady(packets)
    # one frame per frame duration, two frames (the lead) ahead of real time
    times = [t for t, _ in wire.sent]
    assert times[:2] == [0.0, 0.0]
    assert times[2:] == pytest.approx([k * F for k in range(1, 49)])


def test_after_a_pause_the_timestamp_skips_whole_frames_and_the_marker_is_set() -> None:
    wire = Wire(RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER))
    wire.core.push(_frames(50))
    wire.run_until(1.5)  # the audio ends at 1.0 (50 frames from 0.0)
    wire.core.push(_frames(10))
    wire.run_until(3.0)
    packets = [p for _, p in wire.sent]
    assert len(packets) == 60
    last, first = packets[49], packets[50]
    assert wire.sent[50][0] == 1.5
    assert first.marker
    assert first.sequence == (last.sequence + 1) & 0xFFFF  # no packet lost
    # 0.5 s nothing was sent: 25 frames skipped after the last frame's own 160
    assert (first.timestamp - last.timestamp) & 0xFFFFFFFF == N * (1 + 25)
    _steady(packets[:50])
    _steady(packets[50:])


def test_a_pause_under_half_a_frame_does_not_skip() -> None:
    wire = Wire(RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER))
    wire.core.push(_frames(50))
    wire.run_until(1.009)  # the audio ended at 1.0; 9 ms later the next comes
    wire.core.push(_frames(10))
    wire.run_until(3.0)
    packets = [p for _, p in wire.sent]
    assert wire.core.stream.underruns == 1
    _steady(packets)


def test_clear_restarts_the_stream_as_a_talkspurt() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER)
    wire = Wire(core)
    core.push(_frames(50))
    core.mark("reply")
    core.drain_mark()
    wire.run_until(0.5)
    sent = len(wire.sent)  # the lead ahead of 0.5: frames up to 0.54
    assert sent == 27
    cleared = core.clear()
    assert [(m.name, m.cleared) for m in cleared] == [("reply", True)]  # not the drain
    assert core.queued_seconds == 0
    wire.run_until(0.8)
    assert len(wire.sent) == sent  # nothing more after the clear
    core.push(_frames(5))
    wire.run_until(2.0)
    packets = [p for _, p in wire.sent]
    last, first = packets[sent - 1], packets[sent]
    assert first.marker
    assert first.sequence == (last.sequence + 1) & 0xFFFF
    gap = round((wire.sent[sent][0] - sent * F) / F)  # from the end of the sent audio
    assert gap == 13
    assert (first.timestamp - last.timestamp) & 0xFFFFFFFF == N * (1 + gap)
    _steady(packets[sent:])


def test_audio_right_after_a_clear_goes_on_while_the_peer_still_has_audio() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER)
    wire = Wire(core)
    core.push(_frames(50))
    wire.run_until(0.5)
    core.clear()
    core.push(_frames(5))  # the reply replaced at once: the sent audio runs to 0.54
    wire.run_until(2.0)
    _steady([p for _, p in wire.sent])


def test_a_clear_with_a_tail_ends_the_stream_with_a_fade_into_silence() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER, clear_tail=3)
    wire = Wire(core)
    core.push(_frames(50, value=8000))
    wire.run_until(0.5)
    sent = len(wire.sent)  # frames up to 0.54
    core.clear(now=0.5)
    assert core.stream.sent_samples == sent * N  # the tail is not the reply's audio
    tail = [parse_rtp(w) for w in core.outbox]
    assert len(tail) == 3
    assert core.tail_frames == 3
    # it follows the last packet sent: the next sequence numbers and timestamps, no marker
    _steady([wire.sent[-1][1], *tail])
    first = _pcm(tail[0]).astype(np.int64)
    fade = 8000 * TAIL_FADE_MS // 1000
    assert first[0] > 7000  # the cut audio, faded out over TAIL_FADE_MS ...
    assert all(a >= b for a, b in itertools.pairwise(first[:fade]))
    assert first[fade - 1] < 1000
    assert not first[fade:].any()  # ... into silence
    assert all(not _pcm(p).any() for p in tail[1:])
    # the next talkspurt skips its timestamp over the time from the tail's end
    core.outbox.clear()
    wire.run_until(1.0)
    core.push(_frames(5))
    wire.run_until(2.0)
    after = wire.sent[sent][1]
    assert after.marker
    assert after.sequence == (tail[-1].sequence + 1) & 0xFFFF
    gap = round((1.0 - (sent + 3) * F) / F)  # the tail ended at 0.60
    assert (after.timestamp - tail[-1].timestamp) & 0xFFFFFFFF == N * (1 + gap)


def test_a_clear_sends_a_tail_only_after_a_stream_still_playing() -> None:
    def cleared(core: RtpEndpointCore, wire: Wire, now: float | None) -> int:
        core.clear(now=now)
        count = len(core.outbox)
        core.outbox.clear()
        return count

    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER, clear_tail=2)
    wire = Wire(core)
    assert cleared(core, wire, 0.0) == 0  # nothing sent yet
    core.push(_frames(10))
    wire.run_until(0.1)
    assert cleared(core, wire, None) == 0  # no time given: no tail
    core.push(_frames(10))
    wire.run_until(0.3)
    assert cleared(core, wire, 0.3) == 2
    assert cleared(core, wire, 0.3) == 0  # a second clear: the stream has already ended
    core.push(_frames(5))  # 5 frames from 0.3, played out by 0.4 ...
    wire.run_until(0.5)
    assert cleared(core, wire, 0.5) == 0  # ... the peer's stream ran out before the clear
    core.push(_frames(10))
    wire.run_until(0.6)
    core.muted = True
    assert cleared(core, wire, 0.6) == 0  # muted: no packet at all
    core.muted = False
    assert core.tail_frames == 2
    with pytest.raises(ValueError, match="clear_tail"):
        RtpEndpointCore(RtpSession("pcmu"), clear_tail=-1)


def test_the_tail_fades_a_partial_frame_and_is_silence_when_nothing_was_queued() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER, clear_tail=1)
    wire = Wire(core)
    core.push(_frames(10, value=8000))
    wire.run_until(0.5)  # all sent; the peer plays it until 0.2, so the stream ended
    core.push(_frames(3, value=8000))
    core.push(np.full(N // 4, 8000, np.int16))  # a partial frame behind the whole ones
    wire.run_until(0.56)  # the three whole frames sent (0.5 + lead)
    assert core.stream.next_audio() is not None
    assert len(core.stream.next_audio()) == N // 4
    core.clear(now=0.56)
    first = _pcm(parse_rtp(core.outbox.popleft()))
    assert first[0] > 7000
    assert not first[8000 * TAIL_FADE_MS // 1000 :].any()
    core.push(_frames(2, value=8000))
    wire.run_until(0.6)
    core.flush()
    wire.run_until(0.7)  # sent, nothing queued behind it
    assert core.stream.next_audio() is None
    core.clear(now=0.62)
    assert not _pcm(parse_rtp(core.outbox.popleft())).any()


def test_mute_lets_the_time_pass_unsent_and_resumes_as_a_talkspurt() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"), remote_addr=PEER)
    wire = Wire(core)
    core.push(_frames(50))
    core.mark("end")
    wire.run_until(0.3)
    before = len(wire.sent)
    core.muted = True
    wire.run_until(0.6)
    assert len(wire.sent) == before
    assert core.muted_frames == wire.nones > 0
    core.muted = False
    wire.run_until(2.0)
    packets = [p for _, p in wire.sent]
    assert len(packets) + core.muted_frames == 50  # every frame went, or was muted
    assert wire.marks == ["end"]  # marks pass while muted
    last, first = packets[before - 1], packets[before]
    assert first.marker
    assert first.sequence == (last.sequence + 1) & 0xFFFF
    # the timestamp skipped over the pause, in whole frames, counted from the end of the
    # audio sent before it to the send time of the first frame after it
    gap = round((wire.sent[before][0] - before * F) / F)
    assert gap > 0
    assert (first.timestamp - last.timestamp) & 0xFFFFFFFF == N * (1 + gap)
    _steady(packets[:before])
    _steady(packets[before:])
    assert core.unsent_frames == 0


def test_frames_before_a_remote_address_are_encoded_but_not_sent() -> None:
    core = RtpEndpointCore(RtpSession("pcmu", first_sequence=100))
    wire = Wire(core)
    core.push(_frames(3))
    wire.run_until(1.0)
    assert wire.sent == []
    assert core.unsent_frames == wire.nones == 3
    assert core.session.stats().packets_sent == 3
    core.receive(_packet(RtpSession("pcmu")), PEER, 1.0)  # the peer shows up
    core.push(_frames(2))
    wire.run_until(2.0)
    assert core.unsent_frames == 3
    assert [p.sequence for _, p in wire.sent] == [103, 104]
    assert wire.sent[0][1].marker  # a new talkspurt after the silence


def test_marks_of_the_driver_s_own_prefix_are_refused() -> None:
    core = RtpEndpointCore(RtpSession("pcmu"))
    with pytest.raises(ValueError, match="endpoint's own"):
        core.mark(f"{DRAIN_MARK_PREFIX}0")
    assert core.drain_mark().startswith(DRAIN_MARK_PREFIX)
    assert core.drain_mark() != core.drain_mark()
    assert core.send(MarkDue("x"), 0.0) is None


# --- the call on the stream -----------------------------------------------------------


def test_the_call_waits_for_its_stream_then_starts_then_plays() -> None:
    step = functools.partial(rtp_frame_step, idle_since=0.0, idle_timeout=15.0)
    assert step(1.0, started=False, last_received=None) == "wait"
    assert step(1.0, started=False, last_received=0.9) == "start"
    assert step(1.0, started=True, last_received=0.9) == "audio"


def test_the_call_is_idle_only_past_the_timeout() -> None:
    step = functools.partial(rtp_frame_step, started=True, last_received=10.0, idle_timeout=2.0)
    assert step(12.0, idle_since=10.0) == "audio"  # exactly the timeout: not yet
    assert step(12.01, idle_since=10.0) == "idle"
    # before any packet the timeout counts from when the call was made
    never = functools.partial(rtp_frame_step, started=False, last_received=None, idle_timeout=2.0)
    assert never(1.9, idle_since=0.0) == "wait"
    assert never(2.1, idle_since=0.0) == "idle"


def test_the_call_started_names_the_stream_by_address_and_ssrc() -> None:
    started = rtp_call_started(RtpSession("pcma"), PEER, 0xBEEF)
    assert started.stream_id == started.call_id == "192.0.2.10:4000/0000beef"
    assert (started.media_format.encoding, started.media_format.sample_rate) == ("alaw", 8000)
    assert started.metadata == {
        "remote_addr": "192.0.2.10:4000",
        "ssrc": 0xBEEF,
        "codec": "pcma",
        "payload_type": 8,
        "clock_rate": 8000,
    }
    opus = rtp_call_started(RtpSession("opus", payload_type=111), None, None)
    assert opus.stream_id == ":0/00000000"
    assert (opus.media_format.encoding, opus.metadata["codec"]) == ("l16", "opus")
    assert opus.media_format.sample_rate == RtpSession("opus", payload_type=111).sample_rate
