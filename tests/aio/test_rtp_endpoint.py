"""RtpEndpoint over real loopback sockets: voxwire sender -> impairment proxy -> receiver."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable
from typing import TypeVar

import numpy as np
import pytest

from tests.aio.rtp_peers import Capture, RecordingProxy, by_index, snr_db, voiced
from voxwire.aio.rtp import RtpEndpoint
from voxwire.errors import OpusUnavailable
from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.netsim import Impairment
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession
from voxwire.rtp import RtpPacket

T = TypeVar("T")
F = 0.020
LOCAL = ("127.0.0.1", 0)


def opus_available() -> bool:
    try:
        RtpSession("opus")
    except OpusUnavailable:
        return False
    return True


def require_opus() -> None:
    """Skip without libopus, except in CI, which installs it."""
    if not opus_available():
        if os.environ.get("CI"):
            pytest.fail("CI installs opuslib and libopus")
        pytest.skip("opuslib or libopus missing")


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def test_impaired_stream_arrives_complete_in_order_with_matching_statistics() -> None:
    seconds = 2.0
    signal = voiced(8000, seconds, seed=1)
    net = Impairment(
        seed=11,
        delay=0.020,
        jitter=0.004,
        loss=0.06,
        duplicate=0.06,
        reorder=0.06,
        reorder_delay=0.050,
    )

    async def main() -> tuple[list[ReceivedFrame], RecordingProxy, RtpEndpoint]:
        frames: list[ReceivedFrame] = []
        # one received frame per RTP frame (no time-stretching), for the per-frame checks
        rx_session = RtpSession("pcmu", time_stretch=False)
        rx = await RtpEndpoint.open(rx_session, LOCAL, on_frame=frames.append)
        proxy = RecordingProxy(rx.local_addr, net)
        tx = await RtpEndpoint.open(
            RtpSession("pcmu", first_sequence=65450, first_timestamp=2**32 - 800),
            LOCAL,
            remote_addr=await proxy.start(),
        )
        tx.send(signal)
        await tx.drain()
        await asyncio.sleep(0.3)  # the receiver's buffer delay, and the held-back packets
        await tx.aclose()
        await rx.aclose()
        proxy.close()
        return frames, proxy, rx

    frames, proxy, rx = run(main())
    fates = proxy.fates
    count = int(seconds * 50)
    assert len(fates.sent) == count
    assert [p.sequence for p in fates.sent] == [(65450 + i) & 0xFFFF for i in range(count)]
    assert fates.lost
    assert fates.duplicated
    assert fates.reordered

    played = by_index(frames, 2**32 - 800, 160)
    heard = {i: f for i, f in played.items() if i < count}
    seq_of = {i: (65450 + i) & 0xFFFF for i in range(count)}
    lost_idx = {i for i in range(count) if seq_of[i] in fates.lost}
    first, last = min(heard), max(heard)
    assert first <= 1
    assert last == count - 1 or seq_of[count - 1] in fates.lost

    # every frame that arrived in time plays exactly once, in order, bit-exact (except the
    # first one after a concealment, which is cross-faded with it)
    reference = decode_ulaw(encode_ulaw(signal)).reshape(count, 160)
    exact = 0
    for before, frame in itertools.pairwise(frames):
        i = ((frame.timestamp - (2**32 - 800)) & 0xFFFFFFFF) // 160
        if frame.kind == "normal" and before.kind != "concealed":
            np.testing.assert_array_equal(frame.pcm, reference[i], err_msg=f"frame {i}")
            exact += 1
    assert exact >= count // 2
    kinds = [heard[i].kind for i in sorted(heard)]
    late = rx.session.stats().jitter.packets_late  # held back past their playout time
    assert late <= len(fates.reordered) + 3
    assert kinds.count("normal") >= count - len(fates.lost) - late - 3
    assert {heard[i].kind for i in lost_idx if i in heard} <= {"concealed"}
    order = [f.timestamp for f in frames if f.kind != "silence"]
    assert order == sorted(order, key=lambda ts: (ts - (2**32 - 800)) & 0xFFFFFFFF)

    stats = rx.session.stats()
    assert stats.rtp is not None
    # RFC 3550 counters against what the proxy did (losses outside the received span of
    # sequence numbers are invisible to a receiver)
    arrived = [i for i in range(count) if i not in lost_idx]
    visible_losses = {i for i in lost_idx if arrived[0] < i < arrived[-1]}
    assert stats.rtp.lost == len(visible_losses)
    assert stats.rtp.duplicates == len(fates.duplicated - fates.lost)
    # a held-back packet counts as reordered only if a newer one overtook it on the way
    assert stats.rtp.reordered == fates.reordered_on_delivery()
    assert 0 < stats.rtp.reordered <= len(fates.reordered)
    assert stats.jitter.packets_duplicated == stats.rtp.duplicates
    assert stats.malformed == {}
    # the audio: concealed frames lower the SNR against the clean decode, not much
    heard_pcm = np.concatenate([heard[i].pcm for i in sorted(heard)])
    ref_pcm = np.concatenate([reference[i] for i in sorted(heard)])
    assert snr_db(ref_pcm, heard_pcm) > 8.0


def test_sender_paces_numbers_and_marks_talkspurts() -> None:
    async def main() -> list[tuple[float, RtpPacket]]:
        loop = asyncio.get_running_loop()
        transport, capture = await loop.create_datagram_endpoint(Capture, local_addr=LOCAL)
        target = transport.get_extra_info("sockname")[:2]
        tx = await RtpEndpoint.open(
            RtpSession("pcmu", first_sequence=65530, first_timestamp=100), LOCAL, target
        )
        tx.send(voiced(8000, 0.5))  # 25 frames
        await tx.drain()
        await asyncio.sleep(0.2)  # a pause: nothing queued
        tx.send(voiced(8000, 0.4, seed=2))  # 20 frames, then a stall of the whole loop
        await asyncio.sleep(0.1)
        time.sleep(0.3)
        await tx.drain()
        await asyncio.sleep(0.05)
        await tx.aclose()
        transport.close()
        return capture.packets

    packets = run(main())
    assert len(packets) == 45
    seqs = [p.sequence for _, p in packets]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(45)]
    ts = [p.timestamp for _, p in packets]
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ts)]
    markers = [i for i, (_, p) in enumerate(packets) if p.marker]
    # the first packet, the one after the pause, the one after the stall
    assert markers[:2] == [0, 25]
    assert len(markers) == 3
    after_stall = markers[2]
    for i, step in enumerate(steps):
        if i + 1 == 25:
            assert 160 * 9 <= step - 160 <= 160 * 14, step  # ~0.2 s pause, whole frames
        elif i + 1 == after_stall:
            assert 160 * 10 <= step - 160 <= 160 * 20, step  # ~0.3 s stall
        else:
            assert step == 160, (i, step)
    # real time: the first talkspurt takes about 24 frame times, not a burst ...
    times = [t for t, _ in packets]
    assert 0.40 < times[24] - times[0] < 0.70
    # ... and after the stall the queue is not flushed at once
    burst = [t for t in times[after_stall:] if t - times[after_stall] < 0.015]
    assert len(burst) <= 3  # the lead (two frames), not the 15 frames the stall held


def test_a_clear_sends_its_tail_after_the_packets_already_sent() -> None:
    async def main() -> tuple[list[tuple[float, RtpPacket]], float]:
        loop = asyncio.get_running_loop()
        transport, capture = await loop.create_datagram_endpoint(Capture, local_addr=LOCAL)
        target = transport.get_extra_info("sockname")[:2]
        tx = await RtpEndpoint.open(RtpSession("pcmu"), LOCAL, target, clear_tail=3)
        tx.send(voiced(8000, 1.0))
        await asyncio.sleep(0.3)
        cleared_at = loop.time()
        tx.clear()
        await asyncio.sleep(0.2)
        await tx.aclose()
        transport.close()
        return capture.packets, cleared_at

    packets, cleared_at = run(main())
    before = [p for t, p in packets if t < cleared_at]
    after = [(t, p) for t, p in packets if t >= cleared_at]
    assert len(after) == 3  # the tail, at once, and nothing of the reply after it
    assert after[-1][0] - cleared_at < 0.05
    seqs = [p.sequence for p in before] + [p.sequence for _, p in after]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    ts = [p.timestamp for p in before] + [p.timestamp for _, p in after]
    assert all(b - a == 160 for a, b in itertools.pairwise(ts))
    assert not any(p.marker for _, p in after)
    silence = [decode_ulaw(np.frombuffer(p.payload, np.uint8)) for _, p in after]
    assert not np.asarray(silence[-1]).any()


def test_playout_clock_is_steady_and_latches_on_the_sender() -> None:
    async def main() -> tuple[list[float], RtpEndpoint, float]:
        loop = asyncio.get_running_loop()
        ticks: list[float] = []
        rx = await RtpEndpoint.open(
            RtpSession("pcmu"), LOCAL, on_frame=lambda f: ticks.append(loop.time())
        )
        start = loop.time()
        tx = await RtpEndpoint.open(RtpSession("pcmu"), LOCAL, rx.local_addr)
        stranger, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=rx.local_addr
        )
        tx.send(voiced(8000, 0.4))
        await asyncio.sleep(0.2)
        stranger.sendto(RtpPacket(0, 1, 0, 9, bytes(160)).to_bytes())
        stranger.sendto(b"\x00" * 3)
        await tx.drain()
        # the endpoint answers where the stream came from
        assert rx.remote_addr == tx.local_addr
        rx.send(voiced(8000, 0.1))
        got: list[ReceivedFrame] = []
        async for frame in rx:
            got.append(frame)
            if len(got) == 3:
                break
        await asyncio.sleep(0.6)
        await tx.aclose()
        await rx.aclose()
        stranger.close()
        return ticks, rx, start

    ticks, rx, _start = run(main())
    assert rx.foreign_datagrams == 2
    assert rx.session.stats().malformed == {}  # the stranger's bytes never reached it
    assert rx.session.stats().rtp is not None
    # one frame per 20 ms, each tick on its own slot of the clock (no accumulated drift)
    n = len(ticks)
    assert n >= 40
    span = ticks[-1] - ticks[0]
    assert abs(span - (n - 1) * F) < 0.1
    assert max(t - (ticks[0] + k * F) for k, t in enumerate(ticks)) < 0.1
    assert rx.stalls == 0


def test_iterator_ends_when_closed_and_drops_for_a_slow_reader() -> None:
    async def main() -> tuple[int, int]:
        rx = await RtpEndpoint.open(RtpSession("pcmu"), LOCAL, max_queue=5)
        await asyncio.sleep(0.3)  # ~15 frames, nobody reading
        seen = 0
        asyncio.get_running_loop().call_later(0.1, rx.close)
        async for _ in rx:
            seen += 1
        return seen, rx.frames_dropped

    seen, dropped = run(main())
    assert dropped >= 5
    assert 5 <= seen <= 20


def test_a_failing_callback_does_not_stop_the_playout_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(frame: ReceivedFrame) -> None:
        raise RuntimeError("boom")

    async def main() -> tuple[int, int]:
        rx = await RtpEndpoint.open(RtpSession("pcmu"), LOCAL, on_frame=explode)
        got = 0
        async for _ in rx:
            got += 1
            if got == 10:
                break
        await rx.aclose()
        return got, rx.callback_errors

    got, errors = run(main())
    assert got == 10
    assert errors >= 10
    assert "on_frame callback failed" in caplog.text


def test_playout_clock_catches_up_short_stalls_and_rebases_after_long_ones() -> None:
    async def main() -> tuple[RtpEndpoint, list[int]]:
        loop = asyncio.get_running_loop()
        times: list[float] = []
        rx = await RtpEndpoint.open(
            RtpSession("pcmu"),
            LOCAL,
            max_catch_up=0.15,
            on_frame=lambda f: times.append(loop.time()),
        )
        await asyncio.sleep(0.1)
        bursts = []
        for blocked in (0.1, 0.5):  # within max_catch_up, then beyond it
            time.sleep(blocked)
            mark = len(times)
            await asyncio.sleep(0.005)
            bursts.append(len(times) - mark)
            await asyncio.sleep(0.1)
        await rx.aclose()
        return rx, bursts

    rx, bursts = run(main())
    short, long = bursts
    assert short >= 4  # the ~5 frames that fell due were all pulled
    assert long <= 3  # not the ~25 of the long stall ...
    assert rx.stalls >= 15  # ... which were skipped and counted


def test_opus_stream_between_endpoints_recovers_losses_from_fec() -> None:
    require_opus()
    from voxwire.opus import OpusDecoder

    signal = voiced(16000, 2.0, seed=4)
    net = Impairment(seed=5, delay=0.020, jitter=0.003, loss=0.08)

    async def main() -> tuple[list[ReceivedFrame], RecordingProxy, RtpEndpoint]:
        frames: list[ReceivedFrame] = []
        rx_session = RtpSession("opus", payload_type=96, sample_rate=16000, time_stretch=False)
        rx = await RtpEndpoint.open(rx_session, LOCAL, on_frame=frames.append)
        proxy = RecordingProxy(rx.local_addr, net)
        tx_session = RtpSession(
            "opus", payload_type=96, sample_rate=16000, first_timestamp=0, opus_loss_percent=20
        )
        tx = await RtpEndpoint.open(tx_session, LOCAL, remote_addr=await proxy.start())
        tx.send(signal)
        await tx.drain()
        await asyncio.sleep(0.3)
        await tx.aclose()
        await rx.aclose()
        proxy.close()
        return frames, proxy, rx

    frames, proxy, rx = run(main())
    sent = proxy.fates.sent
    assert len(sent) == 100
    assert [p.timestamp for p in sent] == [960 * i for i in range(100)]  # 48 kHz clock
    assert {p.payload_type for p in sent} == {96}
    decoder = OpusDecoder(16000)
    reference = [decoder.decode(p.payload) for p in sent]
    played = {i: f for i, f in by_index(frames, 0, 960).items() if i < 100}
    index = {p.sequence: i for i, p in enumerate(sent)}
    lost = {index[s] for s in proxy.fates.lost}
    assert lost
    stats = rx.session.stats()
    assert stats.jitter.fec_frames_used > 0
    assert {played[i].kind for i in lost if i in played} <= {"fec", "concealed"}
    order = sorted(played)
    got = np.concatenate([played[i].pcm for i in order])
    ref = np.concatenate([reference[i] for i in order])
    assert snr_db(ref, got) > 8.0


def test_opus_with_red_between_endpoints_rebuilds_more_of_a_bursty_loss() -> None:
    # The same seeded burst losses twice: Opus with in-band FEC alone, then wrapped in
    # RFC 2198 RED (each packet repeats the one before). RED must turn more of the lost
    # frames into rebuilt ones, over real sockets and the real playout clock.
    require_opus()
    signal = voiced(16000, 2.0, seed=8)

    async def once(red: bool) -> tuple[dict[int, ReceivedFrame], RecordingProxy, RtpEndpoint]:
        net = Impairment(
            seed=21, delay=0.020, jitter=0.002, burst_enter=0.06, burst_exit=0.4, burst_loss=0.8
        )
        frames: list[ReceivedFrame] = []
        rx_session = RtpSession(
            "opus", payload_type=96, sample_rate=16000, red_payload_type=63, time_stretch=False
        )
        rx = await RtpEndpoint.open(rx_session, LOCAL, on_frame=frames.append)
        proxy = RecordingProxy(rx.local_addr, net)
        tx_session = RtpSession(
            "opus",
            payload_type=96,
            sample_rate=16000,
            first_timestamp=0,
            opus_loss_percent=20,
            red_payload_type=63 if red else None,
            red_depth=1 if red else 0,
        )
        tx = await RtpEndpoint.open(tx_session, LOCAL, remote_addr=await proxy.start())
        tx.send(signal)
        await tx.drain()
        await asyncio.sleep(0.3)
        await tx.aclose()
        await rx.aclose()
        proxy.close()
        played = {i: f for i, f in by_index(frames, 0, 960).items() if i < 100}
        return played, proxy, rx

    results = {red: run(once(red)) for red in (False, True)}
    lost = {}
    for red, (_, proxy, _) in results.items():
        sent = proxy.fates.sent
        assert len(sent) == 100
        assert {p.payload_type for p in sent} == ({63} if red else {96})
        index = {p.sequence: i for i, p in enumerate(sent)}
        lost[red] = {index[s] for s in proxy.fates.lost}
    assert lost[True] == lost[False]  # the same seeded losses
    runs = {i for i in lost[True] if i + 1 in lost[True]}
    assert len(lost[True]) >= 6
    assert runs  # bursts: in-band FEC alone cannot rebuild the first frame of these
    rebuilt = {}
    for red, (played, _, rx) in results.items():
        rebuilt[red] = {i for i in lost[red] if i in played and played[i].kind == "fec"}
        stats = rx.session.stats()
        assert stats.malformed == {}
        assert (stats.red_copies > 0) is red
    # (seed 21 on an idle machine: 17 lost, 5 rebuilt without RED, 12 with it)
    assert len(rebuilt[True]) >= len(rebuilt[False]) + 3, rebuilt
    assert len(rebuilt[True]) >= len(lost[True]) // 2, (rebuilt, lost[True])
