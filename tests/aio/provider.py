"""A simulated provider over a real socket: a strict fake phone driven in real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire.aio import Call
from voxwire.errors import ConformanceError
from voxwire.protocols import Audio, CallStarted, Cleared, Event, MarkPlayed, Stopped
from voxwire.sim.phone import FakePhone

Send = Callable[[str | bytes], Awaitable[None]]
Recv = Callable[[], Awaitable[str | bytes | None]]


@dataclass
class Report:
    """What the simulated provider saw."""

    arrivals: list[float] = field(default_factory=list)  # when each app message arrived
    messages: list[str | bytes] = field(default_factory=list)
    closed: bool = False


async def play_call(
    peer: FakePhone[Any],
    send: Send,
    recv: Recv,
    caller_audio: np.ndarray,
    *,
    tail: float = 0.4,
    stop: bool = True,
    realtime: bool = True,
) -> Report:
    """Open the stream, send the caller's audio in 20 ms messages (in real time), keep
    playing what the application sends, echo marks when due; then stop after ``tail`` s."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    report = Report()

    async def reader() -> None:
        while True:
            message = await recv()
            if message is None:
                report.closed = True
                return
            now = loop.time() - t0
            report.arrivals.append(now)
            report.messages.append(message)
            replies = peer.advance(now)  # mark echoes due by now
            replies += peer.deliver(message, now)
            for reply in replies:
                await send(reply)

    async def player() -> None:
        while True:
            await asyncio.sleep(0.005)
            for echo in peer.advance(loop.time() - t0):
                await send(echo)

    reading = loop.create_task(reader())
    playing = loop.create_task(player())
    try:
        for message in peer.opening():
            await send(message)
        n = peer.frame
        for i in range(0, len(caller_audio) - n + 1, n):
            await send(peer.say(caller_audio[i : i + n]))
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (i // n + 1) * 0.02 - loop.time()))
        await asyncio.sleep(tail)
        stop_messages = peer.hang_up() if stop else []
        for message in stop_messages:
            await send(message)
        if stop_messages:  # the server closes after the stream stopped
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), 1.0)
    finally:
        playing.cancel()
        reading.cancel()
        results = await asyncio.gather(playing, reading, return_exceptions=True)
    for result in results:  # a message the provider does not allow fails the test
        if isinstance(result, ConformanceError):
            raise result
    return report


@dataclass
class EchoLog:
    events: list[Event] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


def echo_handler(log: EchoLog) -> Callable[[Call], Awaitable[None]]:
    """Echo every inbound chunk back, mark the end of each burst of audio."""

    async def handler(call: Call) -> None:
        log.calls.append(call)
        count = 0
        async for event in call:
            log.events.append(event)
            if isinstance(event, Audio):
                call.play(event.pcm, event.sample_rate)
                count += 1
                if count % 10 == 0:
                    call.mark(f"m{count}")
            if isinstance(event, (Stopped,)):
                return

    return handler


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


__all__ = [
    "Audio",
    "CallStarted",
    "Cleared",
    "EchoLog",
    "MarkPlayed",
    "Report",
    "echo_handler",
    "kinds",
    "play_call",
]
