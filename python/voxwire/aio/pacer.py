"""The process's outbound pacer: one asyncio task for every call's paced audio.

Every call's :class:`~voxwire.pacing.PacedStream` is registered with one :class:`Pacer`
(:func:`get_pacer` returns the default one of the running event loop), which sleeps until
the scheduler's next deadline, hands each due item to its stream's sink, and sleeps again.
There is no task or sleep loop per call. The task exits when no stream is registered and
starts again with the next one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from voxwire.pacing import PacedItem, PacedStream, PacingScheduler

__all__ = ["Pacer", "get_pacer"]

log = logging.getLogger("voxwire.aio")

Sink = Callable[[PacedItem], None]

ROUND_ITEMS = 64
"""Items handed to the sinks before the pacer lets the event loop run again: a pacer
that is behind (an overloaded process) catches up in rounds of this size, with the
sockets read and the other tasks run between them, instead of in one long stretch."""


class Pacer:
    """Drive a :class:`~voxwire.pacing.PacingScheduler` on the running event loop."""

    def __init__(self, lead: float = 0.06) -> None:
        self.scheduler = PacingScheduler(lead, on_wake=self._on_wake)
        self._sinks: dict[PacedStream, Sink] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: how late (seconds) the task woke after each deadline, for bench/ and tests
        self.lateness: list[float] = []
        self.record_lateness = False

    @property
    def lead(self) -> float:
        """Default lead of the streams, in seconds."""
        return self.scheduler.lead

    def open(self, stream: PacedStream, sink: Sink) -> None:
        """Start pacing ``stream``; ``sink`` receives each frame and mark when due."""
        self._sinks[stream] = sink
        self.scheduler.add(stream)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def close(self, stream: PacedStream) -> None:
        """Stop pacing ``stream``."""
        self._sinks.pop(stream, None)
        self.scheduler.remove(stream)
        self._wake.set()

    async def aclose(self) -> None:
        """Stop pacing every stream and end the task."""
        for stream in list(self._sinks):
            self.close(stream)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sinks:
            now = loop.time()
            for stream, item in self.scheduler.poll(now, ROUND_ITEMS):
                sink = self._sinks.get(stream)
                if sink is None:
                    continue
                try:
                    sink(item)
                except Exception:
                    log.exception("pacer sink of stream %r failed; stream removed", stream.name)
                    self.close(stream)
            self._wake.clear()
            deadline = self.scheduler.next_deadline()
            if deadline is None:
                await self._wake.wait()
                continue
            if deadline <= loop.time():
                # Behind (the sinks took longer than the frames are apart, or the
                # round stopped at ROUND_ITEMS): let the loop run once before the next
                # round, or an overloaded process would spin here, reading no socket
                # and running no task, until every stream's queue ran dry.
                await asyncio.sleep(0)
                continue
            # one timer handle per sleep, not a task: cheap at thousands of wake-ups a second
            timer = loop.call_at(deadline, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            if self.record_lateness and loop.time() >= deadline:
                self.lateness.append(loop.time() - deadline)


_default: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = weakref.WeakKeyDictionary()


def get_pacer(lead: float = 0.06) -> Pacer:
    """The default pacer of the running event loop (created with ``lead`` on first use)."""
    loop = asyncio.get_running_loop()
    pacer = _default.get(loop)
    if pacer is None:
        pacer = _default[loop] = Pacer(lead)
    return pacer
