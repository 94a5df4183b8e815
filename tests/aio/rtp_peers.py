"""Shared pieces of the RTP endpoint tests: a proxy that remembers each packet's fate,
a capture socket, test signals and the figures the tests compare."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from voxwire.errors import RtpError
from voxwire.netsim import UdpImpairmentProxy
from voxwire.protocols.rtp_session import ReceivedFrame
from voxwire.rtp import RtpPacket, parse_rtp

PCM = npt.NDArray[np.int16]


def voiced(rate: int, seconds: float, seed: int = 0) -> PCM:
    """A speech-like harmonic signal: gliding pitch, formant-ish roll-off, syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 130 + 35 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(h * phase + rng.uniform(0, 6)) / h**1.2 for h in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.1 * t) ** 2
    return np.asarray(np.round(4500 * x * envelope), dtype=np.int16)


@dataclass
class Fates:
    """What the proxy did to each RTP packet, keyed by sequence number."""

    sent: list[RtpPacket] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)
    duplicated: set[int] = field(default_factory=set)
    reordered: set[int] = field(default_factory=set)
    delivered: list[int] = field(default_factory=list)
    """Sequence numbers in the order the proxy sent them on."""
    other: int = 0

    def reordered_on_delivery(self) -> int:
        """Copies that came after a newer packet and were not duplicates: what a receiver
        counts as reordered (sequence numbers compared across the 16-bit wrap)."""
        seen: set[int] = set()
        count = 0
        highest: int | None = None
        for seq in self.delivered:
            if seq in seen:
                continue
            seen.add(seq)
            if highest is not None and 0 < (highest - seq) & 0xFFFF < 0x8000:
                count += 1
            elif highest is None or (seq - highest) & 0xFFFF < 0x8000:
                highest = seq
        return count


class RecordingProxy(UdpImpairmentProxy):
    """An impairment proxy that also records which packet it lost, duplicated or held back."""

    fates: Fates

    async def start(self, port: int = 0) -> tuple[str, int]:
        self.fates = Fates()
        address = await super().start(port)
        send = self._send.sendto  # type: ignore[union-attr]

        def record(data: bytes, addr: object = None) -> None:
            with contextlib.suppress(RtpError):
                self.fates.delivered.append(parse_rtp(data).sequence)
            send(data)

        self._send.sendto = record  # type: ignore[union-attr,method-assign,assignment]
        return address

    def _forward(self, data: bytes) -> None:
        stats = self.impairment.stats
        before = (stats.lost, stats.duplicated, stats.reordered)
        super()._forward(data)
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.fates.other += 1
            return
        self.fates.sent.append(packet)
        if stats.lost > before[0]:
            self.fates.lost.add(packet.sequence)
        if stats.duplicated > before[1]:
            self.fates.duplicated.add(packet.sequence)
        if stats.reordered > before[2]:
            self.fates.reordered.add(packet.sequence)


class Capture(asyncio.DatagramProtocol):
    """A plain UDP socket that records (arrival time, packet)."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, RtpPacket]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.packets.append((asyncio.get_running_loop().time(), parse_rtp(data)))


def by_index(frames: list[ReceivedFrame], first_ts: int, ticks: int) -> dict[int, ReceivedFrame]:
    """Played frames keyed by their frame index counted from ``first_ts``.

    Units the jitter buffer inserted to add delay (``adjustment == "expand"``) carry the
    timestamp of the frame they precede and are left out.
    """
    out: dict[int, ReceivedFrame] = {}
    for f in frames:
        if f.kind != "silence" and f.adjustment != "expand":
            i = ((f.timestamp - first_ts) & 0xFFFFFFFF) // ticks
            assert i not in out, f"frame {i} played twice"
            out[i] = f
    return out


def snr_db(reference: PCM, test: PCM) -> float:
    ref = reference.astype(np.float64)
    err = ref - test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(float(np.sum(err**2)), 1e-9)))


def best_correlation(reference: PCM, test: PCM, max_lag: int) -> tuple[float, int]:
    """The normalised correlation of ``test`` against ``reference`` at the lag in
    0..max_lag (``test`` delayed) where their cross-correlation peaks, and that lag."""
    ref = reference.astype(np.float64)
    tst = test.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(ref) + len(tst))))
    xcorr = np.fft.irfft(np.fft.rfft(tst, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[: max_lag + 1]))
    n = min(len(ref), len(tst) - lag)
    a, b = ref[:n], tst[lag : lag + n]
    denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return (float(np.sum(a * b)) / denom if denom else 0.0), lag
