"""Per-message cost of a call's session glue: messages through ``run_call``, no sockets.

    python bench/session_cost.py [--messages 100000] [--repeat 3] [--baseline] [--cpu]
                                 [--outbound]

A fake transport hands out queued Twilio media messages (20 ms of mu-law each) and the
handler iterates the call's events doing nothing, so what is timed is the read loop, the
limits, the codec's receive and the event queue. ``--outbound`` times the other direction
instead: after the start message, ``--messages`` 20 ms frames are handed to the call's
pacer sink one by one (what the pacer does when each falls due, without waiting for it),
and each is encoded by the codec, queued and written to the fake transport. ``--baseline``
times the codec's ``receive`` alone over the same messages: the difference is what the
session adds. Every ``recv`` yields to the event loop once, as a real socket read does.
``--cpu`` times the process's CPU time (user + system) instead of the wall clock, which
other jobs on a shared machine disturb less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import resource
import time
from collections.abc import Callable

import numpy as np

from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.pacing import PacedItem, PacedStream
from voxwire.protocols.twilio import TwilioCodec

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def messages(count: int) -> list[str]:
    """A Twilio start message and ``count`` media messages."""
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC0123456789abcdef0123456789abcdef",
            "streamSid": SID,
            "callSid": "CA362b4a5ea1be6d9c3d1c4a8cb0b2d6f5",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {},
        },
        "streamSid": SID,
    }
    payload = base64.b64encode(bytes(range(96, 256))).decode()
    out = [json.dumps(start)]
    for i in range(count):
        media = {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20)}
        media["payload"] = payload
        out.append(
            json.dumps(
                {"event": "media", "sequenceNumber": str(i + 2), "media": media, "streamSid": SID}
            )
        )
    return out


class QueuedTransport:
    """Returns the queued messages one by one, then ends the stream."""

    def __init__(self, queued: list[str]) -> None:
        self._queued = iter(queued)

    async def recv(self) -> str | bytes:
        await asyncio.sleep(0)
        for message in self._queued:
            return message
        raise ConnectionClosed(None, "end of the queued messages")

    async def send(self, message: str | bytes) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


def unlimited() -> Limits:
    """Limits that let the whole queue through at once (only the fields this tree has)."""
    names = {f.name for f in dataclasses.fields(Limits)}
    wanted: dict[str, float] = {
        "max_messages_per_second": 1e12,
        "max_audio_burst": 1e12,
        "max_audio_rate": 1e12,
        "idle_timeout": 60.0,
    }
    return Limits(**{k: v for k, v in wanted.items() if k in names})  # type: ignore[arg-type]


async def noop(call: Call) -> None:
    async for _ in call:
        pass


def cpu_time() -> float:
    """The process's user + system CPU seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(queued: list[str], clock: Callable[[], float] = time.perf_counter) -> float:
    pacer = Pacer()
    start = clock()
    call = await run_call(
        TwilioCodec(), QueuedTransport(queued), noop, pacer=pacer, limits=unlimited()
    )
    elapsed = clock() - start
    if call.stats.audio_chunks_in != len(queued) - 1:
        raise RuntimeError(
            f"only {call.stats.audio_chunks_in} of {len(queued) - 1} messages decoded"
        )
    return elapsed


class HandPacer(Pacer):
    """A pacer that paces nothing: it keeps each call's sink for the bench to call."""

    def __init__(self) -> None:
        super().__init__()
        self.sinks: list[Callable[[PacedItem], None]] = []

    def open(self, stream: PacedStream, sink: Callable[[PacedItem], None]) -> None:
        self.sinks.append(sink)

    def close(self, stream: PacedStream) -> None:
        return None


class CountingTransport(QueuedTransport):
    """Hands out the start message, then waits; counts what is sent."""

    def __init__(self, queued: list[str]) -> None:
        super().__init__(queued[:1])
        self.sent = 0
        self._end = asyncio.Event()

    async def recv(self) -> str | bytes:
        try:
            return await super().recv()
        except ConnectionClosed:
            await self._end.wait()
            raise

    async def send(self, message: str | bytes) -> None:
        self.sent += 1

    async def close(self, code: int, reason: str) -> None:
        self._end.set()


async def one_outbound_run(frames: int, clock: Callable[[], float]) -> float:
    """CPU or wall time to send ``frames`` paced frames through one call."""
    pacer = HandPacer()
    transport = CountingTransport(messages(0))
    elapsed = 0.0

    async def handler(call: Call) -> None:
        nonlocal elapsed
        async for _ in call:
            break  # the start: the paced stream is open, its sink registered
        (sink,) = pacer.sinks
        frame = np.zeros(160, dtype=np.int16)
        start = clock()
        for _ in range(frames):
            sink(frame)
            await asyncio.sleep(0)  # the writer sends it, as between two pacer rounds
        while transport.sent < frames:
            await asyncio.sleep(0)
        elapsed = clock() - start

    await run_call(TwilioCodec(), transport, handler, pacer=pacer, limits=unlimited())
    if transport.sent != frames:
        raise RuntimeError(f"only {transport.sent} of {frames} frames sent")
    return elapsed


def codec_only(queued: list[str]) -> float:
    codec = TwilioCodec()
    start = time.perf_counter()
    for message in queued:
        codec.receive(message, 0.0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="also time the codec alone")
    parser.add_argument("--cpu", action="store_true", help="time run_call in CPU time")
    parser.add_argument("--outbound", action="store_true", help="time the outbound path")
    args = parser.parse_args()
    clock = cpu_time if args.cpu else time.perf_counter
    if args.outbound:
        out = min(asyncio.run(one_outbound_run(args.messages, clock)) for _ in range(args.repeat))
        print(
            f"outbound: {out / args.messages * 1e6:.2f} us/frame "
            f"({args.messages} frames, best of {args.repeat}, "
            f"{'CPU time' if args.cpu else 'wall clock'})"
        )
        return
    queued = messages(args.messages)
    best = min(asyncio.run(one_run(queued, clock)) for _ in range(args.repeat))
    print(
        f"run_call: {best / args.messages * 1e6:.2f} us/message "
        f"({args.messages} messages, best of {args.repeat}, "
        f"{'CPU time' if args.cpu else 'wall clock'})"
    )
    if args.baseline:
        alone = min(codec_only(queued) for _ in range(args.repeat))
        print(f"codec.receive alone: {alone / args.messages * 1e6:.2f} us/message")
        print(f"session adds: {(best - alone) / args.messages * 1e6:.2f} us/message")


if __name__ == "__main__":
    main()
