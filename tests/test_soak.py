"""The short soak (bench/soak.py): a real ``voxwire serve`` process under 20 calls with a
new one every 0.25 s for 36 s; its descriptors, tasks and memory stay flat, and nothing
fails.

Why these bounds: at this churn 240 calls start a minute. A descriptor or a task kept
per call would climb 240 a minute; the bound of 60 a minute is a quarter of that and
well above the noise (the calls up vary by a few around 20, each holding one socket and
about eight tasks). Once the last call has ended the counts must be back at their idle
values exactly. Memory: a call's state costs the server about 100-150 kB here (measured
in the run: RSS with the calls up, less idle RSS, per call), so keeping every call's
state would climb 24 MB a minute or more; the bound is half of that rate, computed from
the footprint measured in the same run (the first minute's allocator growth stays under
it; a real leak of whole calls does not). The slopes are taken at a constant number of
calls up (``trend``): on a loaded machine the generator runs late and the calls up vary
between a few and twice the target, which moves every raw figure.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the server and phones need websockets")
pytest.importorskip("prometheus_client", reason="the task count comes from /metrics")

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


soak = _load("soak")

CALLS, EVERY, SECONDS, WARMUP = 20, 0.25, 36.0, 12.0
PER_MINUTE = 60 / EVERY
COUNT_BOUND = PER_MINUTE / 4


def test_trend_is_the_slope_at_constant_calls() -> None:
    # tasks that follow the calls up exactly: no trend, whatever the raw slope says
    points = [(t / 10, 10.0 + (t % 7), 8.0 * (10 + t % 7) + 2) for t in range(30)]
    assert abs(soak.trend(points)) < 1e-9
    leaking = [(t, c, y + 5.0 * t) for t, c, y in points]
    assert soak.trend(leaking) == pytest.approx(5.0)
    assert soak.trend(points[:3]) == 0.0


def test_slope_is_least_squares() -> None:
    assert soak.slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == 2.0
    assert soak.slope([(0.0, 4.0), (1.0, 2.0), (2.0, 4.0)]) == 0.0
    assert soak.slope([(1.0, 4.0)]) == 0.0
    assert soak.slope([(1.0, 4.0), (1.0, 5.0)]) == 0.0


def test_a_short_soak_stays_flat_with_no_errors() -> None:
    async def main() -> object:
        async with soak.echo_server("twilio") as (url, pid):
            return await soak.soak(
                url, pid, "twilio", calls=CALLS, every=EVERY, seconds=SECONDS, sample=0.5,
                warmup=WARMUP,
            )  # fmt: skip

    report = asyncio.run(main())
    summary = report.summary()
    assert report.started >= 0.75 * SECONDS / EVERY  # a late loop places fewer
    assert report.completed == report.started, summary
    assert report.errors == {}, summary
    assert report.replies_missed == 0, summary
    assert report.replies_expected > CALLS
    assert report.server_errors == 0, summary
    assert report.scrapes_failed == 0, summary
    steady = report.steady()
    assert len(steady) >= 20, summary
    assert min(s.calls_up for s in steady) > 0

    # at a constant number of calls up: a late generator makes the calls up vary
    assert abs(report.trend("fds")) < COUNT_BOUND, summary
    assert abs(report.trend("tasks")) < COUNT_BOUND, summary
    before, after = report.idle_before, report.idle_after
    assert after.calls_up == 0
    # back to idle: no more than before the first call (one fewer has been seen, a
    # descriptor still closing when the idle reading before was taken; a leak is more)
    assert after.fds <= before.fds, summary
    assert after.tasks <= before.tasks, summary

    # a call's state, measured: RSS with the calls up, less idle RSS, per call
    up = max(steady, key=lambda s: s.calls_up)
    per_call_mb = (up.rss_mb - before.rss_mb) / up.calls_up
    assert per_call_mb > 0.02, summary  # tens of kilobytes at least, or the bound means little
    assert report.trend("rss_mb") < per_call_mb * PER_MINUTE / 2, summary
