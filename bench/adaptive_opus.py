"""Adaptive Opus: bit rate and FEC strength from reported loss, against fixed settings.

    python bench/adaptive_opus.py [--seconds 60] [--seeds 3]

One Opus stream (48 kHz mono, 20 ms packets, voxwire's ``RtpSession`` on both ends) of
espeak-ng speech with pauses goes through :class:`voxwire.netsim.Impairment` (40 ms delay,
10 ms jitter, the profile's loss) on a virtual clock into a receiving ``RtpSession``
(voxwire's jitter buffer, in-band FEC recovery, concealment). Every second the receiver's
RFC 3550 interval loss (expected - received since the last report, over expected: what an
RTCP receiver report's fraction lost carries) goes to the sender, as a browser's reports do
on a WebRTC call. Rows:

* fixed 32 kb/s, FEC planned for 10% loss (voxwire's sending default without feedback);
* fixed 24 kb/s, FEC planned for 10%, and for 1% (lean settings);
* adaptive: :class:`voxwire.opus.OpusRateController` applied to the encoder
  (``RtpSession.opus_encoder``) after each report; and the same with RFC 2198 redundancy
  (``RtpSession.set_red_depth``) in its top tier, as on a call whose peer offered RED.

Scored per profile, summed over seeds: the payload bit rate sent (kb/s), the heard loss
(frames of speech the receiver played as concealment, % of speech frames), the share of
lost frames rebuilt (in-band FEC or a RED copy). A second table gives what each setting's
bits buy without loss: the median per-frame SNR of the decoded speech against the
encoder's input (aligned by the codec's 6.5 ms look-ahead; Opus is a perceptual coder, so
the figure is low in absolute terms and serves only to compare settings).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
from dataclasses import dataclass

import numpy as np

from voxwire.netsim import Impairment
from voxwire.opus import OpusRateController
from voxwire.protocols.rtp_session import RtpSession
from voxwire.sim.speech import synthesize

RATE = 48000
FRAME = RATE // 50
CODEC_DELAY = 312  # libopus's encoder look-ahead at 48 kHz (6.5 ms): the decoded audio lags
PROFILES = {
    "clean": {"loss": 0.0},
    "1% random": {"loss": 0.01},
    "3% random": {"loss": 0.03},
    "8% random": {"loss": 0.08},
    "5% bursty": {"loss": 0.01, "burst_enter": 0.02, "burst_exit": 0.5, "burst_loss": 0.6},
    "15% random": {"loss": 0.15},
}
PHRASES = (
    "Thank you for calling, how can I help you today?",
    "I would like to move my appointment to Friday afternoon.",
    "Let me check what we have available next week.",
    "Could you spell your last name for me, please?",
)


def talker(seconds: float) -> np.ndarray:
    """Speech with pauses, ``seconds`` long."""
    parts: list[np.ndarray] = []
    total = 0
    i = 0
    while total < seconds * RATE:
        pcm = synthesize(PHRASES[i % len(PHRASES)], RATE, seed=i)
        parts += [pcm, np.zeros(RATE * 3 // 4, np.int16)]
        total += len(pcm) + RATE * 3 // 4
        i += 1
    out = np.concatenate(parts)[: round(seconds * RATE)]
    return out[: len(out) // FRAME * FRAME]


@dataclass
class Outcome:
    kbps: float
    speech_frames: int
    concealed: int
    lost: int
    fec: int


RED_PT = 63


def run(
    pcm: np.ndarray,
    profile: dict[str, float],
    seed: int,
    fixed: tuple[int, int] | None,
    red: bool = False,
) -> Outcome:
    """One stream; ``fixed`` = (bit rate, planned loss %), or None: adaptive (with RED
    in its top tier when ``red``)."""
    bitrate, percent = fixed or (32000, 10)
    tx = RtpSession(
        "opus",
        sample_rate=RATE,
        opus_bitrate=bitrate,
        opus_loss_percent=percent,
        ssrc=7,
        first_sequence=0,
        first_timestamp=0,
        red_payload_type=RED_PT,
    )
    rx = RtpSession("opus", sample_rate=RATE, red_payload_type=RED_PT)
    net = Impairment(seed=seed, delay=0.04, jitter=0.01, **profile)
    control = OpusRateController(red=red) if fixed is None else None
    encoder = tx.opus_encoder
    assert encoder is not None
    if control is not None:
        encoder.set_bitrate(control.setting.bitrate)
        encoder.set_packet_loss_percent(control.setting.packet_loss_percent)
    frames = len(pcm) // FRAME
    speech = np.array([np.abs(pcm[i * FRAME : (i + 1) * FRAME]).max() > 300 for i in range(frames)])
    queue: list[tuple[float, int, bytes]] = []
    sent_bytes = 0
    out = np.zeros(frames * FRAME + RATE, np.int16)
    kinds: list[tuple[int, str]] = []  # (frame played or -1, kind) per pull
    last = (0, 0)  # (expected, received) at the last report
    n = 0
    for k in range(frames + 50):
        now = k * 0.02
        if k < frames:
            packet = tx.send(pcm[k * FRAME : (k + 1) * FRAME])
            sent_bytes += len(packet) - 12
            for arrival in net.schedule(now):
                heapq.heappush(queue, (arrival, n, packet))
                n += 1
        while queue and queue[0][0] <= now:
            arrival, _, data = heapq.heappop(queue)
            rx.receive(data, arrival)
        frame = rx.pull(now)
        out[k * FRAME : (k + 1) * FRAME] = frame.pcm
        played = frame.kind in ("normal", "fec")
        kinds.append((frame.timestamp // FRAME if played else -1, frame.kind))
        if control is not None and k % 50 == 49:
            stats = rx.stats().rtp
            if stats is not None:
                expected, received = stats.expected - last[0], stats.received - last[1]
                last = (stats.expected, stats.received)
                if expected > 0:
                    new = control.report(max(0, expected - received) / expected)
                    if new is not None:
                        encoder.set_bitrate(new.bitrate)
                        encoder.set_packet_loss_percent(new.packet_loss_percent)
                        tx.set_red_depth(new.red_depth)
    # the frames heard, by their RTP timestamp (the stream starts at 0)
    heard: set[int] = set()
    for seq, _ in kinds:
        if seq >= 0:
            heard.add(seq)
    start = min(heard, default=0) + 1  # frames before playout began are not scored
    concealed = sum(1 for i in range(start, frames) if speech[i] and i not in heard)
    frames_stats = rx.stats().frames
    return Outcome(
        kbps=sent_bytes * 8 / (frames * 0.02) / 1000,
        speech_frames=int(speech.sum()),
        concealed=concealed,
        lost=net.stats.lost,
        fec=frames_stats.get("fec", 0),
    )


def codec_snr(pcm: np.ndarray, bitrate: int, percent: int) -> float:
    """Median per-frame SNR (dB) of ``pcm`` through the encoder and decoder, no loss."""
    tx = RtpSession("opus", sample_rate=RATE, opus_bitrate=bitrate, opus_loss_percent=percent)
    rx = RtpSession("opus", sample_rate=RATE, time_stretch=False)
    frames = len(pcm) // FRAME
    out = np.concatenate(
        [
            (rx.receive(tx.send(pcm[k * FRAME : (k + 1) * FRAME]), k * 0.02), rx.pull(k * 0.02))[
                1
            ].pcm
            for k in range(frames)
        ]
    )
    snr = []
    for k in range(frames - 1):
        ref = pcm[k * FRAME : (k + 1) * FRAME].astype(np.float64)
        if np.abs(ref).max() <= 300:
            continue
        got = out[k * FRAME + CODEC_DELAY : (k + 1) * FRAME + CODEC_DELAY].astype(np.float64)
        snr.append(10 * np.log10(float(np.sum(ref**2)) / (float(np.sum((ref - got) ** 2)) + 1)))
    return float(statistics.median(snr))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    pcm = talker(args.seconds)
    modes: dict[str, tuple[tuple[int, int] | None, bool]] = {
        "fixed 32 kb/s, FEC for 10%": ((32000, 10), False),
        "fixed 24 kb/s, FEC for 10%": ((24000, 10), False),
        "fixed 24 kb/s, FEC for 1%": ((24000, 1), False),
        "adaptive": (None, False),
        "adaptive, RED in the top tier": (None, True),
    }
    print(
        f"{args.seconds:.0f} s of speech with pauses x {args.seeds} seeds per row; "
        "40 ms delay, 10 ms jitter; receiver reports every 1 s"
    )
    print()
    header = ["loss", "sender", "kb/s", "heard loss %", "lost frames rebuilt %"]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for name, profile in PROFILES.items():
        for label, (fixed, red) in modes.items():
            runs = [run(pcm, profile, seed, fixed, red) for seed in range(args.seeds)]
            kbps = statistics.mean(r.kbps for r in runs)
            speech_frames = sum(r.speech_frames for r in runs)
            heard = 100 * sum(r.concealed for r in runs) / max(1, speech_frames)
            lost = sum(r.lost for r in runs)
            rebuilt = "-" if lost == 0 else f"{100 * sum(r.fec for r in runs) / lost:.0f}"
            print(f"| {name} | {label} | {kbps:.1f} | {heard:.2f} | {rebuilt} |")
    print()
    print("What the bits buy, no loss: median per-frame SNR of the decoded speech (dB)")
    print()
    print("| setting | SNR dB |")
    print("| --- | --- |")
    for bitrate, percent in ((24000, 1), (24000, 10), (32000, 10), (40000, 10), (40000, 25)):
        snr = codec_snr(pcm, bitrate, percent)
        print(f"| {bitrate // 1000} kb/s, FEC for {percent}% | {snr:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
