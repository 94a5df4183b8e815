"""Barge-in at the page: how soon the agent's reply stops playing in headless Chromium
after the caller starts speaking over it.

python bench/webrtc_barge_in.py [--barge-ins 8]

Debian's ``chromium`` (headless, driven by Playwright with ``executable_path``) opens
voxwire's talk page against a ``WebRtcServer`` running the echo agent on loopback. Its
fake microphone plays a WAV of ``--barge-ins`` rounds: a long sentence, a pause in
which the echo of that sentence starts, a second sentence over the echo (the barge-in),
then silence while the second sentence's echo plays. In the page the microphone's level
as the sender takes it and the reply's level as it is played out are read from
``getStats()`` every 10 ms (``SAMPLER``); the barge-in time is from the microphone's
onset, while the reply plays, to the last sound of the reply before it stays quiet
(``barge_ins``). It includes the
agent's VAD onset, Opus both ways, the network and Chrome's jitter buffer, and the
reply packets already sent. Needs chromium, playwright, aiortc, opuslib and
espeakng-loader.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np

SAMPLER = """() => {
  // the levels as WebRTC itself accounts them: the microphone at the sender
  // (media-source) and the reply at the playout (inbound-rtp), from the running sums of
  // energy and duration, read every 10 ms
  const rows = [], last = {};
  const level = (r, key) => {
    const prev = last[key] || [r.totalAudioEnergy, r.totalSamplesDuration];
    last[key] = [r.totalAudioEnergy, r.totalSamplesDuration];
    const d = r.totalSamplesDuration - prev[1];
    return d > 0 ? Math.sqrt((r.totalAudioEnergy - prev[0]) / d) : 0;
  };
  window.voxwireLevels = rows;
  window.voxwireSampler = setInterval(async () => {
    let mic = 0, agent = 0;
    for (const r of (await state.pc.getStats()).values()) {
      if (r.type === "media-source" && r.kind === "audio") mic = level(r, "mic");
      if (r.type === "inbound-rtp" && r.kind === "audio") agent = level(r, "agent");
    }
    rows.push([performance.now(), mic, agent]);
  }, 10);
  return true;
}"""
"""Starts sampling both tracks' levels into ``window.voxwireLevels``: rows of (ms, mic
RMS, agent RMS) since the previous row, from ``getStats()``: the microphone as the
sender takes it (``media-source``) and the reply as it is played out (``inbound-rtp``),
both from WebRTC's own sums of energy and duration, so both at the same place in the
page (an analyser node on the local track lags it by its own buffering)."""

ACTIVE = 10 ** (-40 / 20)
"""A level above -40 dBFS RMS is sound."""
QUIET_BEFORE_MS = 300.0
"""A microphone onset follows this much quiet."""
SETTLED_MS = 400.0
"""The reply has stopped when it stays quiet this long (longer than espeak's word gaps)."""


def barge_ins(rows: list[list[float]]) -> list[tuple[float, float]]:
    """Per microphone onset heard while the agent was playing (agent sound in the 60 ms
    before it): the onset's time and the milliseconds from it to the end of the agent's
    last sound before a quiet of ``SETTLED_MS`` (or before the end of the rows)."""
    t = np.array([r[0] for r in rows])
    mic = np.array([r[1] for r in rows]) > ACTIVE
    agent = np.array([r[2] for r in rows]) > ACTIVE
    out: list[tuple[float, float]] = []
    last_mic = -1e9
    for i in range(len(t)):
        if not mic[i]:
            continue
        onset = t[i] - last_mic > QUIET_BEFORE_MS
        last_mic = t[i]
        if not onset:
            continue
        before = (t >= t[i] - 60) & (t <= t[i])
        if not agent[before].any():
            continue
        last_sound = t[i]
        for j in range(i, len(t)):
            if agent[j]:
                last_sound = t[j]
            elif t[j] - last_sound >= SETTLED_MS:
                break
        out.append((float(t[i]), float(last_sound - t[i])))
    return out


def barge_in_wav(path: Path, rounds: int) -> float:
    """The fake microphone's WAV at 48 kHz; returns its length in seconds."""
    from voxwire.sim.speech import synthesize, write_wav

    long = synthesize(
        "Please tell me about the opening hours of the shop on the main street",
        48000,
        seed=4,
    )
    over = synthesize("Sorry to stop you there but I have a question", 48000, seed=2)

    def silence(s: float) -> np.ndarray:
        return np.zeros(round(48000 * s), np.int16)

    parts = [silence(2.0)]
    for _ in range(rounds):
        # the echo of ``long`` starts about 0.3 s after it ends: speak about 1 s into it
        parts += [long, silence(1.2), over, silence(len(over) / 48000 + 2.5)]
    pcm = np.concatenate(parts)
    write_wav(path, pcm, 48000)
    return len(pcm) / 48000


async def run(rounds: int, chromium: str, workdir: Path) -> list[tuple[float, float]]:
    import aioice.ice
    from playwright.async_api import async_playwright

    from voxwire.agents.echo import EchoStats, echo_handler
    from voxwire.aio.rtp_call import RtpCall
    from voxwire.webrtc import WebRtcServer

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    wav = workdir / "barge.wav"
    seconds = barge_in_wav(wav, rounds)
    stats: list[EchoStats] = []

    async def handler(call: RtpCall) -> None:
        await echo_handler(call, on_end=lambda _call, s: stats.append(s))

    server = WebRtcServer(handler)
    async with server.serve("127.0.0.1", 0) as url, async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium,
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
        try:
            page = await browser.new_page()
            await page.goto(url + "?raw=1")
            await page.click("#talk")
            await page.wait_for_function("window.voxwireStatus === 'connected'", timeout=20000)
            await page.evaluate(SAMPLER)
            await asyncio.sleep(seconds - 1.5)  # the WAV began before the call was up
            rows: list[list[float]] = await page.evaluate("window.voxwireLevels")
            await page.click("#talk")
        finally:
            await browser.close()
    for s in stats:
        print(f"the agent: {s.utterances} utterances, {s.barge_ins} barge-ins")
    return barge_ins(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--barge-ins", type=int, default=8)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        times = asyncio.run(run(args.barge_ins, chromium, Path(tmp)))
    if not times:
        raise SystemExit("no barge-in was heard over a reply")
    ms = np.array([stop for _, stop in times])
    print(f"barge-ins heard over a reply: {len(ms)} of {args.barge_ins}")
    print(
        "reply stopped at the page after the caller's onset (ms): "
        + ", ".join(f"{v:.0f}" for v in ms)
    )
    print(f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms (goal 150 ms)")


if __name__ == "__main__":
    main()
