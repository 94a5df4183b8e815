"""Per-message cost of a call's session glue: messages through ``run_call``, no sockets.

    python bench/session_cost.py [--messages 100000] [--repeat 3] [--baseline] [--cpu]

A fake transport hands out queued Twilio media messages (20 ms of mu-law each) and the
handler iterates the call's events doing nothing, so what is timed is the read loop, the
limits, the codec's receive and the event queue. ``--baseline`` times the codec's
``receive`` alone over the same messages: the difference is what the session adds. Every
``recv`` yields to the event loop once, as a real socket read does. ``--cpu`` times the
process's CPU time (user + system) instead of the wall clock, which other jobs on a shared
machine disturb less.
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

from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Limits, run_call
from voxwire.errors import ConnectionClosed
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
    args = parser.parse_args()
    queued = messages(args.messages)
    clock = cpu_time if args.cpu else time.perf_counter
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
