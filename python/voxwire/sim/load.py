"""Many simulated phones at once: what ``voxwire loadtest`` runs.

:func:`run_load` places ``calls`` calls to one server, each on the simulated phone of
:mod:`voxwire.sim.dialog` over a real socket (the same line, playout, mark echoes and
clear handling as ``voxwire call``), starting them evenly over ``ramp`` seconds. Each
phone holds a conversation for ``duration`` seconds: it says the phrase, waits for the
reply to finish playing, says it again; every ``barge_every``-th turn it talks over the
reply once it has played for ``barge_in_after`` seconds instead. Then it hangs up as the
provider does.

What is measured (:class:`LoadReport`)
---------------------------------------
* **Reply latency**: per turn, from the end of the caller's speech to the reply playing
  at the phone; a turn whose reply never began (before the next turn's speech ended, or
  the end of the call) is a **missed reply**.
* **Clear latency**: per barge-in, from the onset of the barge-in speech to the arrival
  of the first clear message after it (protocols with a clear message only).
* **Outbound pacing**: the interval between consecutive audio messages arriving at the
  phone inside one reply (between one turn's speech end and the next's), p50/p99/max.
* **Errors by close code**: calls that did not run their script to the end: the close
  code the server sent (``"1001"``, ``"1011"``...), ``"http 503"`` for an upgrade the
  server refused, ``"closed"`` for a TCP line the server hung up, or the exception type
  of a connection that failed.
* **The generator's own cost**: its CPU (cores, user + system of this process) and the
  event loop's lateness (how late a 10 ms sleep wakes, p50/p99/max): a generator that is
  late itself makes the server look late.
* **Server CPU per call**, given the server's process id: the CPU of that process and
  its children (the workers of ``voxwire serve --workers``), from ``/proc``, as a fraction
  of one core, divided by the calls up.

CPU is measured over the steady window: from one second after the last call started to
the moment the first call ended (the whole run when that window is shorter than half a
second).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxwire._types import PCM
from voxwire.protocols.registry import CODECS
from voxwire.sim.caller import Network, Recv, Send, _connect
from voxwire.sim.dialog import Turn, _Dialog, _Said
from voxwire.sim.providers import PROVIDERS, ProviderSide

__all__ = [
    "LoadProgress",
    "LoadReport",
    "Percentiles",
    "process_tree_cpu",
    "run_load",
]

_WARMUP = 1.0  # seconds after the last call started before the CPU window opens
_LAG_PROBE = 0.01  # seconds the lateness probe sleeps


# --- /proc ------------------------------------------------------------------------------


def _stat_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live descendants, from
    ``/proc`` (Linux). Raises :class:`ProcessLookupError` when ``pid`` does not exist."""
    try:
        total = _stat_cpu(pid)
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    seen = {pid}
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if child in seen:
            continue
        seen.add(child)
        with contextlib.suppress(OSError, ValueError):
            total += _stat_cpu(child)
        todo.extend(_children(child))
    return total


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    """Percentiles of a set of durations, in milliseconds (NaN when there are none)."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles:
        if not seconds:
            nan = math.nan
            return cls(0, nan, nan, nan, nan)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
        return cls(len(ms), p50, p95, p99, float(ms.max()))

    def as_dict(self) -> dict[str, float | int | None]:
        def r(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 2)

        return {"n": self.n, "p50": r(self.p50), "p95": r(self.p95), "p99": r(self.p99),
                "max": r(self.max)}  # fmt: skip


@dataclass
class LoadReport:
    """The figures of one load test; see the module docstring."""

    url: str
    protocol: str
    calls: int
    duration: float
    ramp: float
    wall: float = 0.0
    completed: int = 0  # calls that ran their script to the end
    errors: dict[str, int] = field(default_factory=dict)  # failed calls by close code
    turns: int = 0
    replies_expected: int = 0
    replies_missed: int = 0
    barge_ins: int = 0
    clears_missing: int = 0  # barge-ins with no clear after them (protocols with clear)
    reply_latency: Percentiles = field(default_factory=lambda: Percentiles.of([]))
    clear_latency: Percentiles = field(default_factory=lambda: Percentiles.of([]))
    out_interval: Percentiles = field(default_factory=lambda: Percentiles.of([]))
    window: float = 0.0  # the CPU window, seconds
    calls_in_window: int = 0  # calls up when the window opened
    generator_cores: float = 0.0
    loop_lag: Percentiles = field(default_factory=lambda: Percentiles.of([]))
    server_pid: int | None = None
    server_cores: float | None = None

    @property
    def server_cpu_per_call(self) -> float | None:
        """The server's CPU as a fraction of one core, per call up in the window."""
        if self.server_cores is None or not self.calls_in_window:
            return None
        return self.server_cores / self.calls_in_window

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (milliseconds for latencies)."""
        per_call = self.server_cpu_per_call
        return {
            "url": self.url,
            "protocol": self.protocol,
            "calls": self.calls,
            "duration_s": self.duration,
            "ramp_s": self.ramp,
            "wall_s": round(self.wall, 3),
            "calls_completed": self.completed,
            "calls_failed": self.failed,
            "errors_by_close_code": dict(sorted(self.errors.items())),
            "turns": self.turns,
            "replies_expected": self.replies_expected,
            "replies_missed": self.replies_missed,
            "barge_ins": self.barge_ins,
            "clears_missing": self.clears_missing,
            "reply_latency_ms": self.reply_latency.as_dict(),
            "clear_latency_ms": self.clear_latency.as_dict(),
            "out_interval_ms": self.out_interval.as_dict(),
            "window_s": round(self.window, 3),
            "calls_in_window": self.calls_in_window,
            "generator": {
                "cpu_cores": round(self.generator_cores, 4),
                "loop_lag_ms": self.loop_lag.as_dict(),
            },
            "server": None
            if self.server_pid is None
            else {
                "pid": self.server_pid,
                "cpu_cores": None if self.server_cores is None else round(self.server_cores, 4),
                "cpu_per_call": None if per_call is None else round(per_call, 5),
            },
        }

    def summary(self) -> str:
        """A few lines for a terminal."""

        def ms(p: Percentiles, *q: str) -> str:
            if not p.n:
                return "none"
            parts = " / ".join(f"{getattr(p, k):.0f}" for k in q)
            return f"{parts} ms ({'/'.join(q)}, n={p.n})"

        lines = [
            f"{self.protocol} load on {self.url}: {self.calls} call(s), {self.duration:g} s "
            f"each, ramp {self.ramp:g} s, {self.wall:.1f} s in all",
            f"  calls: {self.completed} completed, {self.failed} failed"
            + (f" {dict(sorted(self.errors.items()))}" if self.errors else ""),
            f"  replies: {self.replies_expected - self.replies_missed} of "
            f"{self.replies_expected} heard, {self.replies_missed} missed",
            f"  reply latency: {ms(self.reply_latency, 'p50', 'p95', 'p99')}",
            f"  clear latency: {ms(self.clear_latency, 'p50', 'p95', 'p99')}"
            + (
                f", {self.clears_missing} barge-in(s) without a clear"
                if self.clears_missing
                else ""
            ),
            f"  outbound interval: {ms(self.out_interval, 'p50', 'p99', 'max')}",
            f"  generator: {self.generator_cores:.3f} cores, loop lateness "
            f"{ms(self.loop_lag, 'p50', 'p99', 'max')}",
        ]
        per_call = self.server_cpu_per_call
        if self.server_cores is not None and per_call is not None:
            lines.append(
                f"  server (pid {self.server_pid}): {self.server_cores:.3f} cores for "
                f"{self.calls_in_window} calls, {per_call:.5f} of a core per call "
                f"(window {self.window:.1f} s)"
            )
        return "\n".join(lines)


@dataclass
class LoadProgress:
    """Live counters of a load test, for a progress display."""

    calls: int
    started: int = 0
    up: int = 0
    ended: int = 0
    failed: int = 0
    messages_received: int = 0
    elapsed: float = 0.0

    def line(self) -> str:
        return (
            f"[{self.elapsed:5.1f} s] calls {self.up} up / {self.started} started / "
            f"{self.calls}, {self.ended} ended ({self.failed} failed), "
            f"{self.messages_received} messages received"
        )


# --- one phone ---------------------------------------------------------------------------


@dataclass
class _Line:
    """How one call's connection went."""

    connected: bool = False
    close_code: int | None = None
    error: str | None = None


@contextlib.asynccontextmanager
async def _connect_line(
    side: ProviderSide, url: str, line: _Line
) -> AsyncIterator[tuple[Send, Recv]]:
    """The phone's connection, recording the server's close code in ``line``."""
    if side.raw_tcp:
        async with _connect(side, url) as pair:
            line.connected = True
            yield pair
        return
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    protocols = [Subprotocol(p) for p in side.subprotocols] or None
    async with connect(
        url,
        subprotocols=protocols,
        compression=None,
        close_timeout=1.0,
        open_timeout=30.0,
        ping_interval=None,
        max_size=2**22,
    ) as ws:
        line.connected = True

        async def send(message: str | bytes) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

        async def recv() -> str | bytes | None:
            try:
                return await ws.recv()
            except ConnectionClosed as exc:
                if exc.rcvd is not None:
                    line.close_code = exc.rcvd.code
                return None

        yield send, recv


class _LoadPhone(_Dialog):
    """A dialog that repeats its phrase until ``duration`` and keeps what it measures,
    not the audio (memory stays flat however long the call)."""

    def __init__(
        self,
        side: ProviderSide,
        speech: PCM,
        barge: PCM,
        *,
        duration: float,
        barge_every: int,
        barge_in_after: float,
        progress: LoadProgress,
    ) -> None:
        turn = Turn(speech, "turn")
        barge_turn = Turn(barge, "barge-in", barge_in_after=barge_in_after)
        turns: Iterator[Turn] = (
            barge_turn if barge_every and i % barge_every == barge_every - 1 else turn
            for i in itertools.count()
        )
        super().__init__(side, [turn], Network(), quiet=0.4, reply_timeout=6.0, lead=0.4, tail=0.3)
        self._turn_source = turns
        self.duration = round(duration * self.rate)
        self.progress = progress
        self.arrivals: list[float] = []  # loop time of each audio message
        self._mouth: deque[PCM] = deque(maxlen=1)  # type: ignore[assignment]

    def _on_audio(self, pcm: PCM, start: int, now: float) -> None:
        super()._on_audio(pcm, start, now)
        self.arrivals.append(now)
        self.progress.messages_received += 1
        # keep the segment's place and length, not its samples
        first, _, arrived = self.playout.segments[-1]
        self.playout.segments[-1] = (first, np.broadcast_to(np.int16(0), (len(pcm),)), arrived)

    def _script(self) -> Iterator[PCM]:
        silence = np.zeros(self.side.frame, np.int16)
        for _ in range(round(self.lead / self.FRAME)):
            yield silence
        for index, turn in enumerate(self._turn_source):
            if self.said_turns:
                yield from self._before(turn, self.said_turns[-1], silence)
            if self._position() >= self.duration:
                break
            at = self._position()
            assert turn.speech is not None
            first, last = _bounds(turn.speech, self.rate)
            self.said_turns.append(_Said(index, turn, at + first, at + last))
            yield from self._frames(turn.speech)
        if self.said_turns:
            yield from self._until_reply_ends(self.said_turns[-1], silence)
        for _ in range(round(self.tail / self.FRAME)):
            yield silence

    def measure(self) -> tuple[list[float], list[float], list[float], int, int, int]:
        """(reply latencies, clear latencies, outbound intervals, replies missed,
        barge-ins, barge-ins without a clear), from what the phone recorded."""
        rate = self.rate
        t0 = self.playout.t0
        said = self.said_turns
        replies: list[float] = []
        clears: list[float] = []
        intervals: list[float] = []
        missed = barges = no_clear = 0
        clear_times = [c.at for c in self.clear_records]
        arrivals = np.asarray(self.arrivals)
        for i, s in enumerate(said):
            stop = said[i + 1].end if i + 1 < len(said) else math.inf
            start = self._first_played_from(s.end)
            if start is None or start >= stop:
                missed += 1
            else:
                replies.append((start - s.end) / rate)
            if s.turn.barge_in:
                barges += 1
                onset = s.onset / rate
                after = [t for t in clear_times if t >= onset]
                if after:
                    clears.append(after[0] - onset)
                elif CODECS[self.side.name].supports_clear:
                    no_clear += 1
            lo, hi = t0 + s.end / rate, t0 + stop / rate
            burst = arrivals[(arrivals > lo) & (arrivals <= hi)]
            if len(burst) >= 2:
                intervals.extend(np.diff(burst).tolist())
        return replies, clears, intervals, missed, barges, no_clear


def _bounds(pcm: PCM, rate: int) -> tuple[int, int]:
    from voxwire.sim.speech import speech_bounds

    return speech_bounds(pcm, rate)


@dataclass
class _Outcome:
    line: _Line
    phone: _LoadPhone | None = None
    completed: bool = False


async def _one_call(
    url: str,
    protocol: str,
    speech: PCM,
    barge: PCM,
    *,
    delay: float,
    duration: float,
    barge_every: int,
    barge_in_after: float,
    progress: LoadProgress,
    ended: asyncio.Event,
) -> _Outcome:
    await asyncio.sleep(delay)
    progress.started += 1
    side = PROVIDERS[protocol]()
    line = _Line()
    outcome = _Outcome(line)
    try:
        phone = _LoadPhone(
            side,
            speech,
            barge,
            duration=duration,
            barge_every=barge_every,
            barge_in_after=barge_in_after,
            progress=progress,
        )
        outcome.phone = phone
        async with _connect_line(side, url, line) as (send, recv):
            progress.up += 1
            try:
                await phone.run(send, recv)
            finally:
                progress.up -= 1
        outcome.completed = not phone.closed_by_server
    except Exception as exc:  # a refused upgrade or connection: counted, not raised
        from websockets.exceptions import InvalidStatus

        if isinstance(exc, InvalidStatus):
            line.error = f"http {exc.response.status_code}"
        else:
            line.error = type(exc).__name__
    finally:
        progress.ended += 1
        if not outcome.completed:
            progress.failed += 1
        ended.set()
    return outcome


async def _loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + _LAG_PROBE
        await asyncio.sleep(_LAG_PROBE)
        samples.append(max(0.0, loop.time() - due))


async def run_load(
    url: str,
    protocol: str,
    calls: int,
    *,
    duration: float = 10.0,
    ramp: float = 1.0,
    speech: PCM | None = None,
    barge_in: PCM | None = None,
    barge_every: int = 2,
    barge_in_after: float = 0.4,
    server_pid: int | None = None,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval: float = 1.0,
) -> LoadReport:
    """Place ``calls`` simulated calls to ``url`` at once and report; see the module
    docstring.

    Parameters
    ----------
    url : str
        A ``ws://`` URL, or ``host:port`` for AudioSocket.
    protocol : str
        A name from :data:`voxwire.sim.PROVIDERS`.
    calls : int
        How many calls, at once.
    duration : float
        Seconds each call keeps starting turns (it then waits for the last reply).
    ramp : float
        Seconds over which the calls start, evenly (0: all at once).
    speech, barge_in : numpy.ndarray of int16, optional
        What the caller says, and says over a reply, at the protocol's default line rate;
        espeak-ng phrases by default.
    barge_every : int
        Every this many turns, talk over the reply (0: never).
    barge_in_after : float
        Seconds of the reply played before the caller talks over it.
    server_pid : int, optional
        The server's process (and its children's) CPU is measured.
    progress : callable, optional
        Called with the live :class:`LoadProgress` every ``progress_interval`` seconds.

    Raises
    ------
    ValueError
        For an unknown protocol, ``calls < 1``, or a negative duration, ramp or count.
    ProcessLookupError
        When ``server_pid`` names no process.
    """
    if protocol not in PROVIDERS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROVIDERS)}")
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    for name, value in (("duration", duration), ("ramp", ramp), ("barge_in_after", barge_in_after)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
    if barge_every < 0:
        raise ValueError(f"barge_every must be >= 0, got {barge_every}")
    rate = PROVIDERS[protocol].default_rate
    if speech is None or barge_in is None:
        from voxwire.sim.speech import synthesize

        speech = speech if speech is not None else synthesize("Testing the voxwire line.", rate)
        barge_in = (
            barge_in if barge_in is not None else synthesize("Sorry to interrupt.", rate, seed=2)
        )
    if server_pid is not None:
        process_tree_cpu(server_pid)  # fail early on a wrong pid

    report = LoadReport(url, protocol, calls, duration, ramp, server_pid=server_pid)
    live = LoadProgress(calls)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    ended = asyncio.Event()
    stop = asyncio.Event()
    lags: list[float] = []
    lag_task = loop.create_task(_loop_lag(lags, stop))
    tasks = [
        loop.create_task(
            _one_call(
                url,
                protocol,
                speech,
                barge_in,
                delay=ramp * i / calls,
                duration=duration,
                barge_every=barge_every,
                barge_in_after=barge_in_after,
                progress=live,
                ended=ended,
            )
        )
        for i in range(calls)
    ]

    def cpu() -> tuple[float, float, float | None]:
        server = None
        if server_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                server = process_tree_cpu(server_pid)
        return loop.time(), _own_cpu(), server

    async def show() -> None:
        while True:
            await asyncio.sleep(progress_interval)
            live.elapsed = loop.time() - begin
            if progress is not None:
                progress(live)

    shower = loop.create_task(show())
    first = cpu()
    opened: tuple[float, float, float | None] | None = None
    closed: tuple[float, float, float | None] | None = None
    up_at_open = 0
    try:
        warm = begin + ramp + _WARMUP
        while loop.time() < warm and not ended.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ended.wait(), warm - loop.time())
        if not ended.is_set():
            opened = cpu()
            up_at_open = live.up
            await ended.wait()
            closed = cpu()
        outcomes = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        stop.set()
        shower.cancel()
        await asyncio.gather(lag_task, shower, *tasks, return_exceptions=True)
    last = cpu()
    live.elapsed = loop.time() - begin
    if progress is not None:
        progress(live)

    if opened is None or closed is None or closed[0] - opened[0] < 0.5:
        opened, closed, up_at_open = first, last, calls - live.failed
    report.wall = last[0] - begin
    report.window = closed[0] - opened[0]
    report.calls_in_window = up_at_open
    report.generator_cores = (closed[1] - opened[1]) / report.window if report.window else 0.0
    if opened[2] is not None and closed[2] is not None and report.window:
        report.server_cores = (closed[2] - opened[2]) / report.window
    report.loop_lag = Percentiles.of(lags)

    replies: list[float] = []
    clears: list[float] = []
    intervals: list[float] = []
    for outcome in outcomes:
        line, phone = outcome.line, outcome.phone
        if outcome.completed:
            report.completed += 1
        else:
            if line.error is not None:
                key = line.error
            elif line.close_code is not None:
                key = str(line.close_code)
            else:
                key = "closed"
            report.errors[key] = report.errors.get(key, 0) + 1
        if phone is None or not line.connected:
            continue
        r, c, iv, missed, barges, no_clear = phone.measure()
        replies += r
        clears += c
        intervals += iv
        report.turns += len(phone.said_turns)
        report.replies_expected += len(phone.said_turns)
        report.replies_missed += missed
        report.barge_ins += barges
        report.clears_missing += no_clear
    report.reply_latency = Percentiles.of(replies)
    report.clear_latency = Percentiles.of(clears)
    report.out_interval = Percentiles.of(intervals)
    return report
