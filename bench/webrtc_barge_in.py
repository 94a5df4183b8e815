"""Barge-in at the page: how soon the agent's reply stops playing in headless Chromium
after the caller starts speaking over it.

python bench/webrtc_barge_in.py [--barge-ins 8] [--clear-tail 0,3] [--profile]

Debian's ``chromium`` (headless, driven by Playwright with ``executable_path``) opens
voxwire's talk page against a ``WebRtcServer`` running the echo agent on loopback. Its
fake microphone plays a WAV of ``--barge-ins`` rounds: a long sentence voiced nearly
all the way, a pause in which the echo of that sentence starts, a second sentence over the echo
(the barge-in), then silence while the second sentence's echo plays. In the page every
10 ms block of both tracks is read with ``MediaStreamTrackProcessor`` (``TAP``): the
microphone as the sender takes it and the reply as the page plays it, on one clock. The
barge-in time is from the microphone's onset, while the reply sounds, to the end of the
reply's last sound before it stays quiet (``barge_ins``). It includes the agent's VAD
onset, Opus both ways, the network and Chrome's jitter buffer, and the reply packets
already sent. ``--clear-tail`` runs a session per setting of the faded silence voxwire
sends at a clear (``voxwire.webrtc.peer.CLEAR_TAIL``), 0 and 3 frames by default.
Needs chromium, playwright, aiortc, opuslib and espeakng-loader.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TAP = """() => {
  // every 10 ms block of audio as the page has it, both tracks on one clock: the
  // microphone as the sender takes it and the reply as the page plays it
  // (MediaStreamTrackProcessor: the samples themselves, each block with its timestamp)
  const audio = {mic: [], agent: [], errors: []};
  window.voxwireAudio = audio;
  const tap = async (track, rows) => {
    try {
      const reader = new MediaStreamTrackProcessor({track}).readable.getReader();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        const n = value.numberOfFrames, buf = new Float32Array(n);
        value.copyTo(buf, {planeIndex: 0, format: "f32-planar"});
        let sum = 0;
        for (let i = 0; i < n; i++) sum += buf[i] * buf[i];
        rows.push([value.timestamp / 1000, performance.timeOrigin + performance.now(),
                   Math.sqrt(sum / n), 1000 * n / value.sampleRate]);
        value.close();
      }
    } catch (e) { audio.errors.push(String(e)); }
  };
  tap(state.pc.getSenders().find(s => s.track && s.track.kind === "audio").track, audio.mic);
  tap(state.pc.getReceivers().find(r => r.track.kind === "audio").track, audio.agent);
  // Chrome's jitter buffer, from getStats() every 10 ms
  const jb = [];
  window.voxwireJitter = jb;
  window.voxwireSampler = setInterval(async () => {
    for (const r of (await state.pc.getStats()).values()) {
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        jb.push([performance.timeOrigin + performance.now(), r.jitterBufferDelay || 0,
                 r.jitterBufferEmittedCount || 0, r.jitterBufferTargetDelay || 0]);
      }
    }
  }, 10);
  return true;
}"""
"""Starts recording, in ``window.voxwireAudio``, the RMS level of every block of audio
(10 ms) of both tracks, read with ``MediaStreamTrackProcessor``: ``mic`` as the sender
takes it, ``agent`` as the page plays it; rows of (block timestamp ms, epoch ms when the
page read it, RMS of full scale, block ms). Both timestamps are on one clock, so onsets and
stops compare to the sample block. ``window.voxwireJitter`` gets Chrome's running
jitterBufferDelay, jitterBufferEmittedCount and jitterBufferTargetDelay every 10 ms
(epoch ms first).

Not the levels of ``getStats()``: WebRTC's ``totalAudioEnergy`` is built from its audio
level, which is the peak of the last 11 blocks (about 110 ms), updated once per 11
blocks, the held peak then divided by four. After the reply's last sound it stays high a
block period and falls 12 dB per period, so a reply above -40 dBFS reads as sound for
200-350 ms after it stopped, and an onset reads up to a period late."""


CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
]
"""Headless Chromium for the talk page: the fake microphone (a WAV given with
``--use-file-for-fake-audio-capture``) without asking, ICE on loopback with plain IP
candidates, and audio that plays without a gesture."""


async def open_talk_page(p: Any, chromium: str, wav: Path, url: str) -> tuple[Any, Any]:
    """Launch Chromium (Playwright ``p``) with ``wav`` as its microphone, open the talk page
    at ``url`` without audio processing (``?raw=1``), press "talk" and wait for the call to
    connect; returns (browser, page). The caller closes the browser."""
    browser = await p.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
    )
    try:
        page = await browser.new_page()
        await page.goto(url + "?raw=1")
        await page.click("#talk")
        await page.wait_for_function("window.voxwireStatus === 'connected'", timeout=30000)
    except BaseException:
        await browser.close()
        raise
    return browser, page


ACTIVE = 10 ** (-40 / 20)
"""A level above -40 dBFS RMS is sound."""
QUIET_BEFORE_MS = 300.0
"""A microphone onset follows this much quiet."""
SETTLED_MS = 400.0
"""The reply has stopped when it stays quiet this long (longer than espeak's word gaps)."""


def levels(tap: dict[str, list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """The tap's two tracks as arrays of rows (start, end, RMS), times in epoch ms: each
    block's timestamp moved onto the epoch by the smallest gap seen between a block's
    timestamp and when the page read it (both tracks are on the block clock)."""
    rows = [r for key in ("mic", "agent") for r in tap[key]]
    if not rows:
        raise SystemExit(f"the page recorded no audio: {tap.get('errors')}")
    offset = min(r[1] - r[0] for r in rows)
    out = []
    for key in ("mic", "agent"):
        a = np.array([r[:4] for r in tap[key]], dtype=np.float64).reshape(-1, 4)
        start = a[:, 0] + offset
        out.append(np.stack([start, start + a[:, 3], a[:, 2]], axis=1))
    return out[0], out[1]


class Probe:
    """Server-side timestamps on the epoch clock (``time.time()``, the clock the page's
    ``performance.timeOrigin`` is on), taken by wrapping the methods each stage runs in:
    an RTP packet reaching the endpoint (after SRTP), voxwire's jitter buffer releasing a
    frame, the echo agent's VAD deciding a barge-in, the clear reaching the endpoint's
    paced queue, every reply packet handed to the DTLS transport, and the level of the
    audio each Opus packet was encoded from."""

    def __init__(self) -> None:
        import time

        from voxwire.agents.echo import Clear, EchoAgent
        from voxwire.aio.rtp import RtpEndpoint
        from voxwire.aio.rtp_call import RtpCall
        from voxwire.protocols.rtp_session import RtpSession
        from voxwire.webrtc.peer import _SrtpSender

        self.arrivals: list[tuple[float, int]] = []
        self.released: list[tuple[float, int, float]] = []
        self.decisions: list[float] = []
        self.clears: list[float] = []
        self.sent: list[tuple[float, int]] = []
        self.encoded: list[tuple[float, float]] = []
        probe = self
        received, frame, feed, clear, sendto, encode = (
            RtpEndpoint.datagram_received,
            RtpCall._frame,
            EchoAgent.feed,
            RtpCall.clear,
            _SrtpSender.sendto,
            RtpSession.send,
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
            probe.clears.append(time.time())  # before the clear's own tail is sent
            clear(self)

        def on_sendto(self: Any, data: Any, addr: Any = None) -> None:
            probe.sent.append((time.time(), int.from_bytes(bytes(data[4:8]), "big")))
            sendto(self, data, addr)

        def on_encode(self: Any, pcm: Any, *args: Any, **kwargs: Any) -> Any:
            if self.codec == "opus":
                rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) / 32768
                probe.encoded.append((time.time(), rms))
            return encode(self, pcm, *args, **kwargs)

        RtpEndpoint.datagram_received = datagram_received  # type: ignore[method-assign]
        RtpCall._frame = on_frame  # type: ignore[method-assign]
        EchoAgent.feed = on_feed  # type: ignore[method-assign]
        RtpCall.clear = on_clear  # type: ignore[method-assign]
        _SrtpSender.sendto = on_sendto  # type: ignore[method-assign]
        RtpSession.send = on_encode  # type: ignore[method-assign]

    def stages(self, onset_ms: float, stop_ms: float, rows: list[list[float]]) -> dict[str, float]:
        """One barge-in's stages, in ms from the page's microphone onset (epoch ms);
        ``rows`` are the page's ``window.voxwireJitter``."""
        t0 = onset_ms / 1000
        # the first loud frame after 300 ms of quiet ones, from just before the onset
        quiet_since = None
        released, seq = float("nan"), -1
        for when, sequence, rms in self.released:
            if rms <= ACTIVE:
                quiet_since = when if quiet_since is None else quiet_since
                continue
            if when >= t0 - 0.02 and quiet_since is not None and when - quiet_since >= 0.3:
                released, seq = when, sequence
                break
            quiet_since = None
        if seq < 0:
            return {}
        arrived = max((t for t, s in self.arrivals if s == seq and t <= released), default=released)
        decided = next((t for t in self.decisions if t >= t0 - 0.02), float("nan"))
        cleared = next((t for t in self.clears if t >= decided), float("nan"))
        before = [x for x in self.sent if x[0] <= cleared]
        tail = sum(1 for x in self.sent if cleared < x[0] <= cleared + 0.002)
        sounding = [rms for when, rms in self.encoded if cleared - 0.06 <= when <= cleared]
        last_sent, last_ts = before[-1] if before else (float("nan"), 0)
        # the talkspurt the last packet belongs to: how far its media ran ahead of the clock
        i = len(before) - 1
        while i > 0 and before[i][0] - before[i - 1][0] < 0.1:
            i -= 1
        s0, ts0 = before[i] if before else (float("nan"), 0)
        lead = ((last_ts - ts0) % 2**32) / 48000 + 0.02 - (last_sent - s0)
        t = np.array([r[0] for r in rows])
        window = (t >= onset_ms - 1000) & (t <= onset_ms)
        d, n, tgt = (np.array([r[k] for r in rows])[window] for k in (1, 2, 3))
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
            "reply level encoded in the 60 ms before the clear (dBFS)": 20
            * np.log10(max(max(sounding, default=0.0), 1e-5)),
            "packets sent by the clear (its tail)": tail,
            "Chrome jitterBufferDelay per sample": jb,
            "Chrome jitterBufferTargetDelay per sample": jbt,
        }


def barge_ins(mic: np.ndarray, agent: np.ndarray) -> list[tuple[float, float]]:
    """Per microphone onset (a block above -40 dBFS after ``QUIET_BEFORE_MS`` of quiet)
    heard over a sounding reply (half the agent's blocks in the 60 ms before it above
    -40 dBFS): the onset's time and the milliseconds from it to the end of the agent's
    last block of sound before a quiet of ``SETTLED_MS`` (or before the end of the tap).
    ``mic`` and ``agent`` are :func:`levels` rows."""
    out: list[tuple[float, float]] = []
    last_mic = -1e9
    a_start, a_end, a_loud = agent[:, 0], agent[:, 1], agent[:, 2] > ACTIVE
    for start, _, rms in mic:
        if rms <= ACTIVE:
            continue
        onset = start - last_mic > QUIET_BEFORE_MS
        last_mic = start
        if not onset:
            continue
        before = (a_end > start - 60) & (a_start < start)
        if not before.any() or a_loud[before].mean() < 0.5:
            continue
        last_sound = start
        for j in np.nonzero(a_end > start)[0]:
            if a_loud[j]:
                last_sound = a_end[j]
            elif a_start[j] - last_sound >= SETTLED_MS:
                break
        out.append((float(start), float(last_sound - start)))
    return out


def barge_in_wav(path: Path, rounds: int) -> float:
    """The fake microphone's WAV at 48 kHz; returns its length in seconds."""
    from voxwire.sim.speech import synthesize, write_wav

    # voiced nearly all the way (vowels, nasals, liquids), so the echo is sounding where
    # the caller cuts in (about a second into it), and one utterance to the agent's VAD
    # after Chrome's Opus (a sentence with a weak stretch can end early and be echoed in
    # two parts, the second over before the caller cuts in)
    long = synthesize(
        "Many men and women were lining up along the lane all morning in the rain",
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
    """One browser session of ``rounds`` barge-ins: the barge-ins heard over a reply
    (:func:`barge_ins`) and the page's jitter-buffer rows."""
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
        browser, page = await open_talk_page(p, chromium, wav, url)
        try:
            await page.evaluate(TAP)
            await asyncio.sleep(seconds - 1.5)  # the WAV began before the call was up
            tap: dict[str, list[list[float]]] = await page.evaluate("window.voxwireAudio")
            jitter: list[list[float]] = await page.evaluate("window.voxwireJitter")
            await page.click("#talk")
        finally:
            await browser.close()
    for s in stats:
        print(f"the agent: {s.utterances} utterances, {s.barge_ins} barge-ins")
    return barge_ins(*levels(tap)), jitter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--barge-ins", type=int, default=8)
    parser.add_argument(
        "--clear-tail",
        default="0,3",
        help="comma-separated frames of faded silence sent at a clear, one browser "
        "session each (voxwire.webrtc.peer.CLEAR_TAIL; default: 0 then 3, its default)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also time each stage of every barge-in"
    )
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    import voxwire.webrtc.peer

    summary = []
    for tail in (int(v) for v in args.clear_tail.split(",")):
        voxwire.webrtc.peer.CLEAR_TAIL = tail
        print(f"--- clear tail: {tail} frames")
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
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        print(f"p50 {p50:.0f} ms, p95 {p95:.0f} ms (goal 150 ms)")
        summary.append((tail, len(ms), p50, p95, ms.max()))
        if probe is not None:
            table = [probe.stages(onset, stop, rows) for onset, stop in times]
            table = [r for r in table if r]
            print(f"stages, ms from the page's microphone onset, median of {len(table)}:")
            for key in table[0] if table else []:
                values = np.array([r[key] for r in table])
                print(
                    f"| {key} | {np.nanmedian(values):.0f} | {np.nanmin(values):.0f} to "
                    f"{np.nanmax(values):.0f} |"
                )
    print("| clear tail (frames) | barge-ins | p50 (ms) | p95 (ms) | max (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for tail, n, p50, p95, top in summary:
        print(f"| {tail} | {n} | {p50:.0f} | {p95:.0f} | {top:.0f} |")


if __name__ == "__main__":
    main()
