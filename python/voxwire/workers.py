"""Several worker processes on one port: what ``voxwire serve --workers N`` runs.

The supervisor (this process) reserves the port, starts ``N`` workers, each a
``voxwire serve`` process of its own listening on the same address with ``SO_REUSEPORT``
(the kernel spreads new connections over the workers' listening sockets), and then:

* **restarts** a worker that exits while the server is running (after a pause that grows
  from 0.5 s to 10 s while workers keep dying within 5 s of their start);
* **forwards** SIGTERM and SIGINT to every worker as SIGTERM, so that each drains (see
  :mod:`voxwire.agents.server`): a second signal is forwarded too, and ends the drain at
  once; workers still running ``grace`` seconds after the first signal are killed;
* exits 0 once every worker has exited 0 after the signal, 1 otherwise, or 1 when a
  worker fails before every worker first became ready (a bad option, an agent that does
  not load: restarting would not help).

A worker prints its ready line on stdout (``voxwire serve: ... on URL``); the supervisor
reads it, and prints its own ready line once every worker is ready. Everything else a
worker prints on stdout is copied to the supervisor's stderr with the worker's number;
its logs go to the same stderr directly. A worker started by a supervisor drains and
exits if the supervisor disappears (``--parent-pid``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Supervisor", "reserve_port"]

log = logging.getLogger("voxwire.workers")

READY_MARK = " on "
"""What a worker's ready line holds before its URL."""


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` with ``SO_REUSEPORT`` and not listening: it
    holds the port (``port=0`` picks one) while workers bind it too. Close it at the end."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    failures: int = 0  # quick deaths in a row


class Supervisor:
    """Run ``workers`` processes of ``command(i)`` and supervise them; see the module
    docstring.

    Parameters
    ----------
    command : callable
        The worker's command line for worker number ``i`` (0-based).
    workers : int
        How many.
    grace : float
        Seconds after the first stop signal before workers still running are killed.
    out : callable
        Where the supervisor's own lines go (the ready line, "stopped").
    """

    QUICK_DEATH = 5.0
    MAX_PAUSE = 10.0

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        workers: int,
        *,
        grace: float,
        out: Callable[[str], None] = print,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.command = command
        self.workers = [_Worker(i) for i in range(workers)]
        self.grace = grace
        self.out = out
        self.stopping = False
        self.signals = 0
        self.restarts = 0
        self._changed = asyncio.Event()
        self._readers: set[asyncio.Task[None]] = set()

    async def _start(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        worker.ready = asyncio.Event()
        worker.process = await asyncio.create_subprocess_exec(
            *self.command(worker.index),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            # signals reach the workers through the supervisor only (a terminal's Ctrl-C
            # goes to the whole process group: it would count twice and end the drain)
            start_new_session=True,
        )
        worker.started = loop.time()
        reader = loop.create_task(self._read(worker, worker.process))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not worker.ready.is_set() and READY_MARK in line:
                worker.url = line.split(READY_MARK, 1)[1].split()[0]
                worker.ready.set()
                log.info("worker %d (pid %d) ready on %s", worker.index, process.pid, worker.url)
                self._changed.set()
                continue
            print(f"[worker {worker.index}] {line}", file=sys.stderr, flush=True)
        await process.wait()
        self._changed.set()

    def _signal(self, signum: int) -> None:
        self.signals += 1
        self.stopping = True
        log.info(
            "%s: %s the workers",
            signal.Signals(signum).name,
            "draining" if self.signals == 1 else "closing every call of",
        )
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        self._changed.set()

    async def run(self, describe: Callable[[str], str]) -> int:
        """Start the workers, print ``describe(url)`` once all are ready, supervise until
        stopped; return the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signal, sig)
        try:
            return await self._supervise(describe)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
                    await worker.process.wait()

    async def _supervise(self, describe: Callable[[str], str]) -> int:
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            await self._start(worker)
        # every worker ready, or one failed first
        while not all(w.ready.is_set() for w in self.workers):
            failed = [w for w in self.workers if w.process and w.process.returncode is not None]
            if failed or self.stopping:
                for w in failed:
                    log.error(
                        "worker %d exited with %s before it was ready",
                        w.index,
                        w.process.returncode if w.process else None,
                    )
                self._signal(signal.SIGTERM)
                await self._wait_all(loop.time() + self.grace)
                return 1
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        self.out(describe(self.workers[0].url))
        pending: dict[int, float] = {}  # worker index -> when to restart it
        while not self.stopping:
            now = loop.time()
            for worker in self.workers:
                process = worker.process
                if process is None or process.returncode is None or worker.index in pending:
                    continue
                lived = now - worker.started
                worker.failures = worker.failures + 1 if lived < self.QUICK_DEATH else 0
                pause = min(self.MAX_PAUSE, 0.5 * 2 ** max(0, worker.failures - 1))
                log.warning(
                    "worker %d (pid %d) exited with %d after %.1f s; restarting in %.1f s",
                    worker.index,
                    process.pid,
                    process.returncode,
                    lived,
                    pause,
                )
                pending[worker.index] = now + pause
            for index, when in list(pending.items()):
                if when <= now:
                    del pending[index]
                    self.restarts += 1
                    await self._start(self.workers[index])
            self._changed.clear()
            wake = min(pending.values(), default=now + 1.0) - loop.time()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, wake))
        ok = await self._wait_all(loop.time() + self.grace)
        self.out("voxwire serve: stopped")
        return 0 if ok else 1

    async def _wait_all(self, deadline: float) -> bool:
        """Wait for every worker to exit until ``deadline``, then kill the rest; whether
        all exited 0."""
        loop = asyncio.get_running_loop()
        ok = True
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            try:
                await asyncio.wait_for(process.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                log.error("worker %d (pid %d) still running: killed", worker.index, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                ok = False
                continue
            if process.returncode != 0:
                log.error("worker %d exited with %d", worker.index, process.returncode)
                ok = False
        return ok
