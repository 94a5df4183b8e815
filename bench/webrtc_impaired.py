"""WebRTC over an impaired network: the delay and the loss of voxwire's receive path
against aiortc's stock one, on the same packets from headless Chromium.

python bench/webrtc_impaired.py [--seconds 20] [--seed 1] [--profiles "bursty loss,mobile"]

Debian's ``chromium`` (headless, Playwright with ``executable_path``) calls voxwire's talk
page's server (``WebRtcServer``, the echo agent) with its fake microphone talking. Between
the two runs ``voxwire.netsim``'s seeded UDP proxy: the server's ICE candidate in the
answer is replaced by the proxy's address and the browser's candidates are left out of the
offer, so every packet of the call goes through it; it impairs the browser's RTP towards
the server with the profile (delay, jitter, loss, bursts, reordering, duplicates) and
relays the rest (ICE, DTLS, RTCP, the server's packets) at once. Each profile is one call.

On the server every RTP packet, once SRTP-unprotected, goes both to the call (voxwire's
jitter buffer with FEC and concealment, on its playout clock) and to aiortc's stock receive
path run beside it: ``aiortc.jitterbuffer.JitterBuffer(capacity=16, prefetch=4)`` as
``RTCRtpReceiver`` runs it for audio, each packet added on arrival, the frames it releases
queued for a reader that takes one every 20 ms (a real-time consumer of the track). For
each frame the browser sent (the proxy records when each RTP packet entered it, before the
impairment) the bench notes when each path played it (for voxwire, when the audio of
its unit starts: with time-stretching that can be inside a 20 ms frame that begins with
the rest of the frame before): delay is that time less the send time (the network and the
receive buffer: mouth-to-ear less the browser's capture and encoding, the same for both),
frame loss the share of sent frames a path never played. The heard loss (the last
column) counts only the frames that carried sound (decoded on the side, above
``TALK_DBFS``; a frame the server never received counts as sound): a frame of silence
skipped to bring the delay down is not heard missing. The first 2 s and the last 1 s of
each call are left out. Needs chromium, playwright, aiortc, opuslib and espeakng-loader.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webrtc_barge_in import open_talk_page

PROFILES: dict[str, dict[str, Any]] = {
    "clean LAN": {"delay": 0.002},
    "broadband": {"delay": 0.02, "jitter": 0.008, "correlation": 0.5, "loss": 0.005},
    "bursty loss": {
        "delay": 0.03,
        "jitter": 0.005,
        "loss": 0.01,
        "burst_enter": 0.03,
        "burst_exit": 0.4,
        "burst_loss": 0.6,
    },
    "reordering and duplicates": {
        "delay": 0.03,
        "jitter": 0.006,
        "reorder": 0.05,
        "reorder_delay": 0.04,
        "duplicate": 0.03,
    },
    "mobile": {
        "delay": 0.05,
        "jitter": 0.02,
        "heavy_tail": True,
        "correlation": 0.7,
        "loss": 0.02,
    },
}
"""Impairment of the browser's RTP towards the server (``voxwire.netsim.Impairment``
parameters, seconds and probabilities)."""

TALK_DBFS = -50.0
"""A frame above this RMS level (dB of full scale) carries sound; below it, a skipped
frame is silence skipped, which no listener hears as lost."""
WARMUP_S = 2.0
COOLDOWN_S = 1.0
FRAME_S = 0.02


def is_rtp(data: bytes) -> bool:
    """RTP rather than STUN, DTLS or RTCP (RFC 7983's first byte, RFC 5761's types)."""
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223


@dataclass
class Call:
    """One call's records, all on the event loop's clock."""

    sent: dict[int, float] = field(default_factory=dict)
    """RTP timestamp -> when its packet entered the proxy (the first copy)."""
    payload_type: int | None = None
    voxwire: dict[int, float] = field(default_factory=dict)
    """RTP timestamp -> when voxwire's playout played it (normal or FEC)."""
    aiortc: dict[int, float] = field(default_factory=dict)
    """RTP timestamp -> when aiortc's reader took it."""
    fec: int = 0
    """Frames voxwire rebuilt from the next packet's in-band FEC."""
    payloads: dict[int, bytes] = field(default_factory=dict)
    """RTP timestamp -> the Opus payload the server received (the first copy)."""

    def talk(self) -> set[int]:
        """The frames sent that carried sound: decoded in order by a decoder of their own,
        above ``TALK_DBFS``, and every frame the server never received (its sound is not
        known: counted as talk, for both paths alike)."""
        from voxwire.opus import OpusDecoder

        decoder = OpusDecoder(48000)
        out = {ts for ts in self.sent if ts not in self.payloads}
        for ts in sorted(self.payloads):
            pcm = decoder.decode(self.payloads[ts]).astype(np.float64)
            if len(pcm) and np.mean(pcm * pcm) > (32768.0**2) * 10 ** (TALK_DBFS / 10):
                out.add(ts)
        return out


class AiortcPath:
    """aiortc's stock audio receive path on the same packets: its JitterBuffer as
    ``RTCRtpReceiver`` configures and feeds it, and a reader taking one released frame
    every 20 ms from the first release."""

    def __init__(self, call: Call, payload_type: int) -> None:
        from aiortc.jitterbuffer import JitterBuffer

        self.call = call
        self.payload_type = payload_type
        self.jb = JitterBuffer(capacity=16, prefetch=4)
        self.queue: deque[int] = deque()
        self._tick: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def add(self, data: bytes) -> None:
        from aiortc.rtp import RtpPacket

        packet = RtpPacket.parse(data)
        if packet.payload_type != self.payload_type:
            return
        packet._data = packet.payload  # as RTCRtpReceiver does (Opus depayloads as is)
        _, frame = self.jb.add(packet)
        if frame is None:
            return
        self.queue.append(frame.timestamp)
        if self._tick is None:
            loop = asyncio.get_running_loop()
            self._tick = loop.time()
            self._read()

    def _read(self) -> None:
        loop = asyncio.get_running_loop()
        if self.queue:
            self.call.aiortc.setdefault(self.queue.popleft(), loop.time())
        assert self._tick is not None
        self._tick += FRAME_S
        self._handle = loop.call_at(self._tick, self._read)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


@dataclass
class Setting:
    """The impairment the next call gets, and the calls made so far."""

    profile: dict[str, Any]
    seed: int
    calls: list[Call] = field(default_factory=list)


def install(setting: Setting) -> None:
    """Route every call through a recording impairment proxy with ``setting``'s
    impairment, and tap both receive paths."""
    from voxwire.aio.rtp_call import RtpCall
    from voxwire.netsim import Impairment, UdpImpairmentProxy
    from voxwire.rtp import parse_rtp
    from voxwire.webrtc.peer import WebRtcPeer

    class RecordingProxy(UdpImpairmentProxy):
        def __init__(self, call: Call, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.call = call

        def _forward(self, data: bytes) -> None:
            if is_rtp(data) and (data[1] & 0x7F) == self.call.payload_type:
                ts = int.from_bytes(data[4:8], "big")
                self.call.sent.setdefault(ts, asyncio.get_running_loop().time())
            super()._forward(data)

    accept = WebRtcPeer.accept.__func__  # type: ignore[attr-defined]

    async def routed(cls: type[WebRtcPeer], offer_sdp: str, **kwargs: Any) -> WebRtcPeer:
        offer_sdp = "".join(
            line for line in offer_sdp.splitlines(keepends=True) if not line.startswith("a=cand")
        )
        peer: WebRtcPeer = await accept(cls, offer_sdp, **kwargs)
        found = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", peer.answer)
        if found is None:
            raise RuntimeError(f"no loopback host candidate in the answer:\n{peer.answer}")
        call = Call(payload_type=peer.offer.opus)
        setting.calls.append(call)
        proxy = RecordingProxy(
            call,
            ("127.0.0.1", int(found.group(1))),
            Impairment(seed=setting.seed, **setting.profile),
            replies=True,
            only=lambda d: is_rtp(d) and (d[1] & 0x7F) == call.payload_type,
        )
        _, port = await proxy.start()
        peer.answer = re.sub(
            r"(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )\d+( typ host)",
            rf"\g<1>{port}\g<2>",
            peer.answer,
        )
        shadow = AiortcPath(call, peer.offer.opus)
        endpoint = peer.call.endpoint
        received = endpoint.datagram_received

        def both(data: bytes, addr: Any) -> None:
            if is_rtp(data) and (data[1] & 0x7F) == call.payload_type:
                packet = parse_rtp(data)
                call.payloads.setdefault(packet.timestamp, bytes(packet.payload))
            shadow.add(data)
            received(data, addr)

        endpoint.datagram_received = both  # type: ignore[method-assign]
        peer.call._bench = (proxy, shadow)  # type: ignore[attr-defined]
        return peer

    WebRtcPeer.accept = classmethod(routed)  # type: ignore[assignment, method-assign]

    frame = RtpCall._frame

    def played(self: Any, f: Any) -> None:
        # Every unit whose audio starts in this frame, at the time its audio starts: with
        # time-stretching a frame may begin with the rest of one shortened before it, and
        # the frame after that one then starts inside it (its timestamp is not the frame's).
        if setting.calls:
            call = setting.calls[-1]
            now = asyncio.get_running_loop().time()
            rate = self.session.sample_rate
            for unit, offset in self.session.pulled_units:
                if unit.kind in ("normal", "fec"):
                    call.voxwire.setdefault(unit.timestamp, now + offset / rate)
                    call.fec += unit.kind == "fec"
        frame(self, f)

    RtpCall._frame = played  # type: ignore[method-assign]


def score(
    call: Call, path: dict[int, float], only: set[int] | None = None
) -> tuple[float, float, float, float, int]:
    """(mean delay ms, p50, p95, frames never played %, frames) over the call's scored window (of
    the frames in ``only``, if given)."""
    if not call.sent:
        return (float("nan"),) * 4 + (0,)  # type: ignore[return-value]
    first, last = min(call.sent.values()), max(call.sent.values())
    window = [
        ts
        for ts, t in call.sent.items()
        if first + WARMUP_S <= t <= last - COOLDOWN_S and (only is None or ts in only)
    ]
    delays = np.array([1000 * (path[ts] - call.sent[ts]) for ts in window if ts in path])
    lost = 100 * (1 - len(delays) / len(window)) if window else float("nan")
    if len(delays) == 0:
        return float("nan"), float("nan"), float("nan"), lost, len(window)
    return (
        float(delays.mean()),
        float(np.percentile(delays, 50)),
        float(np.percentile(delays, 95)),
        lost,
        len(window),
    )


async def run(
    chromium: str, wav: Path, profiles: list[str], seconds: float, seed: int
) -> list[tuple[str, Call, Any]]:
    import aioice.ice
    from playwright.async_api import async_playwright

    from voxwire.agents.echo import echo_handler
    from voxwire.webrtc import WebRtcServer

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    out: list[tuple[str, Call, Any]] = []
    setting = Setting(PROFILES[profiles[0]], seed)
    install(setting)
    for name in profiles:
        setting.profile = PROFILES[name]
        setting.calls.clear()
        server = WebRtcServer(echo_handler)
        async with server.serve("127.0.0.1", 0) as url, async_playwright() as p:
            browser, page = await open_talk_page(p, chromium, wav, url)
            try:
                await asyncio.sleep(seconds)
                peers = list(server.peers.values())
                await page.click("#talk")
                await asyncio.sleep(0.3)
            finally:
                await browser.close()
        calls = setting.calls
        if not calls:
            raise SystemExit(f"{name}: the call was not made")
        bench = [getattr(p.call, "_bench", None) for p in peers]
        stats = None
        for item in bench:
            if item is not None:
                item[0].close()
                item[1].close()
                stats = item[0].impairment.stats
        out.append((name, calls[-1], stats))
        print(f"{name}: {len(calls[-1].sent)} packets sent", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args()
    profiles = [p.strip() for p in args.profiles.split(",")]
    for name in profiles:
        if name not in PROFILES:
            raise SystemExit(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    from voxwire.sim.speech import synthesize, write_wav

    speech = [
        synthesize(text, 48000, seed=3)
        for text in (
            "Hello, I would like to move my appointment to Thursday afternoon please",
            "The number is four five six, seven eight nine, and the name is Taylor",
        )
    ]
    gap = np.zeros(48000 // 2, np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "caller.wav"
        write_wav(wav, np.concatenate([speech[0], gap, speech[1], gap]), 48000)
        results = asyncio.run(run(chromium, wav, profiles, args.seconds, args.seed))
    print(
        "| profile | network: sent / lost / reordered / duplicated | frames scored "
        "| voxwire delay mean / p50 / p95 (ms) | voxwire frames never played (rebuilt from FEC) "
        "| aiortc delay mean / p50 / p95 (ms) | aiortc frames never played "
        "| heard loss, frames with sound never played: voxwire / aiortc |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, call, stats in results:
        v, a = score(call, call.voxwire), score(call, call.aiortc)
        talk = call.talk()
        vt, at = score(call, call.voxwire, talk), score(call, call.aiortc, talk)
        net = (
            f"{stats.sent} / {stats.lost} / {stats.reordered} / {stats.duplicated}"
            if stats is not None
            else "-"
        )
        print(
            f"| {name} | {net} | {v[4]} | {v[0]:.0f} / {v[1]:.0f} / {v[2]:.0f} | "
            f"{v[3]:.2f}% ({call.fec}) | {a[0]:.0f} / {a[1]:.0f} / {a[2]:.0f} | {a[3]:.2f}% | "
            f"{vt[3]:.2f}% / {at[3]:.2f}% of {vt[4]} |"
        )


if __name__ == "__main__":
    main()
