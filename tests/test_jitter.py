"""Jitter buffer: labels, FEC, statistics, and invariants on arbitrary insert/pull sequences."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire import JitterBuffer as TopLevel
from voxwire.g711 import encode_ulaw
from voxwire.jitter import JitterBuffer, PlayoutUnit
from voxwire.rtp import RtpPacket

FRAME = 0.020


def payload(i: int) -> bytes:
    return struct.pack("<i", i)


def ident(unit: PlayoutUnit) -> int:
    value: int = struct.unpack("<i", unit.payload[:4])[0]
    return value


def test_exported_at_top_level() -> None:
    assert TopLevel is JitterBuffer


def test_in_order_stream_plays_every_frame_once() -> None:
    jb = JitterBuffer(8000)
    played: list[int] = []
    for i in range(500):
        seq, ts = (65500 + i) & 0xFFFF, (0xFFFFF000 + 160 * i) & 0xFFFFFFFF
        assert jb.insert(seq, ts, payload(i), 1.0 + i * FRAME + 0.003) == "stored"
        unit = jb.pull(1.0 + i * FRAME + 0.005)
        if unit.kind == "normal":
            played.append(ident(unit))
            assert unit.timestamp == (0xFFFFF000 + 160 * ident(unit)) & 0xFFFFFFFF
            assert unit.sequence == (65500 + ident(unit)) & 0xFFFF
    assert played == sorted(set(played))
    assert played[-1] >= 490
    stats = jb.stats()
    assert stats.packets_received == 500
    assert stats.packets_lost == 0
    assert stats.concealed_samples == 0
    assert jb.latency == jb.target_delay <= 0.010


def test_fec_unit_hands_out_the_next_packet() -> None:
    jb = JitterBuffer(48000)
    for i in range(6):
        if i != 2:
            jb.insert(i, 960 * i, payload(i), i * FRAME, has_fec=True)
    units = [jb.pull(0.06 + k * FRAME) for k in range(6)]
    fec = [u for u in units if u.kind == "fec"]
    assert len(fec) == 1
    assert fec[0].decode_fec
    assert fec[0].samples == 960  # Opus decode_fec frame_size for the missing 20 ms
    assert fec[0].timestamp == 2 * 960
    assert ident(fec[0]) == 3
    assert jb.stats().fec_frames_used == 1


def test_redundant_copy_and_rtp_packet_insert() -> None:
    jb = JitterBuffer(8000, fec_lookahead=False)
    jb.insert_packet(RtpPacket(0, 10, 1600, 5, payload(0)), 0.0)
    assert jb.insert_redundant(1760, payload(99), 0.001) == "stored"
    jb.insert_packet(RtpPacket(0, 12, 1920, 5, payload(2)), 0.040)
    kinds = [
        (u.kind, u.decode_fec, ident(u)) for u in (jb.pull(0.06 + k * FRAME) for k in range(3))
    ]
    assert kinds == [("normal", False, 0), ("fec", False, 99), ("normal", False, 2)]


def test_redundant_copies_with_fec_rebuild_two_lost_frames_from_one_packet() -> None:
    # RFC 2198 + in-band FEC: packet 3 carries a copy of frame 2, whose FEC rebuilds frame 1.
    jb = JitterBuffer(8000, min_delay=0.06)
    jb.insert(10, 0, payload(0), 0.0, has_fec=True)
    jb.insert(13, 480, payload(3), 0.060, has_fec=True)
    assert jb.insert_redundant(320, payload(2), 0.060, has_fec=True) == "stored"
    units = [jb.pull(k * FRAME) for k in range(3, 7)]
    got = [(u.kind, u.decode_fec, ident(u)) for u in units]
    assert got == [
        ("normal", False, 0),
        ("fec", True, 2),  # frame 1 from the copy's in-band FEC
        ("fec", False, 2),  # frame 2: the copy itself
        ("normal", False, 3),
    ]
    assert jb.stats().fec_frames_used == 2


def test_duplicate_late_too_large_and_bad_config() -> None:
    jb = JitterBuffer(8000, max_payload=8, initial_delay=0.02)
    assert jb.insert(1, 0, payload(0), 0.0) == "stored"
    assert jb.insert(1, 0, payload(0), 0.001) == "duplicate"
    assert jb.insert(3, 320, payload(2), 0.040) == "stored"
    assert jb.pull(0.020).kind == "normal"
    assert jb.pull(0.045).kind == "concealed"
    assert jb.insert(2, 160, payload(1), 0.050) == "late"
    assert jb.insert(4, 480, bytes(9), 0.060) == "too_large"
    stats = jb.stats()
    assert (stats.packets_duplicated, stats.packets_late, stats.packets_rejected) == (1, 1, 1)
    with pytest.raises(ValueError, match="frame_ms must be 10 or 20"):
        JitterBuffer(frame_ms=30)
    with pytest.raises(ValueError, match="max_delay_ms"):
        JitterBuffer(capacity=8, max_delay=1.0)
    jb.reset()
    assert jb.size == 0
    assert jb.stats().packets_received == 0


# An arbitrary run: a start near both wraparounds, and steps that insert a packet (with some
# disorder, duplication, FEC and hints) or pull.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("insert"),
            st.integers(-8, 8),  # index offset from the sender's position: reordering
            st.integers(0, 120),  # network delay, ms
            st.booleans(),  # has_fec
            st.booleans(),  # low_energy
        ),
        st.tuples(st.just("pull"), st.integers(0, 40)),  # pull after this many ms
        st.tuples(st.just("redundant"), st.integers(-4, 4), st.booleans()),  # has_fec
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(
    seq0=st.sampled_from([0, 65500, 65535]) | st.integers(0, 0xFFFF),
    ts0=st.sampled_from([0, 0xFFFFF000, 0xFFFFFFFF - 159]) | st.integers(0, 0xFFFFFFFF),
    capacity=st.integers(4, 40),
    steps=steps,
)
def test_invariants_on_arbitrary_insert_pull_sequences(
    seq0: int, ts0: int, capacity: int, steps: list[tuple[object, ...]]
) -> None:
    max_delay = 0.020 * (capacity - 1)
    jb = JitterBuffer(8000, capacity=capacity, max_delay=max_delay, initial_delay=0.04)
    now_ms = 0
    sender = 0  # index of the next packet the sender emits
    sent_at: dict[int, int] = {}
    last_played = None
    played: set[int] = set()
    for step in steps:
        if step[0] == "insert":
            _, offset, delay, fec, quiet = step
            assert isinstance(offset, int)
            assert isinstance(delay, int)
            i = max(0, sender + offset)
            sender += 1
            sent_at.setdefault(i, now_ms)
            seq, ts = (seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF
            result = jb.insert(
                seq,
                ts,
                payload(i),
                (now_ms + delay) / 1000,
                has_fec=bool(fec),
                low_energy=bool(quiet),
            )
            now_ms += delay  # the packet arrives: time moves on to it
            assert result in ("stored", "duplicate", "late", "rejected")
        elif step[0] == "redundant":
            i = max(0, sender - 1 + int(str(step[1])))
            jb.insert_redundant(
                (ts0 + 160 * i) & 0xFFFFFFFF, payload(i), now_ms / 1000, has_fec=bool(step[2])
            )
        else:
            now_ms += int(str(step[1]))
            unit = jb.pull(now_ms / 1000)
            assert unit.samples == 160
            if unit.kind in ("normal", "fec"):
                i = ident(unit)
                if unit.kind == "fec" and unit.decode_fec:
                    i -= 1  # the payload is the next packet's
                assert i not in played, "a frame was played twice"
                assert last_played is None or i > last_played, "out of order"
                played.add(i)
                last_played = i
                assert unit.timestamp == (ts0 + 160 * i) & 0xFFFFFFFF
                # Never held longer than the delay cap, one frame, and the network's spread.
                assert unit.delay <= max_delay + 0.020 + 0.120 + 0.001
        assert jb.size <= capacity
        assert 0 <= jb.target_delay <= max_delay + 1e-9
    stats = jb.stats()
    assert stats.jitter_buffer_emitted_count == 160 * len(played)


@pytest.mark.parametrize(("level", "expected"), [(64, True), (0, False)])
def test_g711_silence_is_marked_low_energy(level: int, expected: bool) -> None:
    jb = JitterBuffer(8000, g711_quiet_level=level, initial_delay=0.06)
    silence = encode_ulaw(bytes(320))  # 160 zero samples
    loud = encode_ulaw(b"\x00\x40" * 160)
    jb.insert(1, 0, silence, 0.0)
    jb.insert(2, 160, loud, 0.02)
    first, second = jb.pull(0.06), jb.pull(0.08)
    assert first.kind == second.kind == "normal"
    assert first.low_energy is expected
    assert second.low_energy is False


def test_min_and_max_delay_bound_the_target() -> None:
    low = JitterBuffer(8000, min_delay=0.1)
    high = JitterBuffer(8000, max_delay=0.2, capacity=16)
    for i in range(300):
        low.insert(i, 160 * i, payload(i), i * FRAME)  # a clean stream wants ~0 ms
        # every other packet 400 ms late: a stream that wants far more than 200 ms
        high.insert(i, 160 * i, payload(i), i * FRAME + (0.4 if i % 2 else 0.0))
    assert low.target_delay == pytest.approx(0.1)
    assert high.target_delay == pytest.approx(0.2)
