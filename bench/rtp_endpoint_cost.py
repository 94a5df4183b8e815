"""Per-packet CPU cost of an RTP endpoint: receive, playout tick and send, no sockets.

    python bench/rtp_endpoint_cost.py [--frames 3000] [--repeat 7]

An :class:`~voxwire.aio.rtp.RtpEndpoint` runs on a virtual clock (a stand-in loop whose
``time()`` the bench sets, a transport that counts what it is given, a pacer that hands
nothing out on its own) and is fed one PCMU stream: for each 20 ms frame the playout tick
fires, the frame's packet arrives and one frame is handed to the send path, as the pacer
would. Each call is timed in the thread's CPU time (``time.thread_time_ns``), which other
jobs on a shared machine disturb less than the wall clock; the timer's own cost is in
every figure, the same for every row. The second set of rows times the
:class:`~voxwire.protocols.rtp_session.RtpSession` alone on the same packets
(``receive``, ``pull``, ``send``): the difference is what the endpoint adds around it.
Before timing, each run checks that every frame was sent and that the received stream
was played.

The bench uses the endpoint's timer and pacer callbacks (``_tick``, ``_sent``) and its
start (``_begin``), so it runs on any tree of voxwire that has them: run it on two trees
in turn to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voxwire.aio.rtp import RtpEndpoint
from voxwire.protocols.rtp_session import RtpSession

F = 0.02
N = 160
ADDR = ("192.0.2.1", 4000)


class VirtualLoop:
    """The little of an event loop the endpoint uses: the time, and timers never run."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> VirtualLoop:
        return self

    def cancel(self) -> None:
        pass


class CountingTransport:
    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class IdlePacer:
    def open(self, stream: object, sink: object) -> None:
        pass

    def close(self, stream: object) -> None:
        pass


def stream(frames: int) -> tuple[list[np.ndarray], list[bytes]]:
    """``frames`` frames of noise at speech level and the peer's packets carrying them."""
    rng = np.random.default_rng(1)
    pcm = [rng.integers(-8000, 8000, N).astype(np.int16) for _ in range(frames)]
    peer = RtpSession("pcmu", ssrc=1, first_sequence=1, first_timestamp=0)
    return pcm, [peer.send(p) for p in pcm]


def endpoint_run(pcm: list[np.ndarray], packets: list[bytes]) -> tuple[float, float, float]:
    """Microseconds of CPU per call: receive, playout tick, send (one endpoint, one run)."""
    loop = VirtualLoop()
    transport = CountingTransport()
    ep = RtpEndpoint(RtpSession("pcmu"), remote_addr=ADDR, pacer=IdlePacer())  # type: ignore[arg-type]
    running = asyncio.get_running_loop
    asyncio.get_running_loop = lambda: loop  # type: ignore[assignment,return-value]
    try:
        ep._begin(transport)  # type: ignore[arg-type]
    finally:
        asyncio.get_running_loop = running
    clock = time.thread_time_ns
    rx = tick = tx = 0
    played = 0
    frames: Any = ep._frames
    for k, (frame, packet) in enumerate(zip(pcm, packets, strict=True)):
        loop.now = k * F
        a = clock()
        ep._tick()
        b = clock()
        tick += b - a
        played += sum(f.kind == "normal" for f in frames)
        frames.clear()
        loop.now = k * F + 0.001
        a = clock()
        ep.datagram_received(packet, ADDR)
        b = clock()
        rx += b - a
        loop.now = k * F + 0.002
        a = clock()
        ep._sent(frame)
        b = clock()
        tx += b - a
    ep.close()
    count = len(pcm)
    assert transport.sent == count, f"{transport.sent} of {count} frames sent"
    assert played > count * 0.9, f"{played} of {count} frames played"
    return rx / count / 1e3, tick / count / 1e3, tx / count / 1e3


def session_run(pcm: list[np.ndarray], packets: list[bytes]) -> tuple[float, float, float]:
    """The same calls on the session alone: receive, pull, send."""
    session = RtpSession("pcmu")
    clock = time.thread_time_ns
    rx = tick = tx = 0
    played = 0
    for k, (frame, packet) in enumerate(zip(pcm, packets, strict=True)):
        now = k * F
        a = clock()
        out = session.pull(now)
        b = clock()
        tick += b - a
        played += out.kind == "normal"
        a = clock()
        session.receive(packet, now + 0.001)
        b = clock()
        rx += b - a
        a = clock()
        session.send(frame)
        b = clock()
        tx += b - a
    count = len(pcm)
    assert played > count * 0.9, f"{played} of {count} frames played"
    return rx / count / 1e3, tick / count / 1e3, tx / count / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    pcm, packets = stream(args.frames)
    runs: dict[str, list[tuple[float, float, float]]] = {"endpoint": [], "session alone": []}
    for r in range(args.repeat):
        order = [("endpoint", endpoint_run), ("session alone", session_run)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            runs[name].append(run(pcm, packets))
    print(
        f"{args.frames} frames of PCMU per run, {args.repeat} runs, CPU us per call: "
        "best run (median run)"
    )
    print(f"{'':14s} {'receive':>17s} {'playout tick':>17s} {'send':>17s} {'per frame':>10s}")
    best: dict[str, list[float]] = {}
    for name, values in runs.items():
        columns = list(zip(*values, strict=True))
        best[name] = [min(c) for c in columns]
        cells = " ".join(f"{min(c):7.2f} ({statistics.median(c):6.2f})" for c in columns)
        print(f"{name:14s} {cells} {sum(best[name]):10.2f}")
    added = [e - s for e, s in zip(best["endpoint"], best["session alone"], strict=True)]
    print(
        f"{'endpoint adds':14s} " + " ".join(f"{a:17.2f}" for a in added) + f" {sum(added):10.2f}"
    )


if __name__ == "__main__":
    main()
