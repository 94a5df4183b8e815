"""What Chrome reports about voxwire's packets: RTCP receiver reports and, when the answer
takes it, transport-wide congestion-control feedback.

    python bench/webrtc_feedback.py [--seconds 15] [--transport-cc on off]

Headless Chromium (Debian's, through Playwright with ``executable_path``) calls the echo
agent on loopback with its fake microphone saying two sentences; one call per
``--transport-cc`` setting (``on``: the answer takes Chrome's offer of transport-cc, as
by default; ``off``: ``WebRtcPeer.accept(transport_cc=False)``). During each call every
compound RTCP packet the server receives is classified by its packets' (type, count or
FMT), with whether it had the padding bit and whether aiortc's own parser
(``aiortc.rtp.RtcpPacket.parse``) refused it; the peer's counts are read at the end:
packets sent, receiver-report blocks on voxwire's stream, transport feedback packets, the
packets they reported and reported lost, and the loss figures fed to the Opus controller,
with the time from voxwire's first packet to the first of each.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def one_call(transport_cc: bool, seconds: float, wav: Path) -> dict[str, Any]:
    import aioice.ice
    from aiortc.rtp import RtcpPacket
    from bench.webrtc_barge_in import open_talk_page
    from playwright.async_api import async_playwright

    from voxwire.agents.echo import echo_handler
    from voxwire.twcc import split_rtcp
    from voxwire.webrtc import WebRtcPeer, WebRtcServer

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    accept = WebRtcPeer.accept.__func__  # type: ignore[attr-defined]

    async def accept_with(cls: type[WebRtcPeer], sdp: str, **kw: Any) -> WebRtcPeer:
        peer: WebRtcPeer = await accept(cls, sdp, transport_cc=transport_cc, **kw)
        return peer

    WebRtcPeer.accept = classmethod(accept_with)  # type: ignore[method-assign,assignment]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (apt-get install chromium)")
    kinds: Counter[tuple[tuple[int, int], ...]] = Counter()
    padded: Counter[tuple[tuple[int, int], ...]] = Counter()
    refused: Counter[tuple[tuple[int, int], ...]] = Counter()
    firsts: dict[str, float] = {}
    try:
        server = WebRtcServer(echo_handler)
        async with server.serve("127.0.0.1", 0) as url, async_playwright() as p:
            browser, page = await open_talk_page(p, chromium, wav, url)
            peer = next(iter(server.peers.values()))
            dtls = peer.pc.getTransceivers()[0].receiver.transport
            handle = dtls._handle_rtcp_data

            async def classify(data: bytes) -> None:
                parts = split_rtcp(data)
                kind = tuple((t, f) for t, f, _ in parts)
                kinds[kind] += 1
                padded[kind] += any(packet[0] & 0x20 for _, _, packet in parts)
                try:
                    RtcpPacket.parse(data)
                except ValueError:
                    refused[kind] += 1
                await handle(data)

            dtls._handle_rtcp_data = classify
            loop = asyncio.get_running_loop()
            # the browser's own RTP (SRTP removed), to see whether its sending changes
            endpoint = peer.call.endpoint
            deliver = endpoint.datagram_received
            inbound: list[tuple[float, int]] = []

            def count(data: bytes, addr: Any) -> None:
                inbound.append((loop.time(), len(data)))
                deliver(data, addr)

            endpoint.datagram_received = count  # type: ignore[method-assign]
            end = loop.time() + seconds
            sender = peer._sender
            assert sender is not None
            while loop.time() < end:
                now = loop.time()
                for name, value in (
                    ("sent", sender.sent),
                    ("report", peer.reports),
                    ("feedback", peer.transport_feedback),
                    ("figure", peer.feedback_reports),
                ):
                    if value and name not in firsts:
                        firsts[name] = now
                await asyncio.sleep(0.02)
            got = {
                "transport_cc": transport_cc,
                "answer takes it": "transport-cc" in peer.answer,
                "sent": sender.sent,
                "report blocks": peer.reports,
                "feedback": peer.transport_feedback,
                "reported": peer.twcc.reported if peer.twcc else 0,
                "lost": peer.twcc.lost if peer.twcc else 0,
                "figures": peer.feedback_reports,
                "errors": peer.feedback_errors,
                "loss": peer.control.loss if peer.control else None,
                "rtcp": dict(kinds),
                "rtcp padded": dict(+padded),
                "aiortc refused": dict(+refused),
            }
            if len(inbound) > 1:
                span = inbound[-1][0] - inbound[0][0]
                got["browser packets/s"] = round(len(inbound) / span, 1)
                got["browser kb/s"] = round(8 * sum(n for _, n in inbound) / span / 1000, 1)
            start = firsts.get("sent")
            for name in ("report", "feedback", "figure"):
                at = firsts.get(name)
                got[f"first {name} s"] = (
                    None if at is None or start is None else round(at - start, 2)
                )
            await page.click("#talk")
            await browser.close()
    finally:
        WebRtcPeer.accept = classmethod(accept)  # type: ignore[method-assign,assignment]
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--transport-cc", nargs="+", choices=["on", "off"], default=["on", "off"])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.webrtc_barge_in import barge_in_wav

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "caller.wav"
        barge_in_wav(wav, 1)
        for setting in args.transport_cc:
            got = asyncio.run(one_call(setting == "on", args.seconds, wav))
            for key, value in got.items():
                print(f"{key:>18}: {value}")
            print()


if __name__ == "__main__":
    main()
