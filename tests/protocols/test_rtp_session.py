"""RtpSession in memory on a virtual clock: two peers wired back to back."""

from __future__ import annotations

import os
from collections.abc import Collection

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.errors import OpusUnavailable
from voxwire.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.opus import has_fec
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession
from voxwire.rtp import RedBlock, RtpExtension, RtpPacket, build_red, parse_red, parse_rtp

F = 0.020
PCM = npt.NDArray[np.int16]
# The buffer starts at the lowest delay the first packet allows, so a packet lost or swapped
# in the first frames is waited for (an expand unit) before it is concealed or played; a
# floor above the network delay keeps these frame-by-frame comparisons one unit per frame.
STEADY: dict[str, float | int | bool] = {"min_delay": 0.06}


def opus_available() -> bool:
    try:
        RtpSession("opus")
    except OpusUnavailable:
        return False
    return True


needs_opus = pytest.mark.skipif(
    not opus_available() and not os.environ.get("CI"), reason="opuslib or libopus missing"
)


def voiced(rate: int, frames: int, seed: int = 0) -> PCM:
    """A harmonic signal with a gliding pitch and a slow envelope, ``frames`` 20 ms long."""
    rng = np.random.default_rng(seed)
    n = rate * frames // 50
    t = np.arange(n) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(h * phase) / h for h in range(1, 9)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return np.asarray(np.round(5000 * x), dtype=np.int16)


def encode(tx: RtpSession, signal: PCM) -> list[bytes]:
    n = tx.frame_samples
    return [tx.send(signal[i * n : (i + 1) * n]) for i in range(len(signal) // n)]


def deliver(
    rx: RtpSession,
    packets: list[bytes],
    *,
    drop: Collection[int] = (),
    delay: float = 0.030,
    swap: Collection[int] = (),
    duplicate: Collection[int] = (),
) -> list[ReceivedFrame]:
    """Packet i leaves at i*F and arrives ``delay`` later; pull one frame per F.

    Packets in ``swap`` trade places with the next one; ``duplicate`` ones arrive twice.
    Returns every frame pulled, through 20 frames after the last packet.
    """
    arrivals: list[tuple[float, bytes]] = []
    for i, wire in enumerate(packets):
        if i in drop:
            continue
        t = i * F + delay + (F + 0.002 if i in swap else 0.0)
        arrivals.append((t, wire))
        if i in duplicate:
            arrivals.append((t + 0.002, wire))
    arrivals.sort(key=lambda a: a[0])
    frames: list[ReceivedFrame] = []
    j = 0
    for k in range(len(packets) + 20):
        now = k * F
        while j < len(arrivals) and arrivals[j][0] <= now:
            assert rx.receive(arrivals[j][1], arrivals[j][0]) != "malformed"
            j += 1
        frames.append(rx.pull(now))
    return frames


def run(
    tx: RtpSession, rx: RtpSession, signal: PCM, **kw: Collection[int]
) -> tuple[list[bytes], list[ReceivedFrame]]:
    packets = encode(tx, signal)
    return packets, deliver(rx, packets, **kw)  # type: ignore[arg-type]


def index_of(frame: ReceivedFrame, first_ts: int, ticks: int) -> int:
    return ((frame.timestamp - first_ts) & 0xFFFFFFFF) // ticks


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_g711_round_trip_across_sequence_and_timestamp_wrap(codec: str) -> None:
    tx = RtpSession(codec, ssrc=5, first_sequence=65520, first_timestamp=2**32 - 160 * 12)  # type: ignore[arg-type]
    rx = RtpSession(codec, jitter=STEADY)  # type: ignore[arg-type]
    signal = voiced(8000, 50)
    packets, frames = run(tx, rx, signal)
    seqs = [parse_rtp(p).sequence for p in packets]
    assert seqs[15] == 65535
    assert seqs[16] == 0
    assert parse_rtp(packets[12]).timestamp == 0
    played = [f for f in frames if f.kind != "silence"][:50]
    assert [f.kind for f in played] == ["normal"] * 50
    assert all(f.adjustment == "none" for f in played)
    indexes = [index_of(f, 2**32 - 160 * 12, 160) for f in played]
    assert indexes == list(range(50))
    encode, decode = (encode_ulaw, decode_ulaw) if codec == "pcmu" else (encode_alaw, decode_alaw)
    expected = decode(encode(signal))
    got = np.concatenate([f.pcm for f in played])
    np.testing.assert_array_equal(got, expected)
    stats = rx.stats()
    assert stats.rtp is not None
    assert (stats.rtp.received, stats.rtp.lost, stats.rtp.expected) == (50, 0, 50)
    assert stats.jitter.packets_received == 50
    assert stats.frames["normal"] == 50


@pytest.mark.parametrize("codec", ["pcmu", "opus"])
def test_default_buffer_plays_a_steady_stream_without_adjustments(codec: str) -> None:
    # No hints (voiced throughout) and a constant network delay: the start must not skip
    # voiced frames to come down from an initial guess, nor insert any.
    if codec == "opus" and not opus_available():
        pytest.skip("libopus not installed")
    rate = 8000 if codec == "pcmu" else 48000
    tx = RtpSession(codec, first_sequence=65500, first_timestamp=2**32 - 10 * rate // 50)  # type: ignore[arg-type]
    rx = RtpSession(codec)  # type: ignore[arg-type]
    _, frames = run(tx, rx, voiced(rate, 100, seed=4), delay=0.043)
    played = [f for f in frames if f.kind != "silence"][:100]
    assert [f.kind for f in played] == ["normal"] * 100
    assert [f.adjustment for f in played] == ["none"] * 100
    stats = rx.stats().jitter
    assert stats.removed_samples_for_acceleration == 0


def test_g711_loss_is_concealed_and_counted() -> None:
    tx = RtpSession("pcmu", first_sequence=100, first_timestamp=0)
    rx = RtpSession("pcmu", jitter=STEADY)
    signal = voiced(8000, 40)
    drop = {10, 20, 21}
    _, frames = run(tx, rx, signal, drop=drop)
    played = [f for f in frames if f.kind != "silence"][:40]
    by_index = {index_of(f, 0, 160): f for f in played}
    assert sorted(by_index) == list(range(40))
    for i in range(40):
        assert by_index[i].kind == ("concealed" if i in drop else "normal"), i
    # concealment continues the voice rather than leaving a hole
    first_gap = by_index[10].pcm.astype(np.float64)
    assert np.sqrt(np.mean(first_gap**2)) > 500
    stats = rx.stats()
    assert stats.rtp is not None
    assert stats.rtp.lost == 3
    assert stats.jitter.packets_lost == 3
    assert stats.jitter.concealed_samples >= 3 * 160  # the frames after the stream count too


def test_reordered_and_duplicated_packets_play_once_in_order() -> None:
    tx = RtpSession("pcma", first_sequence=65530, first_timestamp=7)
    rx = RtpSession("pcma", jitter=STEADY)
    signal = voiced(8000, 30, seed=2)
    _, frames = run(tx, rx, signal, swap={5, 17}, duplicate={3, 9, 17})
    played = [f for f in frames if f.kind != "silence"][:30]
    assert [index_of(f, 7, 160) for f in played] == list(range(30))
    assert all(f.kind == "normal" for f in played)
    np.testing.assert_array_equal(
        np.concatenate([f.pcm for f in played]), decode_alaw(encode_alaw(signal))
    )
    stats = rx.stats()
    assert stats.rtp is not None
    assert stats.rtp.duplicates == 3
    assert stats.rtp.reordered == 2
    assert stats.rtp.lost == 0
    assert stats.jitter.packets_duplicated == 3


def snr(reference: PCM, test: PCM) -> float:
    ref = reference.astype(np.float64)
    err = ref - test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))


@needs_opus
def test_opus_loss_with_fec_is_recovered_and_better_than_concealment() -> None:
    signal = voiced(48000, 100, seed=3)
    drop = set(range(20, 95, 6))  # single losses: the next packet is always there
    with_fec = RtpSession("opus", first_sequence=65500, first_timestamp=0, opus_loss_percent=20)
    packets = encode(with_fec, signal)
    # libopus adds LBRR data where it judges the frame worth it, not to every packet
    recoverable = {i for i in drop if has_fec(parse_rtp(packets[i + 1]).payload)}
    assert len(recoverable) >= len(drop) // 2
    results = {}
    for loss_percent in (20, 0):  # the encoder adds LBRR data only when it expects loss
        tx = RtpSession(
            "opus", first_sequence=65500, first_timestamp=0, opus_loss_percent=loss_percent
        )
        packets = encode(tx, signal)
        clean = deliver(RtpSession("opus", jitter=STEADY), packets)
        rx = RtpSession("opus", jitter=STEADY)
        lossy = deliver(rx, packets, drop=drop)
        clean_by = {index_of(f, 0, 960): f for f in clean if f.kind != "silence"}
        lossy_by = {index_of(f, 0, 960): f for f in lossy if f.kind != "silence"}
        lossy_by = {i: f for i, f in lossy_by.items() if i < 100}
        assert sorted(lossy_by) == list(range(100))
        kinds = {i: lossy_by[i].kind for i in drop}
        ref = np.concatenate([clean_by[i].pcm for i in sorted(recoverable)])
        got = np.concatenate([lossy_by[i].pcm for i in sorted(recoverable)])
        results[loss_percent] = (kinds, snr(ref, got), rx.stats())
    fec_kinds, fec_snr, fec_stats = results[20]
    plc_kinds, plc_snr, plc_stats = results[0]
    assert fec_kinds == {i: "fec" if i in recoverable else "concealed" for i in drop}
    assert fec_stats.jitter.fec_frames_used == len(recoverable) == fec_stats.frames["fec"]
    assert set(plc_kinds.values()) == {"concealed"}
    assert plc_stats.jitter.fec_frames_used == 0
    assert fec_snr > plc_snr + 3.0, (fec_snr, plc_snr)


def worst_local_match(out: PCM, ref: PCM, win: int = 80, hop: int = 20) -> float:
    """The lowest, over the voiced 10 ms windows of ``out``, of the best normalised
    correlation with any 10 ms window of ``ref``: 1.0 when every piece of the output is a
    piece of the source (a period removed or repeated), low where the output has a cut."""
    ref_w = np.lib.stride_tricks.sliding_window_view(ref.astype(np.float64), win)
    ref_w = ref_w / np.maximum(np.linalg.norm(ref_w, axis=1, keepdims=True), 1e-9)
    worst = 1.0
    x = out.astype(np.float64)
    start = int(np.flatnonzero(x)[0])  # after the silence before the first frame
    for s in range(start, len(x) - win, hop):
        w = x[s : s + win]
        norm = float(np.linalg.norm(w))
        worst = min(worst, float(np.max(ref_w @ (w / max(norm, 1e-9)))))
    return worst


def test_time_stretch_lowers_the_delay_inside_speech_without_cutting_it() -> None:
    # The target starts at 35 ms and falls to the 5 ms of the network in continuous voiced
    # audio (no quiet frame to skip): the buffer is a frame behind for good.
    signal = voiced(8000, 100, seed=2)
    ref = decode_ulaw(encode_ulaw(signal))
    results = {}
    for stretch in (True, False):
        tx = RtpSession("pcmu", first_sequence=100, first_timestamp=0)
        rx = RtpSession("pcmu", time_stretch=stretch, jitter={"initial_delay": 0.035})
        _, frames = run(tx, rx, signal, delay=0.005)
        out = np.concatenate([f.pcm for f in frames])
        results[stretch] = (rx.stats(), worst_local_match(out[:8000], ref[:8800]))
    (stretched, match), (whole, cut) = results[True], results[False]
    # Whole frames: one voiced frame skipped, and the cut shows.
    assert whole.jitter.removed_samples_for_acceleration == 160
    assert cut < 0.8, cut
    # Stretched: the same frame of delay removed as pitch periods, every piece of the
    # output still a piece of the source.
    assert stretched.shortened >= 1
    assert 0 < stretched.jitter.removed_samples_for_acceleration < 160
    assert stretched.frames.get("normal", 0) == whole.frames.get("normal", 0) + 1
    assert match > 0.99, match


@needs_opus
def test_time_stretch_works_on_opus_at_48k() -> None:
    tx = RtpSession("opus", first_timestamp=0)
    rx = RtpSession("opus", jitter={"initial_delay": 0.035})
    _, frames = run(tx, rx, voiced(48000, 100, seed=3), delay=0.005)
    stats = rx.stats()
    assert stats.shortened >= 1
    assert all(f.adjustment != "accelerate" for f in frames)
    assert 0 < stats.jitter.removed_samples_for_acceleration < 960
    assert all(len(f.pcm) == 960 for f in frames)


RUNS = {i for start in range(10, 90, 8) for i in (start, start + 1)}  # two lost in a row


def test_g711_red_depth_two_rebuilds_runs_of_two_lost_packets_exactly() -> None:
    signal = voiced(8000, 100, seed=5)
    tx = RtpSession("pcmu", red_payload_type=63, red_depth=2, first_sequence=65530)
    rx = RtpSession("pcmu", red_payload_type=63, jitter=STEADY)
    first_ts = tx.next_timestamp
    _, frames = run(tx, rx, signal, drop=RUNS)
    played = [f for f in frames if f.kind != "silence"][:100]
    assert [index_of(f, first_ts, 160) for f in played] == list(range(100))
    assert {played[i].kind for i in RUNS} == {"fec"}
    assert {played[i].kind for i in set(range(100)) - RUNS} == {"normal"}
    # the copies are the same G.711 bytes: the audio comes back bit-exact
    np.testing.assert_array_equal(
        np.concatenate([f.pcm for f in played]), decode_ulaw(encode_ulaw(signal))
    )
    stats = rx.stats()
    assert stats.jitter.fec_frames_used == len(RUNS)
    assert stats.red_copies == 2 * (100 - len(RUNS)) - 3  # packets 0 and 1 carry fewer
    assert stats.red_ignored == 0
    assert stats.rtp is not None
    assert stats.rtp.lost == len(RUNS)


@needs_opus
def test_opus_red_with_in_band_fec_rebuilds_both_frames_of_a_run() -> None:
    signal = voiced(48000, 100, seed=6)
    tx = RtpSession("opus", red_payload_type=63, red_depth=1, first_timestamp=0)
    packets = encode(tx, signal)
    clean = deliver(RtpSession("opus", red_payload_type=63, jitter=STEADY), packets)
    results = {}
    for red in (True, False):
        if red:
            wire = packets
        else:  # the same Opus packets without their RED wrapping
            wire = [
                RtpPacket(
                    111, p.sequence, p.timestamp, p.ssrc, parse_red(p.payload).primary.data
                ).to_bytes()
                for p in map(parse_rtp, packets)
            ]
        rx = RtpSession("opus", red_payload_type=63, jitter=STEADY)
        frames = deliver(rx, wire, drop=RUNS)
        results[red] = ({index_of(f, 0, 960): f for f in frames if f.kind != "silence"}, rx)
    by_red, rx_red = results[True]
    by_plain, _ = results[False]
    clean_by = {index_of(f, 0, 960): f for f in clean if f.kind != "silence"}
    second = sorted(i for i in RUNS if i - 1 in RUNS)  # the second frame of each run
    first = sorted(i for i in RUNS if i + 1 in RUNS)
    # The second frame of a run plays its own encoding, copied in the next packet.
    assert {by_red[i].kind for i in second} == {"fec"}
    # The first one: the copy's in-band FEC when libopus put LBRR data in it.
    lbrr = {i for i in first if has_fec(parse_red(parse_rtp(packets[i + 1]).payload).primary.data)}
    assert len(lbrr) >= len(first) // 2
    assert {i for i in first if by_red[i].kind == "fec"} == lbrr
    assert {by_plain[i].kind for i in first} == {"concealed"}  # in-band FEC alone: too far
    ref = np.concatenate([clean_by[i].pcm for i in sorted(RUNS)])
    red_snr = snr(ref, np.concatenate([by_red[i].pcm for i in sorted(RUNS)]))
    plain_snr = snr(ref, np.concatenate([by_plain[i].pcm for i in sorted(RUNS)]))
    assert red_snr > plain_snr + 3.0, (red_snr, plain_snr)
    assert rx_red.stats().red_copies == 100 - len(RUNS) - 1


def test_red_packets_that_cannot_be_used_are_counted() -> None:
    rx = RtpSession("pcmu", red_payload_type=63)
    frame = encode_ulaw(voiced(8000, 1)).tobytes()

    def red(seq: int, primary: RedBlock, *blocks: RedBlock) -> bytes:
        return RtpPacket(63, seq, 160 * seq, 9, build_red(primary, blocks)).to_bytes()

    plain = RtpPacket(0, 1, 160, 9, frame).to_bytes()
    assert rx.receive(plain, 0.0) == "stored"  # a peer may also send without RED
    assert rx.receive(RtpPacket(63, 2, 320, 9, b"\x80\x02").to_bytes(), 0.0) == "malformed"
    assert rx.receive(red(3, RedBlock(8, 0, frame)), 0.0) == "other_payload"
    comfort_noise = RedBlock(13, 160, b"\x40")
    odd_offset = RedBlock(0, 100, frame)
    assert rx.receive(red(4, RedBlock(0, 0, frame), comfort_noise, odd_offset), 0.0) == "stored"
    assert rx.receive(red(5, RedBlock(0, 0, frame), RedBlock(0, 160, frame)), 0.0) == "stored"
    stats = rx.stats()
    assert stats.malformed == {"red_header_past_end": 1}
    assert stats.other_payload_types == {8: 1}
    assert (stats.red_copies, stats.red_ignored) == (1, 2)
    assert stats.jitter.packets_received == 3  # 1, 4 and 5


def test_red_send_side_repeats_the_last_frames_and_not_across_a_pause() -> None:
    tx = RtpSession("pcma", red_payload_type=100, red_depth=2, first_timestamp=0)
    frames = [voiced(8000, 1, seed=k) for k in range(5)]
    payloads = [encode_alaw(f).tobytes() for f in frames]
    sent = [parse_rtp(tx.send(f)) for f in frames[:3]]
    tx.pause(2)
    sent += [parse_rtp(tx.send(f)) for f in frames[3:]]
    assert {p.payload_type for p in sent} == {100}
    reds = [parse_red(p.payload) for p in sent]
    assert [r.primary for r in reds] == [RedBlock(8, 0, p) for p in payloads]
    assert [r.redundant for r in reds] == [
        (),
        (RedBlock(8, 160, payloads[0]),),
        (RedBlock(8, 320, payloads[0]), RedBlock(8, 160, payloads[1])),
        (),  # a new talkspurt
        (RedBlock(8, 160, payloads[3]),),
    ]
    assert [p.marker for p in sent] == [True, False, False, True, False]
    with pytest.raises(ValueError, match="red_depth"):
        RtpSession("pcmu", red_depth=1)
    with pytest.raises(ValueError, match="red_depth"):
        RtpSession("pcmu", red_payload_type=63, red_depth=3)
    with pytest.raises(ValueError, match="red_payload_type"):
        RtpSession("pcmu", red_payload_type=0)
    with pytest.raises(ValueError, match="red_payload_type"):
        RtpSession("pcmu", red_payload_type=72)


def test_malformed_datagrams_are_counted_never_raised() -> None:
    tx = RtpSession("pcmu", first_sequence=1, first_timestamp=0)
    rx = RtpSession("pcmu")
    good = tx.send(voiced(8000, 1))
    bad_version = bytes([0x40]) + good[1:]
    csrc_past_end = bytes([0x8F]) + good[1:12]  # 15 CSRCs announced, none there
    padding_past_end = bytes([0xA0]) + good[1:-1] + bytes([200])
    rtcp_receiver_report = bytes([0x80, 201, 0, 1]) + bytes(4)
    comfort_noise = RtpPacket(13, 2, 160, 1, bytes(1)).to_bytes()
    results = [
        rx.receive(d, 0.0)
        for d in (
            b"",
            good[:5],
            bad_version,
            csrc_past_end,
            padding_past_end,
            rtcp_receiver_report,
            comfort_noise,
        )
    ]
    assert results == [
        "malformed",
        "malformed",
        "malformed",
        "malformed",
        "malformed",
        "rtcp",
        "other_payload",
    ]
    assert rx.receive(good, 0.001) == "stored"  # the session goes on
    stats = rx.stats()
    assert stats.malformed == {
        "too_short": 2,
        "bad_version": 1,
        "csrc_past_end": 1,
        "bad_padding": 1,
    }
    assert stats.rtcp_packets == 1
    assert stats.other_payload_types == {13: 1}
    assert stats.rtp is not None
    assert stats.rtp.received == 1


@needs_opus
def test_malformed_opus_payload_is_counted() -> None:
    rx = RtpSession("opus", payload_type=96)
    empty = RtpPacket(96, 1, 0, 1, b"").to_bytes()
    bad_code3 = RtpPacket(96, 2, 960, 1, bytes([(9 << 3) | 3, 0])).to_bytes()  # zero frames
    assert rx.receive(empty, 0.0) == "malformed"
    assert rx.receive(bad_code3, 0.0) == "malformed"
    assert set(rx.stats().malformed) == {"opus_empty", "opus_zero_frames"}


def test_wrong_duration_payload_is_fitted_and_counted() -> None:
    rx = RtpSession("pcmu")
    half = RtpPacket(0, 1, 0, 1, encode_ulaw(voiced(8000, 1)[:80]).tobytes()).to_bytes()
    assert rx.receive(half, 0.0) == "stored"
    frame = next(f for f in (rx.pull(k * F) for k in range(10)) if f.kind == "normal")
    assert len(frame.pcm) == 160
    assert rx.stats().malformed == {"wrong_duration": 1}


def test_send_side_numbering_marker_and_pause() -> None:
    tx = RtpSession("pcma", ssrc=0xDEADBEEF, first_sequence=65535, first_timestamp=2**32 - 160)
    frame = voiced(8000, 1)
    a, b = parse_rtp(tx.send(frame)), parse_rtp(tx.send(frame))
    tx.pause(3)
    c, d = parse_rtp(tx.send(frame)), parse_rtp(tx.send(frame))
    assert [p.payload_type for p in (a, b, c, d)] == [8] * 4
    assert [p.sequence for p in (a, b, c, d)] == [65535, 0, 1, 2]
    assert [p.timestamp for p in (a, b, c, d)] == [2**32 - 160, 0, 160 * 4, 160 * 5]
    assert [p.marker for p in (a, b, c, d)] == [True, False, True, False]
    assert {p.ssrc for p in (a, b, c, d)} == {0xDEADBEEF}
    assert a.payload == encode_alaw(frame).tobytes()
    stats = tx.stats()
    assert (stats.packets_sent, stats.bytes_sent) == (4, 4 * 172)


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="codec"):
        RtpSession("g722")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payload_type"):
        RtpSession("pcmu", payload_type=72)  # collides with RTCP when muxed
    with pytest.raises(ValueError, match="8000"):
        RtpSession("pcmu", sample_rate=16000)
    tx = RtpSession("pcmu")
    with pytest.raises(ValueError, match="160 samples"):
        tx.send(np.zeros(80, dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        tx.send(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]


@needs_opus
def test_opus_send_side_uses_48k_timestamps_and_the_negotiated_type() -> None:
    tx = RtpSession("opus", payload_type=96, sample_rate=16000, first_timestamp=0)
    # A steady delay floor: this test is about numbering, not the buffer's own adaptation
    # (which may skip a frame early on to come down from its initial target).
    rx = RtpSession("opus", payload_type=96, sample_rate=16000, jitter=STEADY)
    assert tx.frame_samples == 320
    assert tx.frame_ticks == 960
    signal = voiced(16000, 20)
    packets, frames = run(tx, rx, signal)
    assert [parse_rtp(p).timestamp for p in packets[:3]] == [0, 960, 1920]
    assert {parse_rtp(p).payload_type for p in packets} == {96}
    played = [f for f in frames if f.kind != "silence"][:20]
    assert [f.kind for f in played] == ["normal"] * 20
    assert all(len(f.pcm) == 320 for f in played)


def stall(packets: list[bytes], rx: RtpSession, held: range) -> list[ReceivedFrame]:
    """Deliver packets 30 ms after sending, except that ``held`` arrive together at the end."""
    release = held.stop * F + 0.030
    frames = []
    for k in range(len(packets) + 10):
        now = k * F
        for i, wire in enumerate(packets):
            t = release if i in held else i * F + 0.030
            if now - F < t <= now:
                rx.receive(wire, t)
        frames.append(rx.pull(now))
    return frames


def test_g711_quiet_frames_are_flagged_so_waits_are_silent_not_concealed() -> None:
    voice = voiced(8000, 40)
    quiet = (voice // 200).astype(np.int16)  # about -60 dBFS: room tone
    kinds = {}
    for name, signal in (("voice", voice), ("quiet", quiet)):
        tx = RtpSession("pcmu", first_sequence=9, first_timestamp=0)
        rx = RtpSession("pcmu")
        frames = stall(encode(tx, signal), rx, range(20, 26))
        waits = [f for f in frames if f.adjustment == "expand"]
        assert waits, name
        kinds[name] = {f.kind for f in waits if index_of(f, 0, 160) < 40}
    assert kinds["voice"] == {"concealed"}
    assert kinds["quiet"] == {"silence"}


def test_a_new_ssrc_restarts_the_stream_and_plays_on() -> None:
    # a call transfer: another sender, its own random numbering
    first = RtpSession("pcmu", ssrc=1, first_sequence=100, first_timestamp=0)
    second = RtpSession("pcmu", ssrc=2, first_sequence=40000, first_timestamp=123456789)
    signal = voiced(8000, 60)
    packets = encode(first, signal[: 160 * 30]) + encode(second, signal[160 * 30 :])
    rx = RtpSession("pcmu", jitter=STEADY)  # no early delay adjustment in the numbering check
    frames = [f for f in deliver(rx, packets) if f.kind == "normal"]
    old = [f.sequence for f in frames if f.sequence < 1000]
    new = [f.sequence for f in frames if f.sequence >= 40000]
    assert old == list(range(100, 130))
    assert new == sorted(new)
    assert len(new) >= 26  # the switch costs a few frames: RFC 3550 A.1 confirms it first
    assert frames[-1].sequence == 40029
    stats = rx.stats()
    assert stats.rtp is not None
    assert stats.rtp.restarts == 1
    assert stats.jitter.restarts == 1


def with_level(wire: bytes, level: int | None, ident: int = 1) -> bytes:
    """``wire`` with an RFC 6464 audio level element (``level`` -dBov) as Chrome adds it,
    after a transport-wide sequence number (ID 3); None: that element alone."""
    packet = parse_rtp(wire)
    data = bytes([0x31, 0, packet.sequence & 0xFF])
    if level is not None:
        data += bytes([ident << 4, 0x80 | level])
    data += bytes(-len(data) % 4)
    return RtpPacket(
        packet.payload_type,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
        packet.payload,
        packet.marker,
        extension=RtpExtension(0xBEDE, data),
    ).to_bytes()


def talk_and_pauses(rate: int, frames: int) -> tuple[PCM, list[bool]]:
    """Voiced audio with a 5-frame pause at -60 dBFS after every 10 frames; the quiet flags."""
    signal = voiced(rate, frames, seed=4)
    n = rate // 50
    quiet = [i % 15 >= 10 for i in range(frames)]
    for i, q in enumerate(quiet):
        if q:
            signal[i * n : (i + 1) * n] //= 200
    return signal, quiet


@needs_opus
def test_opus_frames_the_audio_level_marks_quiet_take_the_delay_adjustments() -> None:
    # The target starts 60 ms above a 5 ms network and comes down by skipping whole frames
    # (no time-stretching, so every adjustment is a frame). With the level of each packet,
    # every skipped frame is a quiet one; without it the first skips fall in the talk.
    signal, quiet = talk_and_pauses(48000, 150)
    skipped = {}
    for ident in (None, 1):
        tx = RtpSession("opus", first_timestamp=0)
        rx = RtpSession(
            "opus", time_stretch=False, audio_level_id=ident, jitter={"initial_delay": 0.06}
        )
        packets = [
            with_level(w, 60 if q else 20) for w, q in zip(encode(tx, signal), quiet, strict=True)
        ]
        frames = deliver(rx, packets, delay=0.005)
        played = {index_of(f, 0, 960) for f in frames if f.kind == "normal"}
        skipped[ident] = set(range(150)) - played
        assert rx.stats().audio_levels == (150 if ident else 0)
        assert rx.stats().extension_errors == 0
    assert skipped[1], "the buffer never came down"
    assert all(quiet[i] for i in skipped[1]), sorted(skipped[1])
    assert not all(quiet[i] for i in skipped[None]), sorted(skipped[None])


@needs_opus
def test_opus_waits_on_quiet_frames_are_silent_and_bad_levels_are_counted() -> None:
    voice = voiced(48000, 40)
    kinds = {}
    for name, level in (("voice", 20), ("quiet", 60), ("at the threshold", 45)):
        tx = RtpSession("opus", first_sequence=9, first_timestamp=0)
        rx = RtpSession("opus", audio_level_id=1)
        packets = [with_level(w, level) for w in encode(tx, voice)]
        frames = stall(packets, rx, range(20, 26))
        kinds[name] = {f.kind for f in frames if f.adjustment == "expand"}
    assert kinds["voice"] == {"concealed"}
    assert kinds["quiet"] == kinds["at the threshold"] == {"silence"}
    # A packet without the element, or whose extension cannot be read, still plays.
    tx = RtpSession("opus", first_timestamp=0)
    rx = RtpSession("opus", audio_level_id=1)
    packets = encode(tx, voice)
    bad = parse_rtp(packets[3])
    broken = RtpPacket(
        bad.payload_type,
        bad.sequence,
        bad.timestamp,
        bad.ssrc,
        bad.payload,
        extension=RtpExtension(0xBEDE, bytes.fromhex("13aa0000")),
    ).to_bytes()
    packets = [with_level(w, None) for w in packets[:3]] + [broken] + packets[4:]
    frames = deliver(rx, packets, delay=0.005)
    stats = rx.stats()
    assert stats.extension_errors == 1
    assert stats.audio_levels == 0
    assert 3 in {index_of(f, 0, 960) for f in frames if f.kind == "normal"}
    with pytest.raises(ValueError, match="audio_level_id"):
        RtpSession("opus", audio_level_id=0)


def test_pulled_units_list_every_frame_a_stretched_playout_starts() -> None:
    # Time-stretching takes delay out of continuous audio: after shortened frames, a frame
    # can start inside a 20 ms frame that begins with the rest of the one before, so its
    # timestamp labels no ReceivedFrame; pulled_units still lists it.
    tx = RtpSession("pcmu", first_sequence=100, first_timestamp=0)
    rx = RtpSession("pcmu", jitter={"initial_delay": 0.035})
    # noise-like audio (no pitch period): a shortened frame loses half its length
    noise = np.random.default_rng(7).normal(0, 3000, 16000).astype(np.int16)
    packets = encode(tx, noise)
    labels: list[int] = []
    units: list[tuple[int, int]] = []
    for k in range(120):
        now = k * F
        for i, wire in enumerate(packets):
            if now - F < i * F + 0.005 <= now:
                rx.receive(wire, i * F + 0.005)
        frame = rx.pull(now)
        labels.append(index_of(frame, 0, 160))
        assert all(0 <= offset < 160 for _, offset in rx.pulled_units)
        units += [(index_of(u, 0, 160), off) for u, off in rx.pulled_units if u.kind == "normal"]
    assert rx.stats().shortened >= 1
    played = [i for i, _ in units if i < 100]
    assert played == sorted(set(played)) == list(range(100))  # each frame once, in order
    assert set(range(100)) - set(labels)  # a frame no label names
    assert any(offset > 0 for _, offset in units)
