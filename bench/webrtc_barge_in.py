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
from typing import Any

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
    let mic = 0, agent = 0, jb = {d: 0, n: 0, t: 0};
    for (const r of (await state.pc.getStats()).values()) {
      if (r.type === "media-source" && r.kind === "audio") mic = level(r, "mic");
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        agent = level(r, "agent");
        jb = {d: r.jitterBufferDelay || 0, n: r.jitterBufferEmittedCount || 0,
              t: r.jitterBufferTargetDelay || 0};
      }
    }
    rows.push([performance.timeOrigin + performance.now(), mic, agent, jb.d, jb.n, jb.t]);
  }, 10);
  return true;
}"""
"""Starts sampling both tracks' levels into ``window.voxwireLevels``: rows of (epoch ms,
mic RMS, agent RMS, then Chrome's running jitterBufferDelay, jitterBufferEmittedCount and
jitterBufferTargetDelay) since the previous row, from ``getStats()``: the microphone as the
sender takes it (``media-source``) and the reply as it is played out (``inbound-rtp``),
both from WebRTC's own sums of energy and duration, so both at the same place in the
page (an analyser node on the local track lags it by its own buffering)."""

ACTIVE = 10 ** (-40 / 20)
"""A level above -40 dBFS RMS is sound."""
QUIET_BEFORE_MS = 300.0
"""A microphone onset follows this much quiet."""
SETTLED_MS = 400.0
"""The reply has stopped when it stays quiet this long (longer than espeak's word gaps)."""


class Probe:
    """Server-side timestamps on the epoch clock (``time.time()``, the clock the page's
    ``performance.timeOrigin`` is on), taken by wrapping the methods each stage runs in:
    an RTP packet reaching the endpoint (after SRTP), voxwire's jitter buffer releasing a
    frame, the echo agent's VAD deciding a barge-in, the clear reaching the endpoint's
    paced queue, and every reply packet handed to the DTLS transport."""

    def __init__(self) -> None:
        import time

        from voxwire.agents.echo import Clear, EchoAgent
        from voxwire.aio.rtp import RtpEndpoint
        from voxwire.aio.rtp_call import RtpCall
        from voxwire.webrtc.peer import _SrtpSender

        self.arrivals: list[tuple[float, int]] = []
        self.released: list[tuple[float, int, float]] = []
        self.decisions: list[float] = []
        self.clears: list[float] = []
        self.sent: list[tuple[float, int]] = []
        probe = self
        received, frame, feed, clear, sendto = (
            RtpEndpoint.datagram_received,
            RtpCall._frame,
            EchoAgent.feed,
            RtpCall.clear,
            _SrtpSender.sendto,
        )

        def datagram_received(self: Any, data: bytes, addr: Any) -> None:
            probe.arrivals.append((time.time(), int.from_bytes(data[2:4], "big")))
            received(self, data, addr)

        def on_frame(self: Any, f: Any) -> None:
            rms = float(np.sqrt(np.mean(f.pcm.astype(np.float64) ** 2))) / 32768
            probe.released.append((time.time(), f.sequence, rms))
            frame(self, f)

        def on_feed(self: Any, pcm: Any) -> Any:
            actions = feed(self, pcm)
            if any(isinstance(a, Clear) for a in actions):
                probe.decisions.append(time.time())
            return actions

        def on_clear(self: Any) -> None:
            clear(self)
            probe.clears.append(time.time())

        def on_sendto(self: Any, data: Any, addr: Any = None) -> None:
            probe.sent.append((time.time(), int.from_bytes(bytes(data[4:8]), "big")))
            sendto(self, data, addr)

        RtpEndpoint.datagram_received = datagram_received  # type: ignore[method-assign]
        RtpCall._frame = on_frame  # type: ignore[method-assign]
        EchoAgent.feed = on_feed  # type: ignore[method-assign]
        RtpCall.clear = on_clear  # type: ignore[method-assign]
        _SrtpSender.sendto = on_sendto  # type: ignore[method-assign]

    def stages(self, onset_ms: float, stop_ms: float, rows: list[list[float]]) -> dict[str, float]:
        """One barge-in's stages, in ms from the page's microphone onset (epoch ms)."""
        t0 = onset_ms / 1000
        # the page's level lags the sender by up to a sampling window: look from 100 ms
        # before its onset for the first loud frame after 300 ms of quiet ones
        quiet_since = None
        released, seq = float("nan"), -1
        for when, sequence, rms in self.released:
            if rms <= ACTIVE:
                quiet_since = when if quiet_since is None else quiet_since
                continue
            if when >= t0 - 0.1 and quiet_since is not None and when - quiet_since >= 0.3:
                released, seq = when, sequence
                break
            quiet_since = None
        if seq < 0:
            return {}
        arrived = max((t for t, s in self.arrivals if s == seq and t <= released), default=released)
        decided = next((t for t in self.decisions if t >= t0 - 0.1), float("nan"))
        cleared = next((t for t in self.clears if t >= decided), float("nan"))
        before = [x for x in self.sent if x[0] <= cleared]
        last_sent, last_ts = before[-1] if before else (float("nan"), 0)
        # the talkspurt the last packet belongs to: how far its media ran ahead of the clock
        i = len(before) - 1
        while i > 0 and before[i][0] - before[i - 1][0] < 0.1:
            i -= 1
        s0, ts0 = before[i] if before else (float("nan"), 0)
        lead = ((last_ts - ts0) % 2**32) / 48000 + 0.02 - (last_sent - s0)
        t = np.array([r[0] for r in rows])
        window = (t >= onset_ms - 1000) & (t <= onset_ms)
        d, n, tgt = (np.array([r[k] for r in rows])[window] for k in (3, 4, 5))
        emitted = n[-1] - n[0] if len(n) else 0
        jb = 1000 * (d[-1] - d[0]) / emitted if emitted else float("nan")
        jbt = 1000 * (tgt[-1] - tgt[0]) / emitted if emitted else float("nan")
        ms = lambda x: 1000 * x - onset_ms  # noqa: E731
        return {
            "onset packet at the server": ms(arrived),
            "released by voxwire's jitter buffer": ms(released),
            "VAD barge-in decision (Clear)": ms(decided),
            "clear at the paced queue": ms(cleared),
            "last reply packet sent": ms(last_sent),
            "last reply sound at the page": stop_ms,
            "send-ahead lead of the last packet": 1000 * lead,
            "Chrome jitterBufferDelay per sample": jb,
            "Chrome jitterBufferTargetDelay per sample": jbt,
        }


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


async def run(
    rounds: int, chromium: str, workdir: Path, probe: Probe | None = None
) -> tuple[list[tuple[float, float]], list[list[float]]]:
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
    return barge_ins(rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--barge-ins", type=int, default=8)
    parser.add_argument(
        "--profile", action="store_true", help="also time each stage of every barge-in"
    )
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Probe() if args.profile else None
        times, rows = asyncio.run(run(args.barge_ins, chromium, Path(tmp), probe))
    if not times:
        raise SystemExit("no barge-in was heard over a reply")
    ms = np.array([stop for _, stop in times])
    print(f"barge-ins heard over a reply: {len(ms)} of {args.barge_ins}")
    print(
        "reply stopped at the page after the caller's onset (ms): "
        + ", ".join(f"{v:.0f}" for v in ms)
    )
    print(f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms (goal 150 ms)")
    if probe is not None:
        table = [probe.stages(onset, stop, rows) for onset, stop in times]
        table = [r for r in table if r]
        print(f"stages, ms from the page's microphone onset, median of {len(table)}:")
        for key in table[0] if table else []:
            values = np.array([r[key] for r in table])
            print(
                f"| {key} | {np.nanmedian(values):.0f} | {np.nanmin(values):.0f}-"
                f"{np.nanmax(values):.0f} |"
            )


if __name__ == "__main__":
    main()
