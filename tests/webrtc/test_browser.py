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
from voxwire.aio.rtp_call import RtpCall  # noqa: E402
from voxwire.protocols.events import Audio  # noqa: E402
from voxwire.resample import Resampler  # noqa: E402
from voxwire.sim.caller import aligned_correlation  # noqa: E402
from voxwire.sim.speech import synthesize, write_wav  # noqa: E402
from voxwire.webrtc import WebRtcServer  # noqa: E402


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    )


class Recorded:
    """The call as the echo agent sees it, recording the caller audio it is given."""

    def __init__(self, call: RtpCall, into: list[np.ndarray]) -> None:
        self._call = call
        self._into = into

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __aiter__(self) -> Any:
        return self._events()

    async def _events(self) -> Any:
        async for event in self._call:
            if isinstance(event, Audio):
                self._into.append(event.pcm)
            yield event


STATS = """async () => {
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


def test_the_page_talks_to_the_echo_agent_in_chromium(tmp_path: Path) -> None:
    speech = synthesize("Hello from the browser, can you hear me?", 48000, seed=4)
    wav = tmp_path / "caller.wav"
    # Chromium loops the file from when the page asks for the microphone: silence while the
    # call connects, the speech, then silence long enough for the echo to come back
    lead, tail = np.zeros(48000 * 3 // 2, np.int16), np.zeros(48000 * 5, np.int16)
    write_wav(wav, np.concatenate([lead, speech, tail]), 48000)
    caller_audio: list[np.ndarray] = []

    async def handler(call: RtpCall) -> None:
        await echo_handler(Recorded(call, caller_audio))  # type: ignore[arg-type]

    server = WebRtcServer(handler)

    async def main() -> tuple[dict[str, Any], list[str], float]:
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
            await page.goto(url + "?raw=1")  # Chrome's own audio processing off
            await page.click("#talk")
            await page.wait_for_function("window.voxwireStatus === 'connected'", timeout=15000)
            # the echo plays in the page: the agent's level meter (an analyser node) moves
            loudest = 0.0
            for _ in range(round((1.5 + 2 * len(speech) / 48000 + 1.5) / 0.05)):
                width = await page.evaluate("parseFloat($('agent').style.width || '0')")
                loudest = max(loudest, width)
                await asyncio.sleep(0.05)
            stats = await page.evaluate(STATS)
            peers = list(server.peers)
            await page.click("#talk")  # hang up: DELETE
            await page.wait_for_function("window.voxwireStatus === 'idle'")
            for _ in range(100):
                if not server.peers:
                    break
                await asyncio.sleep(0.05)
            await browser.close()
        return stats, peers, loudest

    stats, peers, loudest = asyncio.run(asyncio.wait_for(main(), 60))
    assert len(peers) == 1
    assert server.answered == 1
    assert server.peers == {}  # the page's hang-up ended the call
    assert stats["sent"] > 100  # the page's microphone reached voxwire
    assert stats["received"] > 50, stats  # and the echo came back, encoded by voxwire
    assert stats["energy"] > 0, stats  # with sound in it
    assert loudest > 20, loudest  # the meter shows it: above -48 dBFS
    # voxwire heard the browser's fake microphone: the WAV's speech, at 16 kHz
    down = Resampler(48000, 16000)
    said = np.concatenate([down.process(speech), down.flush()])
    value, _ = aligned_correlation(said, np.concatenate(caller_audio))
    assert value > 0.5, value  # 0.96 on an idle machine; unrelated speech scores < 0.2
