"""A real peer: ffmpeg sends RTP (PCMU, and Opus with in-band FEC) through the seeded
impairment proxy to an RtpEndpoint; the audio and the statistics must match.

The figures each run measures are printed (``pytest -s``). The proxy records what it did
to every packet, so the receiver's RFC 3550 counters are checked against the truth rather
than against rates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.aio.rtp_peers import (
    PCM,
    Fates,
    RecordingProxy,
    best_correlation,
    by_index,
    snr_db,
    voiced,
)
from voxwire.aio.rtp import RtpEndpoint
from voxwire.errors import OpusUnavailable
from voxwire.g711 import decode_ulaw
from voxwire.netsim import Impairment
from voxwire.protocols.rtp_session import ReceivedFrame, RtpSession, RtpSessionStats

FFMPEG = shutil.which("ffmpeg")
# CI installs ffmpeg (.ci/run), and there this test must run rather than skip.
pytestmark = pytest.mark.skipif(
    FFMPEG is None and not os.environ.get("CI"), reason="ffmpeg is not installed"
)

SECONDS = 3.0
FIRST_SEQUENCE = 65480  # wraps a second into the stream


def opus_available() -> bool:
    try:
        RtpSession("opus")
    except OpusUnavailable:
        return False
    return True


@dataclass
class Codec:
    name: str
    rate: int
    payload_type: int
    ffmpeg_args: list[str]
    packet_size: int
    input_args: tuple[str, ...] = ()


PCMU = Codec(
    "pcmu",
    8000,
    0,
    # 160-sample input frames, 12 + 160 byte packets: one 20 ms frame per packet
    ["-af", "asetnsamples=n=160", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1"],
    172,
    # -re paces by input packet: the WAV demuxer's default 4096 bytes would send 256 ms
    # bursts; 1024 (its minimum) makes them 64 ms
    ("-max_size", "1024"),
)
OPUS = Codec(
    "opus",
    48000,
    111,
    # ":a" makes these codec options; the RTP muxer has an "-fec" option of its own
    [
        *("-c:a", "libopus", "-b:a", "32k", "-application", "voip"),
        *("-frame_duration", "20", "-fec:a", "1", "-packet_loss:a", "20"),
    ],
    1200,
)


def write_wav(path: Path, rate: int, pcm: PCM) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@dataclass
class Run:
    frames: list[ReceivedFrame]
    fates: Fates
    stats: RtpSessionStats


async def stream_through_proxy(codec: Codec, wav: Path, net: Impairment) -> Run:
    loop = asyncio.get_running_loop()
    frames: list[ReceivedFrame] = []
    # one received frame per RTP frame (no time-stretching), for the per-frame comparisons
    session = RtpSession(codec.name, payload_type=codec.payload_type, time_stretch=False)  # type: ignore[arg-type]
    rx = await RtpEndpoint.open(session, ("127.0.0.1", 0), on_frame=frames.append)
    proxy = RecordingProxy(rx.local_addr, net)
    host, port = await proxy.start()
    # ffmpeg is told not to send RTCP; it still opens a socket for it, pointed here
    rtcp, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    rtcp_port = rtcp.get_extra_info("sockname")[1]
    assert FFMPEG is not None
    command = [
        FFMPEG,
        *("-hide_banner", "-nostdin", "-loglevel", "error", "-re", *codec.input_args),
        *("-i", str(wav)),
        *codec.ffmpeg_args,
        *("-f", "rtp", "-payload_type", str(codec.payload_type)),
        *("-seq", str(FIRST_SEQUENCE), "-rtpflags", "skip_rtcp"),
        f"rtp://{host}:{port}?rtcpport={rtcp_port}&pkt_size={codec.packet_size}",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), SECONDS + 10)
        assert process.returncode == 0, err.decode(errors="replace")
        await asyncio.sleep(0.5)  # the jitter buffer's delay and the held-back packets
    finally:
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)
        await rx.aclose()
        proxy.close()
        rtcp.close()
    return Run(frames, proxy.fates, rx.session.stats())


def clean_decode(codec: Codec, run: Run) -> list[PCM]:
    """Every packet ffmpeg sent, decoded in order with nothing lost: the reference."""
    if codec.name == "pcmu":
        return [decode_ulaw(np.frombuffer(p.payload, dtype=np.uint8)) for p in run.fates.sent]
    from voxwire.opus import OpusDecoder

    decoder = OpusDecoder(48000)
    return [decoder.decode(p.payload) for p in run.fates.sent]


@pytest.mark.parametrize("codec", [PCMU, OPUS], ids=lambda c: c.name)
def test_ffmpeg_rtp_through_impairments(codec: Codec, tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.fail("ffmpeg is required in CI: apt-get install ffmpeg")
    if codec.name == "opus" and not opus_available() and not os.environ.get("CI"):
        pytest.skip("opuslib or libopus missing")
    source = voiced(codec.rate, SECONDS, seed=7)
    wav = tmp_path / "source.wav"
    write_wav(wav, codec.rate, source)
    net = Impairment(
        seed=2024,
        delay=0.030,
        jitter=0.005,
        loss=0.06,
        duplicate=0.04,
        reorder=0.04,
        reorder_delay=0.045,
    )
    run = asyncio.run(stream_through_proxy(codec, wav, net))
    fates = run.fates
    sent = fates.sent
    n = len(sent)
    frame = codec.rate // 50

    # what ffmpeg sent: one 20 ms frame per packet, numbered across the wrap
    assert n >= SECONDS * 50
    assert [p.sequence for p in sent] == [(FIRST_SEQUENCE + i) & 0xFFFF for i in range(n)]
    assert {p.payload_type for p in sent} == {codec.payload_type}
    first_ts = sent[0].timestamp
    assert [(p.timestamp - first_ts) & 0xFFFFFFFF for p in sent] == [i * frame for i in range(n)]
    if codec.name == "pcmu":
        assert {len(p.payload) for p in sent} == {160}
    assert fates.lost
    assert fates.duplicated
    assert fates.reordered
    assert fates.other == 0

    # statistics against what the proxy did
    stats = run.stats
    assert stats.rtp is not None
    index = {p.sequence: i for i, p in enumerate(sent)}
    lost_idx = {index[s] for s in fates.lost}
    arrived = [i for i in range(n) if i not in lost_idx]
    visible_lost = {i for i in lost_idx if arrived[0] < i < arrived[-1]}
    assert stats.rtp.received == len(arrived)
    assert stats.rtp.lost == len(visible_lost)
    assert stats.rtp.duplicates == len(fates.duplicated)
    # a held-back packet counts as reordered only if a newer one overtook it on the way
    assert stats.rtp.reordered == fates.reordered_on_delivery()
    assert 0 < stats.rtp.reordered <= len(fates.reordered)
    assert stats.jitter.packets_duplicated == len(fates.duplicated)
    assert stats.malformed == {}
    assert stats.jitter.packets_late <= len(fates.reordered) + 3

    # the audio against the clean decode of the same packets, frame by frame
    reference = clean_decode(codec, run)
    played = {i: f for i, f in by_index(run.frames, first_ts, frame).items() if i < n}
    kinds = {k: sum(f.kind == k for f in played.values()) for k in ("normal", "fec", "concealed")}
    skipped = stats.jitter.removed_samples_for_acceleration // frame  # to cut the delay
    assert kinds["normal"] >= len(arrived) - stats.jitter.packets_late - skipped
    assert {played[i].kind for i in lost_idx if i in played} <= {"fec", "concealed"}
    order = sorted(played)
    got = np.concatenate([played[i].pcm for i in order])
    ref = np.concatenate([reference[i] for i in order])
    snr = snr_db(ref, got)
    # and against the source itself, on the timeline the RTP timestamps give
    timeline = np.zeros(n * frame, dtype=np.int16)
    for i in order:
        timeline[i * frame : (i + 1) * frame] = played[i].pcm
    correlation, lag = best_correlation(source, timeline, max_lag=frame * 2)
    clean = np.concatenate(reference)
    clean_correlation, clean_lag = best_correlation(source, clean, max_lag=frame * 2)

    fec_used = stats.jitter.fec_frames_used
    single_losses = sum(1 for i in lost_idx if i + 1 < n and i + 1 not in lost_idx)
    print(
        f"\n{codec.name}: {n} packets; injected lost/dup/reordered "
        f"{len(fates.lost)}/{len(fates.duplicated)}/{len(fates.reordered)}, observed "
        f"lost {stats.rtp.lost} (visible {len(visible_lost)}) dup {stats.rtp.duplicates} "
        f"reordered {stats.rtp.reordered} late {stats.jitter.packets_late}; frames {kinds}; "
        f"FEC used {fec_used} of {single_losses} single losses; SNR vs clean decode "
        f"{snr:.1f} dB; correlation with the source {correlation:.3f} at lag {lag} "
        f"(clean decode: {clean_correlation:.3f} at lag {clean_lag}); "
        f"mean buffer delay "
        f"{stats.jitter.jitter_buffer_delay / stats.jitter.jitter_buffer_emitted_count:.3f} s"
    )
    if codec.name == "pcmu":
        # G.711 frames that arrived in time decode to exactly the clean bytes
        # (all but the first after a concealment, which is cross-faded with it)
        exact = [
            ((after.timestamp - first_ts) & 0xFFFFFFFF) // frame
            for before, after in itertools.pairwise(run.frames)
            if after.kind == "normal" and before.kind != "concealed"
        ]
        assert len(exact) >= n // 2
        for i in exact:
            np.testing.assert_array_equal(played[i].pcm, reference[i])
        assert snr > 8.0
        assert correlation > 0.9
        assert lag == 0
        assert kinds["fec"] == 0
    else:
        # Opus does not keep the waveform, and ffmpeg's encoder delay shifts it: the clean
        # decode of the same packets is the reference, and the figure against the source
        # is compared with the clean decode's own
        assert fec_used > 0
        assert kinds["fec"] == fec_used
        assert fec_used >= single_losses // 2
        assert snr > 8.0
        assert abs(lag - clean_lag) <= 2
        assert correlation > clean_correlation - 0.1
