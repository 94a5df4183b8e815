"""Soak: many calls with churn against one ``voxwire serve`` process, for minutes, while
its memory, file descriptors and asyncio tasks are sampled; what must stay flat.

python bench/soak.py [--calls 200] [--every 0.5] [--minutes 10] [--protocol twilio]

The script starts ``voxwire serve --echo --metrics`` on a free port (or uses ``--url``
with ``--server-pid``), then keeps ``--calls`` simulated phones (:mod:`voxwire.sim.load`,
the phone of ``voxwire loadtest``) talking to it: at the start ``--calls`` calls, begun
over ``--ramp`` seconds, whose lengths are spread so that one ends about every
``--every`` seconds, and from then on one new call every ``--every`` seconds, each living
one lifetime (``calls * every`` seconds; the phone's talking time is the lifetime less
the wait for its last reply, measured on the calls that ended). Every ``--sample``
seconds it reads the server's resident memory (``VmRSS`` of ``/proc/PID/status``), its
open descriptors (``/proc/PID/fd``) and its event loop's task count
(``voxwire_asyncio_tasks`` on ``GET /metrics``), with the calls up; and once before the
first call and once after the last. At the end it prints, per figure, the least-squares
slope per minute over the samples after the warm-up (the first lifetime, or ``--warmup``
seconds: the allocator and the caches grow to the working set there), the idle values
before and after, the first and last steady values, and the errors: calls that did not
run to their end (by close code), missed replies, and the server's
``voxwire_errors_total``. ``--json`` prints the same as JSON. The exit status is 0 when
there were no errors.

What a leak would look like: at the default churn (120 calls a minute), one descriptor
kept per call is a slope of 120 fds/min, one task kept per call 120 tasks/min, and one
call's state kept (its codec, jitter and agent buffers, about 100 kB) 12 MB per
minute; a flat server shows slopes near 0 in all three.

:func:`soak` is what the test suite runs in a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire.sim.load import LoadProgress, _one_call, _Outcome
from voxwire.sim.providers import PROVIDERS
from voxwire.sim.speech import synthesize

FIGURES = ("rss_mb", "fds", "tasks")


@dataclass
class Sample:
    """One reading of the server, ``t`` seconds into the soak."""

    t: float
    rss_mb: float
    fds: int
    tasks: float
    calls_up: int


@dataclass
class SoakReport:
    """What a soak measured; see the module docstring."""

    calls: int
    every: float
    seconds: float
    warmup: float
    samples: list[Sample] = field(default_factory=list)
    started: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed calls by close code
    replies_expected: int = 0
    replies_missed: int = 0
    server_errors: float = 0.0
    scrapes_failed: int = 0  # samples lost: GET /metrics not answered in 10 s
    idle_before: Sample | None = None  # before the first call
    idle_after: Sample | None = None  # once the last call ended

    def steady(self) -> list[Sample]:
        """The samples after the warm-up."""
        return [s for s in self.samples if s.t >= self.warmup]

    def slope(self, figure: str) -> float:
        """Least-squares slope of ``figure`` per minute over :meth:`steady`."""
        points = [(s.t / 60.0, float(getattr(s, figure))) for s in self.steady()]
        return slope(points)

    def trend(self, figure: str) -> float:
        """The slope of ``figure`` per minute at a constant number of calls up (see
        :func:`trend`): what stays of :meth:`slope` once the calls up, which a late load
        generator makes vary, are accounted for."""
        steady = self.steady()
        return trend([(s.t / 60.0, float(s.calls_up), float(getattr(s, figure))) for s in steady])

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + self.replies_missed + int(self.server_errors)

    def as_dict(self) -> dict[str, Any]:
        steady = self.steady()
        return {
            "calls": self.calls,
            "every_s": self.every,
            "seconds": round(self.seconds, 1),
            "warmup_s": self.warmup,
            "calls_started": self.started,
            "calls_completed": self.completed,
            "errors": self.errors,
            "replies_expected": self.replies_expected,
            "replies_missed": self.replies_missed,
            "server_errors": self.server_errors,
            "samples": len(self.samples),
            "scrapes_failed": self.scrapes_failed,
            "calls_up_min": min((s.calls_up for s in steady), default=0),
            "calls_up_max": max((s.calls_up for s in steady), default=0),
            "slope_per_min": {f: round(self.slope(f), 3) for f in FIGURES},
            "trend_per_min": {f: round(self.trend(f), 3) for f in FIGURES},
            "first": {f: getattr(steady[0], f) for f in FIGURES} if steady else {},
            "last": {f: getattr(steady[-1], f) for f in FIGURES} if steady else {},
            "idle_before": _figures(self.idle_before),
            "idle_after": _figures(self.idle_after),
        }

    def summary(self) -> str:
        d = self.as_dict()
        lines = [
            f"soak: {self.calls} calls up, a new one every {self.every:g} s, "
            f"{self.seconds:.0f} s ({d['samples']} samples, slopes after {self.warmup:g} s)",
            f"calls: {self.started} started, {self.completed} ran to their end; "
            f"{d['calls_up_min']}-{d['calls_up_max']} up",
            "| figure | idle before | first | last | slope/min | at constant calls | idle after |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in FIGURES:
            cells = [
                d["idle_before"].get(f, "-"),
                d["first"].get(f, "-"),
                d["last"].get(f, "-"),
                f"{d['slope_per_min'][f]:+.3f}",
                f"{d['trend_per_min'][f]:+.3f}",
                d["idle_after"].get(f, "-"),
            ]
            lines.append(f"| {f} | " + " | ".join(str(c) for c in cells) + " |")
        lines.append(
            f"errors: failed calls {self.errors or 0}, missed replies {self.replies_missed} "
            f"of {self.replies_expected}, server errors {self.server_errors:g}, "
            f"scrapes failed {self.scrapes_failed}"
        )
        return "\n".join(lines)


def trend(points: Sequence[tuple[float, float, float]]) -> float:
    """The least-squares coefficient of ``t`` in ``y = a + slope * t + k * calls`` over
    ``(t, calls, y)`` points: the slope of ``y`` at a constant number of calls (0 for
    fewer than four points).

    >>> round(trend([(0, 10, 100.0), (1, 20, 180.0), (2, 10, 100.0), (3, 20, 180.0)]), 6)
    0.0
    >>> round(trend([(0, 10, 100.0), (1, 20, 182.0), (2, 10, 104.0), (3, 20, 186.0)]), 6)
    2.0
    """
    if len(points) < 4:
        return 0.0
    t, calls, y = (np.array(column, dtype=float) for column in zip(*points, strict=True))
    design = np.column_stack([np.ones_like(t), t, calls])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(coefficients[1])


def _figures(sample: Sample | None) -> dict[str, float]:
    return {} if sample is None else {f: getattr(sample, f) for f in FIGURES}


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` points (0 for fewer than two distinct x).

    >>> slope([(0, 1.0), (1, 3.0), (2, 5.0)])
    2.0
    """
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def scrape(host: str, port: int) -> dict[str, float]:
    """The server's ``GET /metrics``, each metric summed over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.decode().partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0]
    if " 200 " not in status + " ":
        raise RuntimeError(f"GET /metrics answered {status or 'nothing'!r}")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


def _address(url: str) -> tuple[str, int]:
    match = re.match(r"wss?://([^/:]+):(\d+)", url)
    if match is None:
        raise ValueError(f"not a ws:// URL with a port: {url!r}")
    return match.group(1), int(match.group(2))


@contextlib.asynccontextmanager
async def echo_server(protocol: str, extra: Sequence[str] = ()) -> AsyncIterator[tuple[str, int]]:
    """A ``voxwire serve --echo --metrics`` process on a free port: (URL, pid)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxwire",
        "serve",
        "--protocol",
        protocol,
        "--echo",
        "--port",
        "0",
        "--metrics",
        "--drain-timeout",
        "0",
        "-q",
        *extra,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if " on " not in line:
            raise RuntimeError(f"voxwire serve did not start: {line!r}")
        url = line.split(" on ", 1)[1].split()[0]
        drain = asyncio.ensure_future(process.stdout.read())  # keep its pipe empty
        yield url, process.pid
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def soak(
    url: str,
    pid: int,
    protocol: str = "twilio",
    *,
    calls: int = 200,
    every: float = 0.5,
    seconds: float = 600.0,
    sample: float = 5.0,
    warmup: float | None = None,
    ramp: float = 2.0,
    progress: bool = False,
) -> SoakReport:
    """Run the soak against the server at ``url`` (process ``pid``); see the module
    docstring. ``warmup`` defaults to one lifetime (``calls * every``), at most half of
    ``seconds``."""
    if calls < 1 or every <= 0 or seconds <= 0 or sample <= 0:
        raise ValueError("calls >= 1 and every, seconds and sample > 0 are needed")
    lifetime = calls * every
    report = SoakReport(
        calls, every, seconds, min(lifetime, seconds / 2) if warmup is None else warmup
    )
    host, port = _address(url)
    rate = PROVIDERS[protocol].default_rate
    speech = synthesize("Testing the voxwire line.", rate)
    barge = synthesize("Sorry to interrupt.", rate, seed=2)
    live = LoadProgress(0)
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    running: set[asyncio.Task[_Outcome]] = set()
    # a phone keeps starting turns for its duration, then waits for the last reply: a
    # call lives its duration and this tail, measured on the calls that ended
    tail = [2.5]
    placed: dict[asyncio.Task[_Outcome], tuple[float, float]] = {}

    def tally(task: asyncio.Task[_Outcome]) -> None:
        running.discard(task)
        at, duration = placed.pop(task)
        if not task.cancelled() and task.exception() is None and task.result().completed:
            tail[0] += 0.2 * ((loop.time() - at - duration) - tail[0])
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            key = type(exc).__name__
            report.errors[key] = report.errors.get(key, 0) + 1
            return
        outcome = task.result()
        line, phone = outcome.line, outcome.phone
        if outcome.completed:
            report.completed += 1
        else:
            key = line.error or (str(line.close_code) if line.close_code else "closed")
            report.errors[key] = report.errors.get(key, 0) + 1
        if phone is not None and line.connected:
            _, _, _, missed, _, _ = phone.measure()
            report.replies_expected += len(phone.said_turns)
            report.replies_missed += missed

    def place(delay: float, life: float) -> None:
        duration = max(0.0, life - tail[0])
        report.started += 1
        live.calls += 1
        task = loop.create_task(
            _one_call(
                url,
                protocol,
                speech,
                barge,
                delay=delay,
                duration=duration,
                barge_every=2,
                barge_in_after=0.4,
                progress=live,
                ended=ended,
            )
        )
        running.add(task)
        placed[task] = (loop.time() + delay, duration)
        task.add_done_callback(tally)

    async def reading() -> Sample:
        metrics = await scrape(host, port)
        return Sample(
            round(loop.time() - begin, 2),
            round(_rss_mb(pid), 2),
            _fds(pid),
            metrics.get("voxwire_asyncio_tasks", float("nan")),
            int(metrics.get("voxwire_active_calls", 0)),
        )

    async def read() -> None:
        try:
            report.samples.append(await reading())
        except (OSError, asyncio.TimeoutError, RuntimeError):
            report.scrapes_failed += 1
            return
        if progress:
            s = report.samples[-1]
            print(
                f"{s.t:7.1f} s  calls {s.calls_up:4d}  rss {s.rss_mb:7.1f} MB  "
                f"fds {s.fds:5d}  tasks {s.tasks:6.0f}  failed {sum(report.errors.values())}",
                file=sys.stderr,
                flush=True,
            )

    report.idle_before = await reading()
    # the first calls start over `ramp` seconds, their lengths spread so that from then on
    # one ends about every `every` seconds, when a new one starts
    for k in range(calls):
        delay = ramp * k / calls
        place(delay, ramp + (k + 1) * every - delay)
    next_call = ramp + every
    next_sample = 0.0
    try:
        while (now := loop.time() - begin) < seconds:
            if now >= next_sample:
                await read()
                next_sample += sample
            if now >= next_call:
                place(0.0, lifetime)
                next_call += every
            await asyncio.sleep(max(0.0, min(next_call, next_sample) - (loop.time() - begin)))
        # the calls still up run to their end (at most one lifetime and a reply)
        if running:
            await asyncio.wait(set(running), timeout=lifetime + 30)
    finally:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    report.seconds = loop.time() - begin
    # the server closes the last connections: idle again, as it was before the first call
    # (a call's last task, its close, may still be finishing when its socket is gone)
    before = report.idle_before
    assert before is not None
    for _ in range(50):
        after = report.idle_after = await reading()
        if after.calls_up == 0 and after.fds <= before.fds and after.tasks <= before.tasks:
            break
        await asyncio.sleep(0.1)
    report.server_errors = (await scrape(host, port)).get("voxwire_errors_total", 0.0)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls up at once (200)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between new calls")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the slopes")
    parser.add_argument(
        "--ramp", type=float, default=2.0, help="seconds over which the first calls start"
    )
    parser.add_argument("--protocol", default="twilio", choices=sorted(PROVIDERS))
    parser.add_argument("--url", help="soak this server instead of starting one")
    parser.add_argument("--server-pid", type=int, help="the process of --url")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if (args.url is None) != (args.server_pid is None):
        parser.error("--url and --server-pid go together")

    async def run() -> SoakReport:
        options: dict[str, Any] = {
            "calls": args.calls,
            "every": args.every,
            "seconds": 60.0 * args.minutes,
            "sample": args.sample,
            "warmup": args.warmup,
            "ramp": args.ramp,
            "progress": not args.json,
        }
        if args.url is not None:
            return await soak(args.url, args.server_pid, args.protocol, **options)
        async with echo_server(args.protocol) as (url, pid):
            return await soak(url, pid, args.protocol, **options)

    # SIGTERM ends the soak as Ctrl-C does: the server it started is stopped too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    report = asyncio.run(run())
    if args.json:
        print(json.dumps({"started": started, **report.as_dict()}, indent=2))
    else:
        print(report.summary())
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
