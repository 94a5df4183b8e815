"""WebRTC send side over an impaired network: voxwire's Opus that follows the loss the
browser reports, against a fixed setting, heard at the page.

python bench/webrtc_adaptive.py [--seconds 30] [--seed 1] [--profiles "clean,8% random"]
    [--transport-cc off]

Debian's ``chromium`` (headless, Playwright with ``executable_path``) calls voxwire's talk
page's server (``WebRtcServer``), whose agent talks the whole call (espeak-ng sentences,
one after the other) to a silent fake microphone, so that nothing barges in, through
``voxwire.netsim``'s seeded UDP proxy as in ``bench/webrtc_impaired.py`` (the server's ICE
candidate in the answer replaced by the proxy's address, the browser's left out of the
offer). Here the proxy impairs the server's RTP towards the browser with the profile
(``reply_impairment``) and delays the browser's by 20 ms; ICE, DTLS and RTCP pass at once,
so the browser's receiver reports tell the server what its stream lost. Each profile is
one call per sender setting:

- ``adaptive``: ``WebRtcPeer.accept``'s default, ``voxwire.opus.OpusRateController`` moving
  the bit rate, the FEC strength and RED (when the browser offered ``red/48000``) with the
  reported loss;
- ``fixed``: ``adaptive=False``, 32 kb/s with FEC planned for 10% loss for the whole call.

With ``--transport-cc off`` the answer leaves transport-wide congestion control out, so the
browser's receiver reports (about one in 5 s) are the adaptive sender's only signal; by
default its transport feedback (about every 100 ms) drives it.

At the page, Chrome's ``inbound-rtp`` statistics for the agent's track, taken after the
first ``--warmup`` seconds and at the end of the call: the payload bit rate
(``bytesReceived``), the packets lost on the way, and the audio Chrome had to conceal
(``concealedSamples`` less ``silentConcealedSamples``, of ``totalSamplesReceived``): what a
listener hears missing. Chrome's decoder uses Opus in-band FEC and RED copies before it
conceals, so a lost packet that FEC or RED rebuilt is not in that share. On the server:
the browser's reports read and the encoder changes made. Needs chromium, playwright,
aiortc, opuslib and espeakng-loader.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webrtc_barge_in import open_talk_page
from webrtc_impaired import is_rtp

PROFILES: dict[str, dict[str, Any]] = {
    "clean": {"delay": 0.02},
    "2% random": {"delay": 0.02, "jitter": 0.004, "loss": 0.02},
    "8% random": {"delay": 0.02, "jitter": 0.004, "loss": 0.08},
    "bursty": {
        "delay": 0.02,
        "jitter": 0.004,
        "loss": 0.01,
        "burst_enter": 0.03,
        "burst_exit": 0.4,
        "burst_loss": 0.6,
    },
    "15% random": {"delay": 0.02, "jitter": 0.004, "loss": 0.15},
}
"""Impairment of the server's RTP towards the browser (``voxwire.netsim.Impairment``
parameters, seconds and probabilities)."""

SETTINGS: dict[str, dict[str, Any]] = {
    "adaptive": {},
    "fixed 32 kb/s, FEC for 10%": {
        "adaptive": False,
        "opus_bitrate": 32000,
        "opus_loss_percent": 10,
    },
}
"""Keyword arguments of ``WebRtcPeer.accept`` per sender setting."""

STATS = """async () => {
  for (const r of (await state.pc.getStats()).values()) {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      return {t: performance.now(), packetsReceived: r.packetsReceived || 0,
              packetsLost: r.packetsLost || 0, bytesReceived: r.bytesReceived || 0,
              concealedSamples: r.concealedSamples || 0,
              silentConcealedSamples: r.silentConcealedSamples || 0,
              totalSamplesReceived: r.totalSamplesReceived || 0,
              concealmentEvents: r.concealmentEvents || 0,
              fecPacketsReceived: r.fecPacketsReceived || 0};
    }
  }
  return null;
}"""
"""Chrome's receive statistics of the agent's audio, with the page's clock (ms)."""


@dataclass
class Result:
    """One call's figures."""

    profile: str
    setting: str
    red_offered: bool = False
    start: dict[str, float] = field(default_factory=dict)
    end: dict[str, float] = field(default_factory=dict)
    reports: int = 0
    adaptations: int = 0
    final: str = "-"
    network: Any = None

    def delta(self, key: str) -> float:
        return self.end[key] - self.start[key]

    def row(self) -> str:
        seconds = self.delta("t") / 1000
        kbps = 8 * self.delta("bytesReceived") / seconds / 1000
        got, lost = self.delta("packetsReceived"), self.delta("packetsLost")
        heard = self.delta("concealedSamples") - self.delta("silentConcealedSamples")
        total = self.delta("totalSamplesReceived")
        net = "-" if self.network is None else f"{self.network.sent} / {self.network.lost}"
        return (
            f"| {self.profile} | {self.setting} | {net} | {kbps:.1f} | "
            f"{100 * lost / max(1.0, got + lost):.2f}% | {100 * heard / max(1.0, total):.2f}% | "
            f"{self.reports} / {self.adaptations} | {self.final} |"
        )


def install(box: dict[str, Any]) -> None:
    """Route every call through a proxy that impairs the server's RTP with
    ``box["profile"]`` (seed ``box["seed"]``), answer with ``box["accept"]``'s keyword
    arguments, and keep the peer and the proxy in ``box``."""
    from voxwire.netsim import Impairment, UdpImpairmentProxy
    from voxwire.webrtc.peer import WebRtcPeer

    accept = WebRtcPeer.accept.__func__  # type: ignore[attr-defined]

    async def routed(cls: type[WebRtcPeer], offer_sdp: str, **kwargs: Any) -> WebRtcPeer:
        offer_sdp = "".join(
            line for line in offer_sdp.splitlines(keepends=True) if not line.startswith("a=cand")
        )
        peer: WebRtcPeer = await accept(cls, offer_sdp, **{**kwargs, **box["accept"]})
        found = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", peer.answer)
        if found is None:
            raise RuntimeError(f"no loopback host candidate in the answer:\n{peer.answer}")
        proxy = UdpImpairmentProxy(
            ("127.0.0.1", int(found.group(1))),
            Impairment(seed=box["seed"], delay=0.02),
            replies=True,
            only=is_rtp,
            reply_impairment=Impairment(seed=box["seed"], **box["profile"]),
        )
        _, port = await proxy.start()
        peer.answer = re.sub(
            r"(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )\d+( typ host)",
            rf"\g<1>{port}\g<2>",
            peer.answer,
        )
        box["peers"].append((peer, proxy))
        return peer

    WebRtcPeer.accept = classmethod(routed)  # type: ignore[assignment, method-assign]


def talker(speech: np.ndarray) -> Any:
    """A handler that plays ``speech`` (48 kHz) once the call starts, then reads it out."""

    async def handler(call: Any) -> None:
        from voxwire.protocols.events import CallStarted

        async for event in call:
            if isinstance(event, CallStarted):
                call.play(speech, 48000)

    return handler


async def run(
    chromium: str,
    wav: Path,
    speech: np.ndarray,
    profiles: list[str],
    seconds: float,
    warmup: float,
    seed: int,
    transport_cc: bool,
) -> list[Result]:
    import aioice.ice
    from playwright.async_api import async_playwright

    from voxwire.webrtc import WebRtcServer

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    box: dict[str, Any] = {"seed": seed, "peers": []}
    install(box)
    out: list[Result] = []
    for name in profiles:
        for setting, kwargs in SETTINGS.items():
            box.update(
                profile=PROFILES[name], accept={**kwargs, "transport_cc": transport_cc}, peers=[]
            )
            result = Result(name, setting)
            server = WebRtcServer(talker(speech))
            async with server.serve("127.0.0.1", 0) as url, async_playwright() as p:
                browser, page = await open_talk_page(p, chromium, wav, url)
                try:
                    await asyncio.sleep(warmup)
                    result.start = await page.evaluate(STATS)
                    await asyncio.sleep(seconds - warmup)
                    result.end = await page.evaluate(STATS)
                    await page.click("#talk")
                    await asyncio.sleep(0.3)
                finally:
                    await browser.close()
            if not box["peers"] or not result.start or not result.end:
                raise SystemExit(f"{name}, {setting}: the call was not made")
            peer, proxy = box["peers"][-1]
            proxy.close()
            result.network = proxy.reply_impairment.stats
            result.red_offered = peer.offer.red is not None
            result.reports, result.adaptations = peer.reports, peer.adaptations
            if peer.control is not None:
                s = peer.control.setting
                result.final = (
                    f"{s.bitrate // 1000} kb/s, FEC for {s.packet_loss_percent}%, RED {s.red_depth}"
                )
            out.append(result)
            print(f"{name}, {setting}: done", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds left out first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--transport-cc", choices=["on", "off"], default="on")
    args = parser.parse_args()
    profiles = [p.strip() for p in args.profiles.split(",")]
    for name in profiles:
        if name not in PROFILES:
            raise SystemExit(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    if not 0 < args.warmup < args.seconds:
        raise SystemExit("--warmup must be between 0 and --seconds")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    from voxwire.sim.speech import synthesize, write_wav

    sentences = [
        synthesize(text, 48000, seed=3)
        for text in (
            "Thank you for calling. Your appointment is moved to Thursday afternoon.",
            "The confirmation number is four five six, seven eight nine.",
            "If you need anything else, please stay on the line and ask me.",
            "We are open from eight in the morning until six in the evening.",
        )
    ]
    gap = np.zeros(48000 * 3 // 10, np.int16)
    one = np.concatenate([part for s in sentences for part in (s, gap)])
    speech = np.tile(one, int(np.ceil(args.seconds * 48000 / len(one))) + 1)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "silence.wav"
        write_wav(wav, np.zeros(48000, np.int16), 48000)
        results = asyncio.run(
            run(
                chromium,
                wav,
                speech,
                profiles,
                args.seconds,
                args.warmup,
                args.seed,
                args.transport_cc == "on",
            )
        )
    if results:
        print(f"browser offered red/48000: {results[0].red_offered}")
    print(
        "| downlink | sender | network: sent / lost | kb/s at the page | lost at the page "
        "| concealed at the page | reports / encoder changes | setting at the end |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        print(r.row())


if __name__ == "__main__":
    main()
