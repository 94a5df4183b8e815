"""The talk page in a real browser: Debian's headless Chromium, driven by Playwright,
calls voxwire's WebRTC server over loopback with a fake microphone playing speech, and
hears the echo agent answer. Skipped without chromium (apt) or playwright (PyPI)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="WebRTC needs the webrtc extra (aiortc)")
pytest.importorskip("opuslib", reason="voxwire's Opus path needs opuslib")
pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
playwright = pytest.importorskip("playwright.async_api", reason="needs playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("needs Chromium (apt-get install chromium)", allow_module_level=True)

import aioice.ice  # noqa: E402

from voxwire.agents.echo import echo_handler  # noqa: E402
from voxwire.sim.speech import synthesize, write_wav  # noqa: E402
from voxwire.webrtc import WebRtcServer  # noqa: E402


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    )


def test_the_page_talks_to_the_echo_agent_in_chromium(tmp_path: Path) -> None:
    speech = synthesize("Hello from the browser, can you hear me?", 48000, seed=4)
    wav = tmp_path / "caller.wav"
    # Chromium loops the file: speech, then silence long enough for the echo to come back
    write_wav(wav, np.concatenate([speech, np.zeros(48000 * 4, np.int16)]), 48000)
    server = WebRtcServer(echo_handler)

    async def main() -> tuple[dict[str, Any], list[str]]:
        async with server.serve("127.0.0.1", 0) as url, playwright.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--allow-loopback-in-peer-connection",
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    "--autoplay-policy=no-user-gesture-required",
                    "--no-sandbox",
                ],
            )
            page = await browser.new_page()
            await page.goto(url)
            await page.click("#talk")
            await page.wait_for_function("window.voxwireStatus === 'connected'", timeout=15000)
            await asyncio.sleep(len(speech) / 48000 + 3.0)
            stats = await page.evaluate(
                """async () => {
                      const out = {};
                      for (const r of (await state.pc.getStats()).values()) {
                        if (r.type === "outbound-rtp") out.sent = r.packetsSent;
                        if (r.type === "inbound-rtp") {
                          out.received = r.packetsReceived; out.lost = r.packetsLost;
                          out.energy = r.totalAudioEnergy;
                        }
                      }
                      return out;
                    }"""
            )
            peers = list(server.peers)
            await page.click("#talk")  # hang up: DELETE
            await page.wait_for_function("window.voxwireStatus === 'idle'")
            for _ in range(100):
                if not server.peers:
                    break
                await asyncio.sleep(0.05)
            await browser.close()
        return stats, peers

    stats, peers = asyncio.run(asyncio.wait_for(main(), 60))
    assert len(peers) == 1
    assert server.answered == 1
    assert server.peers == {}  # the page's hang-up ended the call
    assert stats["sent"] > 100  # the page's microphone reached voxwire
    assert stats["received"] > 50, stats  # and the echo came back, encoded by voxwire
    assert stats["energy"] > 0, stats  # with sound in it
