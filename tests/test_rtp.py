"""RTP: parse/build round trips, strict validation, and stream tracking invariants."""

from __future__ import annotations

import pickle
import random
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.errors import RemoteProtocolError, RtpError
from voxwire.rtp import (
    RED_MAX_BLOCKS,
    AudioLevel,
    RedBlock,
    ReportBlock,
    RtpExtension,
    RtpPacket,
    RtpSource,
    audio_level,
    build_receiver_report,
    build_red,
    extension_element,
    parse_red,
    parse_rtp,
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        st.integers(0, 0xFFFF),
        st.integers(0, 20).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_build_then_parse_round_trips(packet: RtpPacket) -> None:
    wire = packet.to_bytes()
    assert parse_rtp(wire) == packet
    assert parse_rtp(bytearray(wire)) == packet
    assert parse_rtp(memoryview(wire)) == packet


def test_wire_format_of_a_known_packet() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=320,
        ssrc=0xDEADBEEF,
        payload=b"\x01\x02",
        marker=True,
    )
    assert packet.to_bytes() == bytes.fromhex("80 80 1234 00000140 deadbeef 0102")
    padded = RtpPacket(8, 1, 2, 3, b"\xff", padding=3).to_bytes()
    assert padded == bytes.fromhex("a0 08 0001 00000002 00000003 ff 0000 03")


@pytest.mark.parametrize(
    ("hexdata", "reason"),
    [
        ("", "too_short"),
        ("80 00 0000 00000000 000000", "too_short"),
        ("40 00 0000 00000000 00000000", "bad_version"),
        ("8f 00 0000 00000000 00000000 01020304", "csrc_past_end"),
        ("90 00 0000 00000000 00000000 bede", "extension_past_end"),
        ("90 00 0000 00000000 00000000 bede ffff 01020304", "extension_past_end"),
        ("a0 00 0000 00000000 00000000 09 00", "bad_padding"),
        ("a0 00 0000 00000000 00000000 09 03", "bad_padding"),
    ],
)
def test_malformed_packets_raise_rtp_error_with_reason(hexdata: str, reason: str) -> None:
    data = bytes.fromhex(hexdata)
    with pytest.raises(RtpError, match=f"{reason}, {len(data)} bytes") as exc:
        parse_rtp(data)
    assert exc.value.reason == reason
    assert isinstance(exc.value, RemoteProtocolError)
    assert isinstance(exc.value, ValueError)
    again = pickle.loads(pickle.dumps(exc.value))
    assert again.reason == reason


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    reasons = {"too_short", "bad_version", "csrc_past_end", "extension_past_end", "bad_padding"}
    try:
        packet = parse_rtp(data)
    except RtpError as e:
        reason = e.reason
    else:
        reason = "ok"
    assert reason in reasons | {"ok"}
    if reason != "ok":
        return
    assert packet.to_bytes()[:12] == data[:12]
    assert len(packet.to_bytes()) == len(data)


def test_red_wire_format_of_a_known_payload() -> None:
    # RFC 2198 section 3: F=1, PT 0, offset 160, length 3; then F=0, PT 0; blocks in order.
    red = build_red(RedBlock(0, 0, b"\x01\x02"), [RedBlock(0, 160, b"\x09\x08\x07")])
    assert red == bytes.fromhex("80 02 80 03 00 090807 0102")
    parsed = parse_red(red)
    assert parsed.primary == RedBlock(0, 0, b"\x01\x02")
    assert parsed.redundant == (RedBlock(0, 160, b"\x09\x08\x07"),)


@pytest.mark.parametrize(
    ("hexdata", "reason"),
    [
        ("", "red_empty"),
        ("80 02 80", "red_header_past_end"),
        ("80 02 80 00", "red_header_past_end"),  # no final one-byte header
        ("80 02 80 04 00 010203", "red_block_past_end"),
        ("80 00 03 ff 00", "red_block_past_end"),
        ("80 00 04 00" * (RED_MAX_BLOCKS + 1) + "00", "red_too_many_blocks"),
    ],
)
def test_malformed_red_payloads_raise_rtp_error_with_reason(hexdata: str, reason: str) -> None:
    data = bytes.fromhex(hexdata)
    with pytest.raises(RtpError, match=f"{reason}, {len(data)} bytes") as exc:
        parse_red(data)
    assert exc.value.reason == reason


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_as_red_or_raise_and_rebuild_exactly(data: bytes) -> None:
    try:
        red = parse_red(data)
    except RtpError as e:
        reason = e.reason
    else:
        reason = "ok"
    assert reason == "ok" or reason.startswith("red_")
    if reason != "ok":
        return
    assert len(red.redundant) <= RED_MAX_BLOCKS
    assert build_red(red.primary, red.redundant) == data


@given(
    st.lists(
        st.tuples(st.integers(0, 127), st.integers(0, 16383), st.binary(max_size=40)),
        max_size=RED_MAX_BLOCKS,
    ),
    st.integers(0, 127),
    st.binary(max_size=200),
)
def test_red_round_trips(blocks: list[tuple[int, int, bytes]], pt: int, primary: bytes) -> None:
    redundant = [RedBlock(*b) for b in blocks]
    parsed = parse_red(build_red(RedBlock(pt, 0, primary), redundant))
    assert parsed.primary == RedBlock(pt, 0, primary)
    assert list(parsed.redundant) == redundant


def test_red_build_rejects_what_the_header_cannot_hold() -> None:
    p = RedBlock(0, 0, b"")
    with pytest.raises(ValueError, match=re.escape("timestamp_offset must be 0..16383")):
        build_red(p, [RedBlock(0, 16384, b"")])
    with pytest.raises(ValueError, match=re.escape("redundant block size must be 0..1023")):
        build_red(p, [RedBlock(0, 160, bytes(1024))])
    with pytest.raises(ValueError, match=re.escape("payload_type must be 0..127")):
        build_red(RedBlock(128, 0, b""))
    with pytest.raises(ValueError, match="at most 8 redundant blocks"):
        build_red(p, [RedBlock(0, 160, b"")] * 9)
    assert len(build_red(p, [RedBlock(0, 16383, bytes(1023))])) == 4 + 1 + 1023


def test_build_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match=re.escape("payload_type must be 0..127, got 128")):
        RtpPacket(128, 0, 0, 0, b"").to_bytes()
    with pytest.raises(ValueError, match=re.escape("sequence must be 0..65535, got 65536")):
        RtpPacket(0, 65536, 0, 0, b"").to_bytes()
    with pytest.raises(ValueError, match="at most 15 CSRCs, got 16"):
        RtpPacket(0, 0, 0, 0, b"", csrcs=tuple(range(16))).to_bytes()
    with pytest.raises(ValueError, match="multiple of 4"):
        RtpPacket(0, 0, 0, 0, b"", extension=RtpExtension(1, b"abc")).to_bytes()
    with pytest.raises(ValueError, match=re.escape("padding must be 0..255")):
        RtpPacket(0, 0, 0, 0, b"", padding=256).to_bytes()
    with pytest.raises(TypeError):
        parse_rtp("not bytes")  # type: ignore[arg-type]


def stream(first_seq: int, first_ts: int, n: int, ssrc: int = 99) -> list[RtpPacket]:
    return [
        RtpPacket(
            0,
            (first_seq + i) & 0xFFFF,
            (first_ts + 160 * i) & 0xFFFFFFFF,
            ssrc,
            struct.pack("!I", i),
        )
        for i in range(n)
    ]


def test_in_order_stream_across_both_wraparounds() -> None:
    src = RtpSource(8000)
    for i, p in enumerate(stream(65500, 0xFFFFF000, 200)):
        arrival = src.receive(p, 10.0 + 0.020 * i)
        assert arrival.verdict == "accepted"
        assert arrival.usable
        assert arrival.extended_sequence == 65500 + i
        assert arrival.extended_timestamp == 0xFFFFF000 + 160 * i
    stats = src.stats()
    assert (stats.received, stats.expected, stats.lost) == (200, 200, 0)
    assert stats.jitter == 0.0
    assert src.highest_sequence == 65699


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_loss_reordering_duplication_invariants(first_seq: int, first_ts: int, seed: int) -> None:
    rng = random.Random(seed)
    sent = stream(first_seq, first_ts, 300)
    kept = [p for p in sent[1:] if rng.random() > 0.1]  # the first packet always arrives
    dups = [p for p in kept if rng.random() < 0.05]
    # Each packet (and each copy) arrives up to 8 packet times late: bounded reordering.
    timed = [(i + rng.uniform(0, 8), p) for i, p in enumerate(kept, start=1)]
    by_seq = {p.sequence: i for i, p in enumerate(sent)}
    timed += [(by_seq[p.sequence] + rng.uniform(0, 8), p) for p in dups]
    arrivals = [p for _, p in sorted(timed, key=lambda tp: tp[0])]
    src = RtpSource(8000)
    ext_of = {}
    for k, p in enumerate([sent[0], *arrivals]):
        a = src.receive(p, 0.02 * k)
        assert a.verdict in ("accepted", "reordered", "duplicate")
        if a.usable:
            assert p.sequence not in ext_of, "the same packet was used twice"
            ext_of[p.sequence] = a.extended_sequence
            index = struct.unpack("!I", p.payload)[0]
            assert a.extended_sequence == first_seq + index
            assert a.extended_timestamp == first_ts + 160 * index
    stats = src.stats()
    unique = {p.sequence for p in [sent[0], *kept]}
    assert stats.received == len(unique) == len(ext_of)
    assert stats.duplicates == len(dups)
    highest = max(struct.unpack("!I", p.payload)[0] for p in [sent[0], *kept])
    assert stats.expected == highest + 1
    assert stats.lost == stats.expected - stats.received


def test_restart_and_ssrc_switch_keep_extended_numbers_monotonic() -> None:
    src = RtpSource(8000)
    for i, p in enumerate(stream(10, 0, 5)):
        src.receive(p, 0.02 * i)
    jump = stream(30000, 5000, 3)
    assert src.receive(jump[0], 0.2).verdict == "bad_jump"
    second = src.receive(jump[1], 0.22)
    assert second.restarted
    assert second.extended_sequence == 15
    other = stream(7, 0, 3, ssrc=1234)
    assert src.receive(other[0], 0.24).verdict == "foreign_ssrc"
    switched = src.receive(other[1], 0.26)
    assert switched.verdict == "accepted"
    assert switched.restarted
    assert switched.extended_sequence == 16
    assert src.ssrc == 1234
    stats = src.stats()
    assert (stats.restarts, stats.bad_jumps, stats.foreign_ssrc) == (2, 1, 1)


def test_probation_jitter_interval_and_reset() -> None:
    src = RtpSource(8000, min_sequential=2)
    s = stream(0, 0, 10)
    assert src.receive(s[0], 0.0).verdict == "probation"
    assert not src.valid
    assert src.receive(s[1], 0.02).verdict == "accepted"
    for i in range(2, 10):
        if i != 5:
            src.receive(s[i], 0.02 * i + (0.010 if i % 2 else 0.0))
    report = src.interval_report()
    assert report.fraction_lost == (1 << 8) // 9
    assert report.jitter > 0
    assert report.jitter_seconds == pytest.approx(report.jitter / 8000)
    src.reset()
    assert not src.valid
    assert src.stats().received == 0


def test_receiver_report_wire_format_and_its_block_from_a_stream() -> None:
    src = RtpSource(8000)
    s = stream(65530, 0, 20)  # the sequence numbers wrap
    for i, packet in enumerate(s):
        if i not in (4, 5):  # two of twenty lost
            src.receive(packet, 0.02 * i)
    block = src.report_block()
    assert block is not None
    assert block.fraction_lost == (2 << 8) // 20
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 65536 + 13  # one wrap, then 0..13
    assert block.ssrc == s[0].ssrc
    wire = build_receiver_report(0xCAFE, [block])
    assert wire[:8] == bytes([0x81, 201, 0, 7]) + (0xCAFE).to_bytes(4, "big")
    ssrc, frac, lost, high, jitter, lsr, dlsr = struct.unpack("!IB3sIIII", wire[8:])
    assert (ssrc, frac, int.from_bytes(lost, "big"), high) == (
        block.ssrc,
        block.fraction_lost,
        2,
        65549,
    )
    assert (jitter, lsr, dlsr) == (block.jitter, 0, 0)
    # the next interval has no loss; the cumulative count stays
    for i in range(20, 30):
        src.receive(stream(65530, 0, 30)[i], 0.02 * i)
    later = src.report_block()
    assert later is not None
    assert (later.fraction_lost, later.cumulative_lost) == (0, 2)
    assert RtpSource(8000).report_block() is None  # nothing received yet


def test_receiver_report_clamps_and_refuses_what_it_cannot_hold() -> None:
    wild = ReportBlock(
        ssrc=1, fraction_lost=999, cumulative_lost=-(1 << 30), highest_sequence=5, jitter=-4
    )
    wire = build_receiver_report(2, [wild])
    assert wire[12] == 255  # fraction lost at most 255/256
    assert wire[13:16] == b"\x80\x00\x00"  # the most negative 24-bit count
    assert wire[20:24] == bytes(4)  # no negative jitter
    assert len(build_receiver_report(2, [])) == 8
    with pytest.raises(ValueError, match="at most 31"):
        build_receiver_report(2, [wild] * 32)
    with pytest.raises(ValueError, match="sender_ssrc"):
        build_receiver_report(1 << 32, [wild])
    with pytest.raises(ValueError, match="highest_sequence"):
        build_receiver_report(2, [ReportBlock(1, 0, 0, -1, 0)])


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="clock_rate must be >= 1, got 0"):
        RtpSource(0)
    with pytest.raises(ValueError, match=re.escape("max_misorder must be 0..1023, got 1024")):
        RtpSource(8000, max_misorder=1024)
    with pytest.raises(ValueError, match="min_sequential must be >= 1"):
        RtpSource(8000, min_sequential=0)


def test_sender_numbers_stamps_and_marks() -> None:
    from voxwire.rtp import RtpSender

    tx = RtpSender(0, ssrc=5, first_sequence=65534, first_timestamp=0xFFFFFF00)
    first = parse_rtp(tx.packet(b"a" * 160, 160))
    second = parse_rtp(tx.packet(b"b" * 160, 160))
    third = parse_rtp(tx.packet(b"c" * 160, 160))
    assert [p.sequence for p in (first, second, third)] == [65534, 65535, 0]
    assert [p.timestamp for p in (first, second, third)] == [0xFFFFFF00, 0xFFFFFFA0, 0x40]
    assert [p.marker for p in (first, second, third)] == [True, False, False]
    assert {p.ssrc for p in (first, second, third)} == {5}
    tx.skip(800)  # 100 ms of silence not sent
    resumed = parse_rtp(tx.packet(b"d" * 160, 160))
    assert (resumed.sequence, resumed.timestamp, resumed.marker) == (1, 0x40 + 160 + 800, True)
    assert not parse_rtp(tx.packet(b"e", 160)).marker
    tx.skip(0)
    assert not parse_rtp(tx.packet(b"f", 160)).marker


def test_sender_stream_is_accepted_in_order_by_a_source() -> None:
    from voxwire.rtp import RtpSender

    tx = RtpSender(8)
    assert tx.sequence < 65536
    assert tx.timestamp < 2**32
    rx = RtpSource(8000)
    for i in range(70000):  # past a sequence wrap whatever the random start
        arrival = rx.receive(parse_rtp(tx.packet(b"", 160)), 0.02 * i)
        assert arrival.verdict == "accepted"
    assert rx.stats().lost == 0
    assert len({RtpSender(0).ssrc for _ in range(8)}) > 1  # random starts (RFC 3550 5.1)


def test_sender_arguments() -> None:
    from voxwire.rtp import RtpSender

    with pytest.raises(ValueError, match=re.escape("payload_type must be 0..127, got 200")):
        RtpSender(200)
    with pytest.raises(ValueError, match=re.escape("first_sequence must be 0..65535, got 65536")):
        RtpSender(0, first_sequence=65536)
    with pytest.raises(ValueError, match="samples must be >= 0"):
        RtpSender(0).packet(b"", -1)
    with pytest.raises(ValueError, match="samples must be >= 0"):
        RtpSender(0).skip(-5)


# The extension Chrome puts on an audio packet: a transport-wide sequence number (ID 3, two
# bytes), the audio level (ID 1, one byte: V set, 44 -dBov), then padding to a word.
CHROME = RtpExtension(0xBEDE, bytes.fromhex("3100651 0ac000000".replace(" ", "")))


def test_extension_elements_of_the_one_byte_form() -> None:
    assert extension_element(CHROME, 3) == bytes.fromhex("0065")
    assert extension_element(CHROME, 1) == bytes.fromhex("ac")
    assert extension_element(CHROME, 2) is None
    assert audio_level(CHROME, 1) == AudioLevel(level=-44, voice=True)
    assert audio_level(CHROME, 2) is None
    assert audio_level(None, 1) is None
    # padding bytes before an element are skipped; ID 15 ends the reading
    padded = RtpExtension(0xBEDE, bytes.fromhex("0000107f"))
    assert audio_level(padded, 1) == AudioLevel(level=-127, voice=False)
    stopped = RtpExtension(0xBEDE, bytes.fromhex("f0107f00"))
    assert audio_level(stopped, 1) is None
    # another profile (not RFC 8285) holds no elements
    assert extension_element(RtpExtension(0x1234, bytes.fromhex("10ac0000")), 1) is None


def test_extension_elements_of_the_two_byte_form() -> None:
    ext = RtpExtension(0x1000, bytes.fromhex("00 05 02 aabb 01 01 9e 00".replace(" ", "")))
    assert extension_element(ext, 5) == bytes.fromhex("aabb")
    assert audio_level(ext, 1) == AudioLevel(level=-30, voice=True)
    # the two-byte form allows an empty element, which is no audio level
    empty = RtpExtension(0x1003, bytes.fromhex("01000000"))
    with pytest.raises(RtpError) as exc:
        audio_level(empty, 1)
    assert exc.value.reason == "bad_audio_level"


@pytest.mark.parametrize(
    ("profile", "hexdata"),
    [
        (0xBEDE, "13aa0000"),  # ID 1 with four bytes, three left
        (0xBEDE, "2f000000"),  # ID 2 with sixteen bytes, before the one asked for
        (0x1000, "0205aabb"),  # five bytes claimed, two left
        (0x1000, "000000" + "02"),  # an ID with no length byte
    ],
)
def test_extension_elements_past_the_end_raise(profile: int, hexdata: str) -> None:
    with pytest.raises(RtpError) as exc:
        audio_level(RtpExtension(profile, bytes.fromhex(hexdata)), 1)
    assert exc.value.reason == "extension_element_past_end"


@settings(max_examples=500)
@given(
    st.sampled_from([0xBEDE, 0x1000, 0x100F, 0x1234]), st.binary(max_size=40), st.integers(1, 255)
)
def test_arbitrary_extensions_give_an_element_or_raise_rtp_error(
    profile: int, data: bytes, ident: int
) -> None:
    ext = RtpExtension(profile, data)
    try:
        element = extension_element(ext, ident)
    except RtpError as e:
        reason, element = e.reason, None
    else:
        reason = "ok"
    assert reason in ("ok", "extension_element_past_end")
    if element is not None:
        assert element in data
        assert len(element) <= (16 if profile == 0xBEDE else 255)
