"""Keys sent as RFC 4733 events: the payloads, and their packets in the RTP session's
stream; the receiver of voxwire.protocols.telephone_event is the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voxwire.protocols.events import Dtmf
from voxwire.protocols.rtp_session import RtpSession
from voxwire.protocols.telephone_event import TelephoneEvents, event_payloads
from voxwire.rtp import parse_rtp


def test_one_key_is_progress_packets_then_three_end_packets() -> None:
    payloads = event_payloads("#", 960, 160)
    assert len(payloads) == 5 + 3
    assert {p[0] for p in payloads} == {11}  # '#' (RFC 4733 section 3.2)
    assert [int.from_bytes(p[2:4], "big") for p in payloads] == [
        160,
        320,
        480,
        640,
        800,
        960,
        960,
        960,
    ]
    assert [bool(p[1] & 0x80) for p in payloads] == [False] * 5 + [True] * 3
    assert all(p[1] & 0x3F == 10 for p in payloads)  # volume -10 dBm0
    receiver = TelephoneEvents(8000)
    heard = [d for p in payloads for d in receiver.receive(p, 1234)]
    assert heard == [Dtmf("#", 120)]


def test_bad_keys_and_durations_are_refused() -> None:
    for digit, duration, step in (
        ("x", 800, 160),
        ("12", 800, 160),
        ("1", 70000, 160),
        ("1", 100, 160),
        ("1", 800, 0),
    ):
        with pytest.raises(ValueError, match="event_payloads"):
            event_payloads(digit, duration, step)


def test_event_packets_share_the_streams_ssrc_and_sequence_and_the_audio_goes_on() -> None:
    session = RtpSession("pcmu", payload_type=0)
    audio = parse_rtp(session.send(np.zeros(160, np.int16)))
    start = session.next_timestamp
    packets = [
        parse_rtp(session.send_event(p, 101, start, marker=i == 0))
        for i, p in enumerate(event_payloads("7", 800, 160))
    ]
    session.pause(5)
    after = parse_rtp(session.send(np.zeros(160, np.int16)))
    sequences = [audio.sequence, *(p.sequence for p in packets), after.sequence]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequences))
    assert {p.ssrc for p in (audio, *packets, after)} == {session.ssrc}
    assert {p.timestamp for p in packets} == {start}
    assert {p.payload_type for p in packets} == {101}
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert after.marker  # a new talkspurt
    assert (after.timestamp - start) % 2**32 >= 800
    assert session.stats().packets_sent == 2 + len(packets)
    with pytest.raises(ValueError, match="send_event"):
        session.send_event(b"\x00\x00\x00\xa0", 200, 0, marker=False)


def _key_press_stream(count: bool) -> RtpSession:
    """A receiving session given 1 s of audio, a key press in the middle (its event
    packets every 20 ms, the audio paused meanwhile, as a phone sends it), on time: the
    event packets go to ``count_event`` when ``count``, else nowhere."""
    sender = RtpSession("pcmu", payload_type=0)
    receiver = RtpSession("pcmu", payload_type=0)
    now = 0.0
    for _ in range(20):
        receiver.receive(sender.send(np.zeros(160, np.int16)), now)
        now += 0.02
    start = sender.next_timestamp
    payloads = event_payloads("5", 800, 160)  # 100 ms: 4 progress packets, then 3 ends
    for i, p in enumerate(payloads):
        packet = sender.send_event(p, 101, start, marker=i == 0)
        if count:
            receiver.count_event(parse_rtp(packet), now)
        now += 0.02
    sender.pause(len(payloads))
    for _ in range(20):
        receiver.receive(sender.send(np.zeros(160, np.int16)), now)
        now += 0.02
    return receiver


def test_event_packets_counted_beside_the_audio_are_not_loss_nor_jitter() -> None:
    stats = _key_press_stream(count=True).stats()
    assert stats.telephone_events == 7
    assert stats.rtp is not None
    assert stats.rtp.received == stats.rtp.expected == 47
    assert stats.rtp.lost == 0
    # every packet on time: the events' fixed timestamp does not read as jitter
    assert stats.rtp.jitter < 1.0
    block = _key_press_stream(count=True).report_block()
    assert block is not None
    assert (block.fraction_lost, block.cumulative_lost) == (0, 0)
    # left out, their sequence numbers are the stream's loss
    missed = _key_press_stream(count=False).stats()
    assert missed.rtp is not None
    assert (missed.rtp.lost, missed.telephone_events) == (7, 0)
