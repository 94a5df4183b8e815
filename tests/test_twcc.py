"""Transport-wide congestion control: the header extension on sent packets, the RTCP
transport feedback parser and builder, and the loss read from the feedback."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.errors import RemoteProtocolError, TransportFeedbackError
from voxwire.rtp import RtpExtension, RtpPacket, parse_rtp
from voxwire.twcc import (
    LARGE_DELTA,
    NOT_RECEIVED,
    SMALL_DELTA,
    TransportCcSender,
    TransportFeedback,
    build_transport_feedback,
    parse_transport_feedback,
    split_rtcp,
)


def one_byte_elements(data: bytes) -> dict[int, bytes]:
    """The RFC 8285 one-byte elements of an extension block's data."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if data[i] == 0:  # padding
            i += 1
            continue
        ident, length = data[i] >> 4, (data[i] & 0x0F) + 1
        assert ident != 15
        out[ident] = data[i + 1 : i + 1 + length]
        i += 1 + length
    return out


def feedback(statuses: list[int], deltas: list[int] | None = None, **kw: int) -> bytes:
    if deltas is None:
        deltas = [4 if s == SMALL_DELTA else -4 for s in statuses if s != NOT_RECEIVED]
    fields = {"base_sequence": 0, "reference_time": 0, "feedback_count": 0} | kw
    return build_transport_feedback(0x11, 0x22, statuses=statuses, deltas=deltas, **fields)


# --- the header extension --------------------------------------------------------------


def test_every_packet_gets_the_next_number_in_a_one_byte_extension() -> None:
    twcc = TransportCcSender(3, first_sequence=65534)
    for i, expected in enumerate((65534, 65535, 0, 1)):
        wire = RtpPacket(111, 100 + i, 960 * i, 0xABC, b"opus" * 10, marker=i == 0).to_bytes()
        stamped = twcc.stamp(wire)
        assert len(stamped) == len(wire) + 8  # 4 bytes of block header, one word of data
        packet = parse_rtp(stamped)
        assert packet.extension is not None
        assert packet.extension.profile == 0xBEDE
        assert one_byte_elements(packet.extension.data) == {3: expected.to_bytes(2, "big")}
        # everything else is as it was
        assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
            111,
            100 + i,
            960 * i,
            0xABC,
        )
        assert packet.payload == b"opus" * 10
        assert packet.marker == (i == 0)
    assert twcc.sent == 4
    assert twcc.next_sequence == 2


def test_the_element_is_appended_to_a_one_byte_extension_and_csrcs_are_kept() -> None:
    twcc = TransportCcSender(5, first_sequence=0x1234)
    audio_level = RtpExtension(0xBEDE, bytes([0x10, 0x07, 0, 0]))  # ID 1, one byte, padding
    wire = RtpPacket(111, 1, 2, 3, b"x", csrcs=(9, 10), extension=audio_level, padding=4)
    packet = parse_rtp(twcc.stamp(wire.to_bytes()))
    assert packet.csrcs == (9, 10)
    assert packet.payload == b"x"
    assert packet.padding == 4
    assert packet.extension is not None
    assert one_byte_elements(packet.extension.data) == {1: b"\x07", 5: b"\x12\x34"}


def test_a_packet_with_csrcs_gets_the_extension_after_them() -> None:
    twcc = TransportCcSender(14, first_sequence=9)
    wire = RtpPacket(0, 5, 6, 7, b"pcmu", csrcs=(1, 2, 3), marker=True).to_bytes()
    packet = parse_rtp(twcc.stamp(wire))
    assert packet.csrcs == (1, 2, 3)
    assert (packet.sequence, packet.timestamp, packet.marker, packet.payload) == (
        5,
        6,
        True,
        b"pcmu",
    )
    assert packet.extension is not None
    assert one_byte_elements(packet.extension.data) == {14: b"\x00\x09"}


def test_what_is_not_a_numberable_rtp_packet_is_sent_unchanged() -> None:
    twcc = TransportCcSender(3, first_sequence=0)
    two_byte = RtpPacket(0, 1, 2, 3, b"pcm", extension=RtpExtension(0x1000, bytes(4)))
    # empty, short, version 0, the two-byte profile (RFC 8285 4.3), CSRCs past the end
    for data in (b"", b"\x80" * 11, b"\x00" * 12, two_byte.to_bytes(), b"\x8f" + bytes(20)):
        assert twcc.stamp(data) == data
    assert twcc.sent == 0
    assert twcc.next_sequence == 0


def test_the_extension_id_and_window_are_checked() -> None:
    for bad in (0, 15, -1):
        with pytest.raises(ValueError, match="1-14"):
            TransportCcSender(bad)
    with pytest.raises(ValueError, match="first_sequence"):
        TransportCcSender(1, first_sequence=65536)
    with pytest.raises(ValueError, match="window"):
        TransportCcSender(1, window=8)
    assert 0 <= TransportCcSender(1).next_sequence <= 0xFFFF


# --- the feedback parser ----------------------------------------------------------------


def test_a_feedback_packet_reads_field_by_field() -> None:
    # base 0xFFFE, 3 packets: received (small delta 8 = 2 ms), lost, received (large, -1 ms)
    # one two-bit status vector chunk 11 01 00 10 00.. then the deltas, then padding
    chunk = 0xC000 | (1 << 12) | (0 << 10) | (2 << 8)
    body = struct.pack("!HB", chunk, 8) + struct.pack("!h", -4)
    body += b"\x00\x00\x00"  # zero padding without the P bit: three bytes, allowed
    words = (20 + len(body)) // 4 - 1
    head = struct.pack("!BBHIIHHI", 0x8F, 205, words, 0xAABBCCDD, 0x01020304, 0xFFFE, 3,
                       (0xFFFFFF << 8) | 0x2A)  # fmt: skip
    fb = parse_transport_feedback(head + body)
    assert fb == TransportFeedback(
        sender_ssrc=0xAABBCCDD,
        media_ssrc=0x01020304,
        base_sequence=0xFFFE,
        reference_time=-1,  # 24 bits signed
        feedback_count=0x2A,
        statuses=bytes([SMALL_DELTA, NOT_RECEIVED, LARGE_DELTA]),
        deltas=(8, -4),
    )
    assert fb.packet_status_count == 3
    # arrivals in µs: -64 ms, +2 ms, then -1 ms; the sequence numbers wrap
    assert list(fb.arrivals()) == [(0xFFFE, -62000), (0, -63000)]


def test_run_length_and_one_bit_vector_chunks() -> None:
    # a run of 20 received (small), then a one-bit vector: 1 0 1 and 11 unused zero bits
    run = (SMALL_DELTA << 13) | 20
    vector = 0x8000 | (1 << 13) | (1 << 11)
    body = struct.pack("!HH", run, vector) + bytes(range(22))
    pad = -len(body) % 4
    body += bytes(pad - 1) + bytes([pad]) if pad else b""
    head = struct.pack("!BBHIIHHI", 0xAF if pad else 0x8F, 205, (20 + len(body)) // 4 - 1,
                       1, 2, 100, 23, 7 << 8)  # fmt: skip
    fb = parse_transport_feedback(head + body)
    assert fb.statuses == bytes([1] * 20 + [1, 0, 1])
    assert fb.deltas == tuple(range(22))
    assert fb.reference_time == 7


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x8f\xcd\x00\x04" + bytes(12), "too_short"),
        (b"\x4f\xcd\x00\x04" + bytes(16), "bad_version"),
        (b"\x8f\xcd\x00\x09" + bytes(16), "length_past_end"),
        (b"\x8f\xcd\x00\x04" + bytes(20), "trailing_data"),
        (b"\x81\xcd\x00\x04" + bytes(16), "not_transport_feedback"),
        (b"\x8f\xce\x00\x04" + bytes(16), "not_transport_feedback"),
        (b"\x8f\xcd\x00\x04" + bytes(16), "no_packets"),
        # a status count of 5 and no chunk
        (b"\x8f\xcd\x00\x04" + bytes(8) + b"\x00\x00\x00\x05" + bytes(4), "chunks_past_end"),
        # a run of the reserved symbol, and a two-bit vector holding it
        (
            b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\x60\x01\x00\x00",
            "reserved_symbol",
        ),
        (
            b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\xf0\x00\x00\x00",
            "reserved_symbol",
        ),
        # a run of 3 received: three deltas needed, two bytes there
        (
            b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x03" + bytes(4) + b"\x20\x03\x01\x02",
            "deltas_past_end",
        ),
        # one large delta needs two bytes: padding removed leaves one
        (
            b"\xaf\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\x40\x01\x05\x01",
            "deltas_past_end",
        ),
        (
            b"\xaf\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\x20\x01\x05\x09",
            "bad_padding",
        ),
        (
            b"\xaf\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\x20\x01\x05\x00",
            "bad_padding",
        ),
        # a lost packet, then four bytes that are not zero padding
        (
            b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01" + bytes(4) + b"\x00\x01\x00\x07",
            "trailing_data",
        ),
    ],
)
def test_malformed_feedback_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(TransportFeedbackError) as info:
        parse_transport_feedback(data)
    assert info.value.reason == reason
    assert isinstance(info.value, RemoteProtocolError)


def test_a_hostile_status_count_costs_no_more_than_its_bytes() -> None:
    # 65535 packets claimed: eight run-length chunks of 8191 lost cover them in 16 bytes;
    # a run of 8191 received needs 8191 delta bytes that are not there
    lost = struct.pack("!H", 0x1FFF) * 8 + struct.pack("!H", 7)
    head = struct.pack("!BBHIIHHI", 0x8F, 205, (20 + len(lost) + 2) // 4 - 1, 1, 2, 0, 65535, 0)
    fb = parse_transport_feedback(head + lost + b"\x00\x00")
    assert fb.statuses == bytes(65535)
    assert fb.deltas == ()
    received = struct.pack("!H", 0x3FFF)
    head = struct.pack("!BBHIIHHI", 0x8F, 205, 5, 1, 2, 0, 8191, 0)
    with pytest.raises(TransportFeedbackError, match="past the end"):
        parse_transport_feedback(head + received + b"\x01\x02")


def test_split_rtcp_takes_a_compound_apart_and_refuses_a_broken_one() -> None:
    rr = b"\x80\xc9\x00\x01" + b"\x00\x00\x00\x42"
    fb = feedback([SMALL_DELTA, NOT_RECEIVED, SMALL_DELTA, SMALL_DELTA])
    assert fb[0] & 0x20  # padded: a chunk and three deltas are not 32-bit aligned
    parts = split_rtcp(rr + fb)
    assert parts == [(201, 0, rr), (205, 15, fb)]
    assert parse_transport_feedback(parts[1][2]).statuses == b"\x01\x00\x01\x01"
    for data, reason in (
        (rr + b"\x80\xc9", "too_short"),
        (b"\x00\xc9\x00\x01" + bytes(4), "bad_version"),
        (rr + b"\x80\xc9\x00\x05" + bytes(4), "length_past_end"),
    ):
        with pytest.raises(TransportFeedbackError) as info:
            split_rtcp(data)
        assert info.value.reason == reason


symbols = st.lists(st.sampled_from([NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA]), min_size=1,
                   max_size=300)  # fmt: skip


@st.composite
def feedbacks(draw: st.DrawFn) -> TransportFeedback:
    statuses = draw(
        st.one_of(
            symbols,
            # long runs: run-length chunks, up to their 13-bit limit and past it
            st.builds(lambda s, n: [s] * n, st.sampled_from([0, 1, 2]), st.integers(1, 9000)),
        )
    )
    deltas = [
        draw(st.integers(0, 255) if s == SMALL_DELTA else st.integers(-32768, 32767))
        for s in statuses
        if s != NOT_RECEIVED
    ]
    return TransportFeedback(
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(-(2**23), 2**23 - 1)),
        draw(st.integers(0, 255)),
        bytes(statuses),
        tuple(deltas),
    )


@settings(max_examples=300, deadline=None)
@given(feedbacks())
def test_built_feedback_parses_back_to_the_same_fields(fb: TransportFeedback) -> None:
    wire = fb.to_bytes()
    assert len(wire) % 4 == 0
    assert split_rtcp(wire) == [(205, 15, wire)]
    assert parse_transport_feedback(wire) == fb


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 255))
def test_any_bytes_parse_or_raise_a_typed_error(tail: bytes, first: int) -> None:
    data = bytes([0x80 | (first & 0x3F), 205]) + ((len(tail) + 2) // 4).to_bytes(2, "big")
    for candidate in (data + tail, tail):
        try:
            fb = parse_transport_feedback(candidate)
        except TransportFeedbackError:
            continue
        assert len(fb.deltas) == sum(1 for s in fb.statuses if s != NOT_RECEIVED)
        assert set(fb.statuses) <= {0, 1, 2}


def test_the_builder_refuses_what_the_format_cannot_hold() -> None:
    for statuses, deltas, match in (
        ([], [], "1-65535"),
        ([3], [1], "symbol"),
        ([SMALL_DELTA], [], "deltas"),
        ([SMALL_DELTA], [256], "small delta"),
        ([LARGE_DELTA], [40000], "large delta"),
    ):
        with pytest.raises(ValueError, match=match):
            feedback(statuses, deltas)
    with pytest.raises(ValueError, match="reference_time"):
        feedback([0], reference_time=1 << 23)
    with pytest.raises(ValueError, match="base_sequence"):
        feedback([0], base_sequence=65536)


# --- the loss from the feedback --------------------------------------------------------


def sent(twcc: TransportCcSender, n: int) -> None:
    for i in range(n):
        twcc.stamp(RtpPacket(111, i & 0xFFFF, 0, 1, b"x").to_bytes())


def report(twcc: TransportCcSender, base: int, statuses: list[int]) -> tuple[int, int, int]:
    fb = parse_transport_feedback(feedback(statuses, base_sequence=base & 0xFFFF))
    got = twcc.feedback(fb)
    return got.reported, got.lost, got.unknown


def test_the_loss_of_an_interval_counts_each_number_once() -> None:
    twcc = TransportCcSender(1, first_sequence=65530)
    sent(twcc, 20)  # 65530 .. 65535, 0 .. 13
    # 65530 .. 3 reported, 65532 and 1 not received: 20% (across the wrap)
    s = [1, 1, 0, 1, 1, 1, 1, 0, 1, 1]
    first = twcc.feedback(parse_transport_feedback(feedback(s, base_sequence=65530)))
    assert (first.reported, first.lost, first.fraction_lost) == (10, 2, 0.2)
    again = twcc.feedback(parse_transport_feedback(feedback(s, base_sequence=65530)))
    assert (again.reported, again.lost, again.fraction_lost) == (0, 0, None)  # nothing new
    # 1 .. 7: 1 now received (-1), 4 lost (+1), 4 .. 7 new
    assert report(twcc, 1, [1, 1, 1, 0, 1, 1, 1]) == (4, 0, 0)
    assert (twcc.reported, twcc.lost) == (14, 2)  # 65532 and 4


def test_a_packet_reported_lost_then_received_counts_received() -> None:
    twcc = TransportCcSender(1, first_sequence=100)
    sent(twcc, 10)
    first = twcc.feedback(parse_transport_feedback(feedback([1, 0, 0, 1], base_sequence=100)))
    assert (first.reported, first.lost, first.fraction_lost) == (4, 2, 0.5)
    # 101 arrived late; 104-107 new with one lost (105)
    later = twcc.feedback(
        parse_transport_feedback(feedback([1, 0, 1, 1, 0, 1, 1], base_sequence=101))
    )
    assert (later.reported, later.lost) == (4, 0)  # +1 (105) -1 (101)
    assert later.fraction_lost == 0.0
    assert (twcc.reported, twcc.lost) == (8, 2)  # 102 and 105
    # a packet received is never lost again
    again = twcc.feedback(parse_transport_feedback(feedback([0, 0, 0], base_sequence=100)))
    assert (again.reported, again.lost) == (0, 0)
    # 102 turns up
    assert report(twcc, 102, [1]) == (0, -1, 0)
    assert twcc.lost == 1


def test_numbers_not_sent_or_too_old_are_unknown_and_bounded() -> None:
    twcc = TransportCcSender(1, first_sequence=0, window=64)
    assert report(twcc, 0, [1, 1]) == (0, 0, 2)  # nothing sent yet
    sent(twcc, 100)  # 0..99; the window keeps 36..99
    assert report(twcc, 98, [1, 1, 1, 1]) == (2, 0, 2)  # 100, 101 not sent
    assert report(twcc, 30, [0] * 10) == (4, 4, 6)  # 30..35 out of the window
    assert report(twcc, 5000, [0] * 100) == (0, 0, 100)  # none of these was sent
    # 65535 statuses from 40: 40 .. 99 are walked (98 and 99 stay received), the rest not
    assert report(twcc, 40, [0] * 65535) == (58, 58, 65535 - 60)
    assert (twcc.reported, twcc.lost) == (2 + 4 + 58, 4 + 58)


def test_the_sequence_wraps_and_the_window_follows() -> None:
    twcc = TransportCcSender(1, first_sequence=65000, window=1024)
    sent(twcc, 3000)  # wraps at 65536; the last is (65000 + 2999) & 0xFFFF = 2463
    assert twcc.next_sequence == 2464
    assert report(twcc, 2400, [1] * 64) == (64, 0, 0)
    assert report(twcc, 65500, [0] * 10) == (0, 0, 10)  # long gone
    assert report(twcc, 2000, [0, 1]) == (2, 1, 0)
