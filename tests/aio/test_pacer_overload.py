"""An overloaded pacer still lets the event loop run (sockets read, other tasks go on)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from voxwire.aio import Pacer
from voxwire.aio.pacer import ROUND_ITEMS
from voxwire.pacing import PacedStream


def test_pacer_behind_its_deadlines_yields_to_the_loop_between_rounds() -> None:
    """Sinks that cost more than one core can keep up with: before the pacer yielded
    between rounds, the loop ran nothing else until every stream's queue was empty (a
    server under load read no socket for seconds, and its calls piled up)."""

    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(lead=0.06)
        streams = [PacedStream(8000, name=str(i)) for i in range(60)]
        sent = 0

        def sink(item: object) -> None:
            nonlocal sent
            sent += 1
            until = time.perf_counter() + 0.0005  # 60 streams x 50 frames/s x 0.5 ms: 1.5 s/s
            while time.perf_counter() < until:
                pass

        for stream in streams:
            pacer.open(stream, sink)
            stream.push(np.zeros(8000, np.int16))  # 1 s each
        ticks = 0
        end = loop.time() + 1.0
        while loop.time() < end:
            await asyncio.sleep(0.005)
            ticks += 1
        before_close = sent
        await pacer.aclose()
        return ticks, before_close, sum(s.underruns for s in streams)

    ticks, sent, underruns = asyncio.run(asyncio.wait_for(main(), 30))
    assert underruns > 0  # the pacer was indeed behind
    assert sent > ROUND_ITEMS  # and it worked through more than one round meanwhile
    # the other task ran between the rounds (a pacer that spins gives it one turn, after
    # every queue ran dry)
    assert ticks >= 3
