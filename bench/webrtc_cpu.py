"""CPU per WebRTC call beside the WebSocket echo path, in one run.

python bench/webrtc_cpu.py [--calls 8] [--rounds 2]

Two servers, each in a child process of its own running the echo agent on loopback:
voxwire's ``WebRtcServer`` (aiortc for ICE, DTLS and SRTP; voxwire's jitter buffer, Opus
decoder and encoder), and voxwire's Twilio Media Streams WebSocket server
(``voxwire.agents.server.serve_echo``, 8 kHz µ-law). Against each, ``--calls`` calls at
once say a sentence, hear it echoed, and hang up: aiortc peer connections sending Opus
(48 kHz, 20 ms) for WebRTC, voxwire's simulated caller (``voxwire.sim``) for the
WebSocket. The figure is the server process's CPU time (user + system, all threads, from
/proc) over the calls, divided by the sum of the calls' durations: CPU seconds per
call-second. It is CPU time, not wall time, so other load on the machine changes it
little; the callers run in this process and are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

RATE, FRAME = 48000, 960
SAY = "Testing the voxwire echo line, one two three."


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(kind: str) -> None:
    """The child: one server, its URL on stdout, until stdin closes."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), stop.set)
        if kind == "webrtc":
            import aioice.ice

            from voxwire.agents.echo import echo_handler
            from voxwire.webrtc import WebRtcServer

            # ICE on loopback: aioice leaves 127.0.0.1 out of its host addresses
            aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
            async with WebRtcServer(echo_handler, max_sessions=1000).serve("127.0.0.1", 0) as url:
                print(url, flush=True)
                await stop.wait()
        else:
            from voxwire.agents.server import serve_echo

            await serve_echo(
                "twilio", "127.0.0.1", 0, stop=stop, ready=lambda u: print(u, flush=True)
            )

    asyncio.run(main())


async def webrtc_call(url: str, pcm: np.ndarray) -> float:
    """One aiortc peer: send ``pcm`` in real time, receive the echo, hang up; seconds."""
    import aiohttp
    import av
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    class Mic(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.pos = 0
            self.t0 = time.monotonic()

        async def recv(self) -> Any:
            await asyncio.sleep(max(0.0, self.t0 + self.pos / RATE - time.monotonic()))
            chunk = pcm[self.pos : self.pos + FRAME]
            if len(chunk) < FRAME:
                chunk = np.zeros(FRAME, np.int16)
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, self.pos
            frame.time_base = fractions.Fraction(1, RATE)
            self.pos += FRAME
            return frame

    pc = RTCPeerConnection()
    pc.addTrack(Mic())
    readers: list[asyncio.Task[None]] = []

    async def read(track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    pc.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
    await pc.setLocalDescription(await pc.createOffer())
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "whip",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"WHIP offer refused: {resp.status} {await resp.text()}")
            location = resp.headers["Location"]
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(len(pcm) / RATE)  # the sentence, then its echo
        async with http.delete(url.rstrip("/") + location):
            pass
    elapsed = time.monotonic() - t0
    await pc.close()
    for task in readers:
        task.cancel()
    return elapsed


async def ws_call(url: str) -> float:
    from voxwire.sim import CallPlan, place_call, synthesize

    t0 = time.monotonic()
    await asyncio.wait_for(place_call(url, "twilio", CallPlan(synthesize(SAY, 8000))), 60)
    return time.monotonic() - t0


async def measure(kind: str, calls: int, rounds: int) -> tuple[float, float, int]:
    """(server CPU seconds, call-seconds, calls) over ``rounds`` of ``calls`` at once."""
    from voxwire.sim import synthesize

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        said = synthesize(SAY, RATE)
        pcm = np.concatenate(
            [np.zeros(RATE // 2, np.int16), said, np.zeros(len(said) + RATE, np.int16)]
        )
        cpu, seconds, done = 0.0, 0.0, 0
        for _ in range(rounds):
            c0 = process_cpu(proc.pid)
            if kind == "webrtc":
                durations = await asyncio.gather(*(webrtc_call(url, pcm) for _ in range(calls)))
            else:
                durations = await asyncio.gather(*(ws_call(url) for _ in range(calls)))
            await asyncio.sleep(0.5)  # the calls' ends
            cpu += process_cpu(proc.pid) - c0
            seconds += sum(durations)
            done += len(durations)
        return cpu, seconds, done
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=("webrtc", "ws"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rows = {k: asyncio.run(measure(k, args.calls, args.rounds)) for k in ("webrtc", "ws")}
    print(f"{args.calls} concurrent echo calls x {args.rounds} rounds, server process CPU time")
    print("| transport | calls | call-seconds | CPU s | CPU s per call-second |")
    print("| --- | ---: | ---: | ---: | ---: |")
    per = {}
    for kind, (cpu, seconds, done) in rows.items():
        per[kind] = cpu / seconds
        name = "WebRTC (aiortc + voxwire media)" if kind == "webrtc" else "WebSocket (Twilio)"
        print(f"| {name} | {done} | {seconds:.1f} | {cpu:.2f} | {per[kind]:.4f} |")
    print(f"WebRTC / WebSocket: {per['webrtc'] / per['ws']:.1f}x")


if __name__ == "__main__":
    main()
