"""Mark semantics between a voxwire server and the simulated phone, over loopback.

The server plays 0.3 s, a mark ``a``, 2 s, a mark ``b``, and clears 1.6 s into the call,
with a 1 s pacer lead so that ``b`` has reached the phone (its audio has not played) when
the clear comes. The phone must echo ``a`` once its audio has played, and on the clear drop
``b`` (returning it where the provider does); the server must report ``a`` played and
``b`` cleared, once each.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.aio import Call, Pacer
from voxwire.aio.websockets_server import serve
from voxwire.protocols import CallStarted, Event, MarkPlayed, protocol_names
from voxwire.sim import PROVIDERS, CallPlan, CallReport, place_call

WITH_MARKS = sorted(protocol_names(transport="websocket", supports_marks=True))


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def marks_call(protocol: str) -> tuple[CallReport, list[Event], float]:
    seen: list[Event] = []
    cleared_at: list[float] = []

    async def handler(call: Call) -> None:
        loop = asyncio.get_running_loop()

        def clear() -> None:
            cleared_at.append(loop.time())
            call.clear()

        async for event in call:
            if isinstance(event, MarkPlayed):
                seen.append(event)
            if isinstance(event, CallStarted):
                rate = event.media_format.sample_rate
                call.play(tone(0.3, rate))
                call.mark("a")
                call.play(tone(2.0, rate))
                call.mark("b")
                loop.call_later(1.6, clear)

    pacer = Pacer(lead=1.0)
    rate = PROVIDERS[protocol].default_rate
    plan = CallPlan(np.zeros(rate // 5, np.int16), lead=0.0, reply_timeout=3.0, quiet=0.3)
    async with serve(handler, protocol, "127.0.0.1", 0, pacer=pacer) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        report = await place_call(f"ws://127.0.0.1:{port}/", protocol, plan)
    await pacer.aclose()
    return report, seen, cleared_at[0] if cleared_at else -1.0


def test_marks_are_echoed_once_played_and_returned_by_clear() -> None:
    async def main() -> list[tuple[CallReport, list[Event], float]]:
        calls = [marks_call(p) for p in WITH_MARKS]
        return await asyncio.wait_for(asyncio.gather(*calls), 30)

    for protocol, (report, seen, _) in zip(WITH_MARKS, asyncio.run(main()), strict=True):
        by_name = {m.name: m for m in report.marks}
        assert set(by_name) == {"a", "b"}, f"{protocol}: {report.summary()}"
        a, b = by_name["a"], by_name["b"]
        # a: echoed by the phone only once the 0.3 s before it had played
        assert a.echoed is not None
        assert not a.cleared
        assert a.echoed >= a.position / report.rate - 1e-6
        assert a.position == report.played[0][0] + round(0.3 * report.rate), protocol
        # b: reached the phone before its audio played, and the clear dropped it
        assert b.cleared, f"{protocol}: {report.summary()}"
        assert b.echoed is None
        assert len(report.clears) == 1
        assert report.unexpected == []
        # the server reports each mark once: a played, b cleared (a late echo is swallowed)
        assert seen == [MarkPlayed("a"), MarkPlayed("b", cleared=True)], protocol
